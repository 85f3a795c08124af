/*
 * maskgen/gen_internal.h - helpers shared by the generators (gen_*.c,
 * kmeans.c) and the evaluation (eval.c).  Not API; bsa__ prefix.
 */
#ifndef BSA_MASKGEN_GEN_INTERNAL_H
#define BSA_MASKGEN_GEN_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "bsa/maskgen.h"
#include "internal.h" /* bsa__fail */

/* Hot loops are compiled for AVX-512 and AVX2 as well as the baseline and
 * picked at load time, so one binary runs everywhere and fast here. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__)
#define BSA__HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BSA__HOT
#endif

/* ---- threads ----------------------------------------------------------- */

/* Worker count for a request of n (0 = online CPUs). */
int bsa__gen_threads(int32_t n);

/* Runs fn(arg, job, thread) for job = 0..njobs-1 on up to nthreads threads
 * (jobs are handed out in order; each job must write only its own output,
 * so results do not depend on the thread count).  Returns the first
 * non-OK status a job returned (the remaining jobs are skipped), or
 * BSA_ERR_NOMEM when no thread could be started and running inline also
 * failed.  OpenBLAS is kept to one thread meanwhile (restored after), so
 * that the workers' sgemm calls do not oversubscribe the cores. */
typedef bsa_status (*bsa__job_fn)(void *arg, int64_t job, int thread);
bsa_status bsa__gen_parallel(int nthreads, int64_t njobs, bsa__job_fn fn, void *arg);

/* ---- random numbers (splitmix64: tiny, seedable, good enough) ---------- */
static inline uint64_t bsa__rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double bsa__rng_double(uint64_t *s) {
  return (double)(bsa__rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}
/* Uniform in [0, n), n >= 1. */
static inline uint64_t bsa__rng_below(uint64_t *s, uint64_t n) {
  return (uint64_t)(bsa__rng_double(s) * (double)n) % n;
}

/* ---- fast exp -----------------------------------------------------------
 * exp(x) for x <= 0 (softmax after subtracting the row maximum); relative
 * error below 3e-7 for x >= -87 (smaller inputs give exp(-87), about
 * 1.6e-38, instead of less).  x = n ln2 + r with |r| <= ln2/2, a degree-6
 * polynomial for e^r and 2^n through the exponent bits.  n is rounded with
 * the 1.5 * 2^23 trick rather than floorf, so the function is plain
 * arithmetic and loops over it vectorise on any x86 (SSE2 included). */
static inline float bsa__expf(float x) {
  x = x > -87.0f ? x : -87.0f;
  union {
    float f;
    int32_t i;
  } t, e;
  t.f = x * 1.44269504088896341f + 12582912.0f; /* round(x / ln2) in the low bits */
  float n = t.f - 12582912.0f;
  float r = x - n * 0.693145751953125f; /* ln2 split in two for accuracy */
  r = r - n * 1.42860682030941723212e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  e.i = (t.i - 0x4B400000 + 127) << 23; /* 0x4B400000 = bits of 1.5 * 2^23 */
  return p * e.f;
}

/* ---- mask records ------------------------------------------------------ */

/* A zeroed record with arrays for Hkv heads, MB x NB blocks, and (when
 * with_perm) permutations; block_scores always.  density/recall NaN.  NULL
 * when out of memory (the thread message is set). */
bsa_mask_record *bsa__mask_record_new(const char *name, int32_t hkv, int64_t sq, int64_t sk,
                                      int64_t mb, int64_t nb, int with_perm);

/* Number of (query, key) pairs with key j in [j0, j1) visible to query i
 * in [r0, r1) under "j <= i + off" (causal), or all of them. */
int64_t bsa__visible_pairs(int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t off, int causal);

/* Checks the shapes of a trace record (heads divide, lengths and dims
 * positive, arrays present). */
bsa_status bsa__trace_record_check(const bsa_trace_record *rec);

/* Selection of one row block.  scores [nb] (mass shares), eligible [nb]
 * (1 when the block has visible pairs), forced [nb] (may be NULL).  keep
 * [nb] receives 0/1.  min_keep: at least this many of the best eligible
 * blocks are kept whatever the rule says (kmeans' floor).  order [nb] is
 * scratch. */
void bsa__select_row(const float *scores, const uint8_t *eligible, const uint8_t *forced,
                     int64_t nb, bsa_maskgen_select rule, double top_p, int64_t top_k,
                     double threshold, int64_t min_keep, int64_t *order, uint8_t *keep);

/* Effective sm_scale of a record. */
float bsa__record_scale(const bsa_trace_record *rec);

#endif
