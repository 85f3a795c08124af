/*
 * tools/bench.h - shared parts of `bsa bench`.
 */
#ifndef BSA_TOOLS_BENCH_H
#define BSA_TOOLS_BENCH_H

#include <stdint.h>

#include "cli.h"

typedef struct bench_opts {
  bsa_device device;
  int64_t seq;
  int heads, kv_heads, head_dim;
  int64_t block, mb, nb;
  double *densities;
  int n_densities;
  int causal;
  bsa_dtype dtype;
  int reps, warmup;
  uint64_t seed;
  int json;
  bsa_layout qkv_layout; /* NHD (default) or HND for q, k, v and o */
  int do_bsr, do_var;
  const char *masks_path, *trace_path, *records_glob;
} bench_opts;

/* One result line (table row or JSON object) and its metrics in the log. */
typedef struct bench_row {
  const char *device;
  const char *layout; /* dense, bsr, var, masks */
  const char *record; /* NULL unless --masks */
  const char *method; /* generator method with --masks */
  int64_t seq;
  int heads, kv_heads, head_dim;
  const char *dtype;
  int causal;
  const char *qkv_layout; /* "nhd" or "hnd" */
  double density_target;  /* NAN when not applicable */
  double density;         /* measured from the plan */
  double time_ms, dense_time_ms;
  double tflops_effective;
  int64_t block;    /* BSR block, 0 otherwise */
  const char *grid; /* "MBxNB" for var */
} bench_row;

void bench_print_header(const bench_opts *o);
/* Fills r for plan, timed at ms against dense_ms, with the shape of p and
 * the density measured by the plan; density_target NAN, the rest zero. */
void bench_row_init(bench_row *r, const bench_opts *o, const char *layout, const bsa_attn_params *p,
                    const bsa_plan *plan, double ms, double dense_ms);
void bench_emit(bsa_cli *cli, const bench_opts *o, const bench_row *r);

/* Time a plan on the given device buffers: median of reps after warmup. */
int bench_time_plan(bsa_cli *cli, bsa_plan *plan, const bench_opts *o, const void *q, const void *k,
                    const void *v, void *out, double *ms);

int bench_random(bsa_cli *cli, const bench_opts *o);
int bench_masks(bsa_cli *cli, const bench_opts *o);

/* Monotonic clock in milliseconds. */
double bench_now_ms(void);

/* splitmix64 */
static inline uint64_t bench_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#endif
