/*
 * lib/cpu_backend.c - exact block-sparse attention on the CPU.
 *
 * A run has two phases:
 *  1. Staging: q, k, v are converted to float32 and RoPE is applied where
 *     needed: q as [Hkv, M, group, D] (the query heads of a GQA group
 *     interleaved per token), K as [Hkv, N, D], V as [Hkv, N, Dp] (Dp = D
 *     rounded up to 32, zero padded).  float32 inputs without RoPE are read
 *     in place where their rows suit the products (see k_direct, v_direct,
 *     q_direct), so sparse runs do not pay for staging what they skip.
 *  2. Work items (by kv head, longest first within a head) are taken by
 *     worker threads.  An item's R = rows * group query rows are transposed
 *     once into Q^T [D, RP] (RP = R rounded up to 16) times sm_scale.  Its KV
 *     segments are visited in chunks of up to KC keys; for each chunk
 *         S^T = K Q^T   [keys, RP]  (lib/cpu_gemm.c, one pointer per key row)
 *     then the logits epilogue (soft cap, ALiBi, masks only on flagged
 *     segments), the online softmax down the columns (running max m and sum
 *     l per query row, vectorised across query rows), and
 *         O += P V      [R, Dp]     (P read as the softmax left it, V rows
 *                                    through one pointer per key)
 *     Finally O /= l and LSE = m + log l; rows that saw no key get O = 0 and
 *     LSE = -inf.
 * Computing the scores transposed is what lets a chunk gather keys from
 * any number of scattered segments at the cost of a pointer per key: K and
 * V rows are read where they lie, never packed.
 *
 * The float32 buffers live in the plan and are reused across runs.
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define HAVE_STREAM_STORES 1
#endif

#define KC 512 /* keys per chunk: S^T = [KC, RP] stays in L2 */

typedef struct cpu_state {
  float *q, *k, *v; /* staged inputs, NULL where the caller's are read in place */
  int stream;       /* o is written with non-temporal stores (stream_output) */
  float *scratch;   /* per thread, see item_scratch */
  size_t scratch_per_thread;
  int threads;
  float *slopes;     /* [Hq] ALiBi slopes */
  double *rope_freq; /* [D/2] RoPE: theta^(-2i/D) / rope_scale */
  /* Where a run reads K and V: key j of kv head h starts at
   * kbase + h * k_hs + j * k_ld (V likewise); staged copies or the caller's
   * float32 tensors. */
  const float *kbase, *vbase;
  int64_t k_ld, k_hs, v_ld, v_hs;
  /* Where the query rows of item (kv head h, first token t) start:
   * qbase + h * q_hstride + t * q_tstride, rows q_ld floats apart; the
   * staged copy, or the caller's q for float32 MHA without RoPE. */
  const float *qbase;
  int64_t q_hstride, q_tstride, q_ld;
} cpu_state;

static void cpu_state_free(bsa_plan *plan) {
  cpu_state *s = plan->backend;
  if (!s) return;
  free(s->q);
  free(s->k);
  free(s->v);
  free(s->scratch);
  free(s->slopes);
  free(s->rope_freq);
  free(s);
  plan->backend = NULL;
  plan->backend_free = NULL;
}

/* ---------------------------------------------------------------- helpers */

#define ROUND8(x) (((x) + 7) & ~(int64_t)7)
#define ROUND16(x) (((x) + 15) & ~(int64_t)15)
#define ROUND32(x) (((x) + 31) & ~(int64_t)31)

/* Element i of base in dtype t, as a byte address. */
static inline const void *elem_at(const void *base, bsa_dtype t, int64_t i) {
  return (const char *)base + (size_t)i * bsa_dtype_size(t);
}

/* Converts D elements starting at element src of base to float32. */
static inline void load_row(float *dst, const void *base, bsa_dtype t, int64_t src, int32_t D) {
  bsa_convert(dst, BSA_DTYPE_F32, elem_at(base, t, src), t, (size_t)D);
}

/* Outputs of at least this many bytes are written with non-temporal
 * stores (BSA_CPU_STREAM_BYTES overrides it; 0 streams every output).  An
 * output that large does not stay in a core's cache anyway, and ordinary
 * stores first read every line of it (the write-allocate): variable 64x64
 * blocks at density 0.1, H8 S4096 D128, ran 1-2 ms (of 34-36) faster with
 * NHD rows 4 KB apart and 0.4-1 ms with HND (docs/PERF.md). */
#define STREAM_MIN_BYTES ((size_t)4 << 20)

/* Copies bytes from src to dst with non-temporal stores where dst is
 * 16-byte aligned and bytes a multiple of 16 (else memcpy). */
static void copy_stream(void *dst, const void *src, size_t bytes) {
#ifdef HAVE_STREAM_STORES
  if (((uintptr_t)dst & 15) == 0 && (bytes & 15) == 0) {
    __m128i *d = dst;
    const char *sc = src;
    for (size_t i = 0; i < bytes / 16; i++)
      _mm_stream_si128(d + i, _mm_loadu_si128((const __m128i *)(const void *)(sc + 16 * i)));
    return;
  }
#endif
  memcpy(dst, src, bytes);
}

/* Converts D float32 values to dtype t at element dst of base, streaming
 * them out (copy_stream) when stream is set. */
static void store_row(void *base, bsa_dtype t, int64_t dst, const float *src, int32_t D,
                      int stream) {
  void *d = (void *)elem_at(base, t, dst);
  if (!stream) {
    bsa_convert(d, t, src, BSA_DTYPE_F32, (size_t)D);
    return;
  }
  const size_t bytes = (size_t)D * bsa_dtype_size(t);
  if (t == BSA_DTYPE_F32) {
    copy_stream(d, src, bytes);
  } else { /* convert next to the row, then stream it out */
    uint16_t tmp[1024];
    bsa_convert(tmp, t, src, BSA_DTYPE_F32, (size_t)D);
    copy_stream(d, tmp, bytes);
  }
}

/* Whether a plan's output is written with non-temporal stores (its size is
 * the plan's, so this is decided once, with the plan's state). */
static int stream_output(const bsa_attn_params *p) {
  size_t min = STREAM_MIN_BYTES;
  const char *env = getenv("BSA_CPU_STREAM_BYTES");
  if (env && *env) min = (size_t)strtoull(env, NULL, 10);
  const size_t bytes = (size_t)p->qo_len * (size_t)p->num_qo_heads * (size_t)p->head_dim *
                       bsa_dtype_size(p->o_dtype);
  return bytes >= min;
}

/* exp(x) for x <= 0 (softmax after max subtraction) in a form compilers
 * vectorise: 2^(x log2 e) split into 2^n * 2^f with |f| <= 1/2, 2^f by a
 * degree-7 polynomial (relative error < 1e-7).  Inputs below -87 (and -inf)
 * give 0. */
static inline float exp_neg(float x) {
  float y = x * 1.44269504088896341f;
  y = y < -126.0f ? -126.0f : y;
  /* Round to nearest by the 1.5 * 2^23 trick: no libm call, vectorises. */
  float n = (y + 12582912.0f) - 12582912.0f;
  float f = y - n;
  /* 2^f = e^(f ln2), Taylor coefficients ln2^k / k!. */
  float p = 1.5252733804059840e-5f;
  p = p * f + 1.5403530393381609e-4f;
  p = p * f + 1.3333558146428443e-3f;
  p = p * f + 9.6181291076284772e-3f;
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  p = p * f + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, 4);
  float r = p * scale;
  return x < -87.0f ? 0.0f : r;
}

/* ------------------------------------------------------------- staging */

/* Staging is one parallel pass over chunks of STAGE_CHUNK tokens: first
 * the chunks of q, then of K, then of V (each only when it is staged). */
#define STAGE_CHUNK 64

typedef struct stage_job {
  bsa_plan *plan;
  cpu_state *s;
  const void *q, *k, *v;
  int64_t nq, nk, nv; /* chunks of q, K and V to stage (0: read in place) */
  atomic_long next;
} stage_job;

/* cos and sin of the RoPE angles of position pos, [D/2] each.  The
 * frequencies are the plan's (s->rope_freq); the angles depend on the
 * position only, so all heads of a token share them. */
static void rope_angles(const cpu_state *s, int32_t D, double pos, double *c, double *sn) {
  for (int32_t i = 0; i < D / 2; i++) {
    const double a = pos * s->rope_freq[i];
    c[i] = cos(a);
    sn[i] = sin(a);
  }
}

/* Rotates x[0..D) in place: rotate-half pairs (i, i + D/2). */
static void rope_rotate(float *x, int32_t D, const double *c, const double *sn) {
  const int32_t half = D / 2;
  for (int32_t i = 0; i < half; i++) {
    const float x1 = x[i], x2 = x[i + half];
    x[i] = (float)(x1 * c[i] - x2 * sn[i]);
    x[i + half] = (float)(x2 * c[i] + x1 * sn[i]);
  }
}

/* q tokens [t0, t1) into the group layout [Hkv, M, group, D], rotated at
 * position t + kv_len - qo_len. */
static void stage_q(stage_job *j, int64_t t0, int64_t t1) {
  const bsa_attn_params *p = &j->plan->p;
  cpu_state *s = j->s;
  const int32_t D = p->head_dim, Hq = p->num_qo_heads, g = j->plan->group;
  const int64_t M = p->qo_len, off = p->kv_len - M;
  const int rope = p->pos_encoding == BSA_POS_ROPE_LLAMA;
  double c[512], sn[512];
  for (int64_t t = t0; t < t1; t++) {
    if (rope) rope_angles(s, D, (double)(t + off), c, sn);
    for (int32_t qh = 0; qh < Hq; qh++) {
      float *dst = s->q + (((int64_t)(qh / g) * M + t) * g + qh % g) * D;
      load_row(dst, j->q, p->q_dtype, bsa__tok_offset(p->layout, M, Hq, D, t, qh), D);
      if (rope) rope_rotate(dst, D, c, sn);
    }
  }
}

/* K tokens [t0, t1) into [Hkv, N, D], rotated at position t. */
static void stage_k(stage_job *j, int64_t t0, int64_t t1) {
  const bsa_attn_params *p = &j->plan->p;
  cpu_state *s = j->s;
  const int32_t D = p->head_dim, Hkv = p->num_kv_heads;
  const int64_t N = p->kv_len;
  const int rope = p->pos_encoding == BSA_POS_ROPE_LLAMA;
  double c[512], sn[512];
  for (int64_t t = t0; t < t1; t++) {
    if (rope) rope_angles(s, D, (double)t, c, sn);
    for (int32_t h = 0; h < Hkv; h++) {
      float *dst = s->k + ((int64_t)h * N + t) * D;
      load_row(dst, j->k, p->kv_dtype, bsa__tok_offset(p->layout, N, Hkv, D, t, h), D);
      if (rope) rope_rotate(dst, D, c, sn);
    }
  }
}

/* V tokens [t0, t1) into [Hkv, N, Dp], the columns past D zero. */
static void stage_v(stage_job *j, int64_t t0, int64_t t1) {
  const bsa_attn_params *p = &j->plan->p;
  const int32_t D = p->head_dim, Hkv = p->num_kv_heads;
  const int64_t N = p->kv_len, Dp = ROUND32(D);
  for (int64_t t = t0; t < t1; t++)
    for (int32_t h = 0; h < Hkv; h++) {
      float *dst = j->s->v + ((int64_t)h * N + t) * Dp;
      load_row(dst, j->v, p->kv_dtype, bsa__tok_offset(p->layout, N, Hkv, D, t, h), D);
      if (Dp > D) memset(dst + D, 0, sizeof(float) * (size_t)(Dp - D));
    }
}

static void *stage_worker(void *arg) {
  stage_job *j = arg;
  const int64_t M = j->plan->p.qo_len, N = j->plan->p.kv_len;
  for (;;) {
    int64_t u = atomic_fetch_add(&j->next, 1);
    void (*fn)(stage_job *, int64_t, int64_t) = stage_q;
    int64_t len = M;
    if (u >= j->nq) {
      u -= j->nq;
      fn = stage_k;
      len = N;
      if (u >= j->nk) {
        u -= j->nk;
        fn = stage_v;
        if (u >= j->nv) break;
      }
    }
    const int64_t t0 = u * STAGE_CHUNK;
    fn(j, t0, t0 + STAGE_CHUNK < len ? t0 + STAGE_CHUNK : len);
  }
  return NULL;
}

/* ------------------------------------------------------------ main loop */

typedef struct run_job {
  bsa_plan *plan;
  cpu_state *s;
  void *o;
  float *lse;
  atomic_long next;
  int tid_next;
  pthread_mutex_t lock;
} run_job;

/* A chunk is up to KC keys taken from one or more segments (pieces). */
typedef struct piece {
  const bsa__segment *seg;
  int64_t kb, n; /* keys [kb, kb + n) */
} piece;

/* One thread's buffers for an item with R query rows (RP = R rounded up to
 * 16; all arrays sized for the plan's largest item). */
typedef struct item_scratch {
  float *Qt;                  /* [D, RP] Q^T * sm_scale, columns past R zero */
  float *St;                  /* [KC + 8, RP] S^T, then P^T */
  float *O;                   /* [RP, Dp] unnormalised output (rows past R unused) */
  float *m;                   /* [RP] running max */
  float *l;                   /* [RP] running sum */
  float *alpha;               /* [RP] per chunk: the new max, then the rescale factor */
  float *psum;                /* [RP] per chunk: sum of the chunk's probabilities */
  float *slope;               /* [RP] ALiBi slope of each query row */
  int64_t *tq;                /* [RP] last visible key of each row (its token + kv_len - qo_len) */
  const float **krow, **vrow; /* [KC + 8] key and value rows of the chunk */
} item_scratch;

/* Lays out one thread's scratch for items of up to RP rows: sets w's
 * pointers from base (unless w is NULL: then only the size is wanted) and
 * returns the floats used.
 * Every piece starts on a 16-float boundary (RP is a multiple of 16, KC + 8
 * of 8 and the pointer arrays count double); the int64 and pointer arrays
 * take two floats an entry. */
static size_t scratch_layout(item_scratch *w, float *base, int64_t RP, int64_t D, int64_t Dp) {
  enum { QT, ST, O, M, L, ALPHA, PSUM, SLOPE, TQ, KROW, VROW, END };
  const int64_t sizes[END] = {D * RP, (KC + 8) * RP, RP * Dp,      RP,          RP, RP, RP,
                              RP,     2 * RP,        2 * (KC + 8), 2 * (KC + 8)};
  size_t off[END + 1] = {0};
  for (int i = 0; i < END; i++) off[i + 1] = off[i] + (size_t)sizes[i];
  if (w) {
    w->Qt = base + off[QT];
    w->St = base + off[ST];
    w->O = base + off[O];
    w->m = base + off[M];
    w->l = base + off[L];
    w->alpha = base + off[ALPHA];
    w->psum = base + off[PSUM];
    w->slope = base + off[SLOPE];
    w->tq = (int64_t *)(void *)(base + off[TQ]);
    w->krow = (const float **)(void *)(base + off[KROW]);
    w->vrow = (const float **)(void *)(base + off[VROW]);
  }
  return off[END];
}

/* Keys past the end of a chunk, up to a multiple of 8, point at zeros (their
 * S^T rows are computed and ignored). */
static const float zero_row[1024];

/* The logits epilogue for one piece's rows of S^T (keys [kb, kb + n), R
 * query rows across, ld RP): soft cap, ALiBi, and masks where the segment
 * is flagged.  Query row r is token tq[r] - (kv_len - qo_len) and item row
 * r / group; for element masks mrow0 is the mask byte of (item row 0, key
 * kb) and mstride the bytes from one item row to the next. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void piece_logits(
    float *St, int64_t RP, int64_t R, int64_t kb, int64_t n, const item_scratch *w, int32_t flags,
    const uint8_t *mrow0, int64_t group, int64_t mstride, float cap, int alibi) {
  for (int64_t c = 0; c < n; c++) {
    float *row = St + c * RP;
    const int64_t key = kb + c;
    if (cap > 0.0f) {
      const float rc = 1.0f / cap;
      for (int64_t r = 0; r < R; r++) row[r] = cap * tanhf(row[r] * rc);
    }
    if (alibi)
      for (int64_t r = 0; r < R; r++) row[r] += w->slope[r] * (float)(key - w->tq[r]);
    if (flags & BSA__SEG_CAUSAL)
      for (int64_t r = 0; r < R; r++)
        if (key > w->tq[r]) row[r] = -INFINITY;
    if (flags & BSA__SEG_ELEMASK)
      for (int64_t r = 0; r < R; r++)
        if (!mrow0[(r / group) * mstride + c]) row[r] = -INFINITY;
  }
}

/* Online-softmax update over a chunk's nk rows of S^T (ld RP), all RP
 * columns at once: on return St holds P = exp(S - m_new), m and l are
 * updated and alpha[r] is the factor row r's previous O must be scaled by.
 * Columns with nothing visible yet subtract 0, so their P is 0. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void chunk_softmax(
    float *St, int64_t nk, int64_t RP, const item_scratch *w) {
  float *restrict mx = w->alpha, *restrict ps = w->psum;
  float *restrict m = w->m, *restrict l = w->l;
  for (int64_t r = 0; r < RP; r++) mx[r] = m[r], ps[r] = 0.0f;
  for (int64_t c = 0; c < nk; c++) {
    const float *row = St + c * RP;
    for (int64_t r = 0; r < RP; r++) mx[r] = row[r] > mx[r] ? row[r] : mx[r];
  }
  for (int64_t c = 0; c < nk; c++) {
    float *row = St + c * RP;
    for (int64_t r = 0; r < RP; r++) {
      const float p = exp_neg(row[r] - (mx[r] == -INFINITY ? 0.0f : mx[r]));
      row[r] = p;
      ps[r] += p;
    }
  }
  for (int64_t r = 0; r < RP; r++) {
    const float a = m[r] == -INFINITY ? 0.0f : exp_neg(m[r] - mx[r]);
    m[r] = mx[r];
    l[r] = l[r] * a + ps[r];
    mx[r] = a; /* alpha from here on */
  }
}

/* first: this is the item's first chunk, so O holds nothing yet and the
 * product overwrites it instead of accumulating. */
static void run_chunk(run_job *j, const bsa__work_item *it, const piece *pc, int np, int64_t nk,
                      const item_scratch *w, int first) {
  bsa_plan *plan = j->plan;
  const bsa_attn_params *p = &plan->p;
  cpu_state *s = j->s;
  const int32_t D = p->head_dim, g = plan->group;
  const int64_t Dp = ROUND32(D);
  const int64_t R = (it->q_end - it->q_begin) * g, RP = ROUND16(R), R8 = ROUND8(R);
  const float *K = s->kbase + (int64_t)it->kv_head * s->k_hs;
  const float *V = s->vbase + (int64_t)it->kv_head * s->v_hs;
  const int alibi = p->pos_encoding == BSA_POS_ALIBI;

  int64_t c = 0;
  for (int i = 0; i < np; i++)
    for (int64_t key = pc[i].kb; key < pc[i].kb + pc[i].n; key++, c++) {
      w->krow[c] = K + key * s->k_ld;
      w->vrow[c] = V + key * s->v_ld;
    }
  for (; c < ROUND8(nk); c++) w->krow[c] = zero_row;
  bsa__gemm_arows(ROUND8(nk), RP, D, w->krow, w->Qt, RP, w->St, RP, w->vrow, nk);

  c = 0;
  for (int i = 0; i < np; i++) {
    const bsa__segment *seg = pc[i].seg;
    if (seg->flags || alibi || p->logits_soft_cap > 0.0f) {
      const uint8_t *mrow0 = NULL;
      if (seg->flags & BSA__SEG_ELEMASK)
        mrow0 = plan->mask + seg->mask_offset + (int64_t)seg->mask_row0 * plan->C +
                (pc[i].kb - seg->kv_begin);
      piece_logits(w->St + c * RP, RP, R, pc[i].kb, pc[i].n, w, seg->flags, mrow0, g, plan->C,
                   p->logits_soft_cap, alibi);
    }
    c += pc[i].n;
  }
  chunk_softmax(w->St, nk, RP, w);
  if (!first)
    for (int64_t r = 0; r < R; r++) {
      const float a = w->alpha[r];
      if (a == 1.0f) continue;
      float *orow = w->O + r * Dp;
      for (int64_t d = 0; d < Dp; d++) orow[d] *= a;
    }
  bsa__gemm_at_brows(R8, Dp, nk, w->St, RP, w->vrow, w->O, Dp, !first);
}

static void run_item(run_job *j, const bsa__work_item *it, float *scratch) {
  bsa_plan *plan = j->plan;
  const bsa_attn_params *p = &plan->p;
  cpu_state *s = j->s;
  const int32_t D = p->head_dim, g = plan->group, Hq = p->num_qo_heads;
  const int64_t Dp = ROUND32(D);
  const int64_t M = p->qo_len, off = p->kv_len - M;
  const int64_t R = (it->q_end - it->q_begin) * g, RP = ROUND16(R);
  item_scratch w;
  scratch_layout(&w, scratch, RP, D, Dp);

  /* Q^T with sm_scale folded in: (s q).k = s (q.k). */
  const float *Q = s->qbase + (int64_t)it->kv_head * s->q_hstride + it->q_begin * s->q_tstride;
  bsa__transpose_scaled(R, D, Q, s->q_ld, p->sm_scale, w.Qt, RP);
  for (int64_t r = 0; r < RP; r++) {
    w.m[r] = -INFINITY;
    w.l[r] = 0.0f;
    w.tq[r] = it->q_begin + r / g + off;
    w.slope[r] = p->pos_encoding == BSA_POS_ALIBI && r < R
                     ? s->slopes[it->kv_head * g + (int32_t)(r % g)]
                     : 0.0f;
  }

  int first = 1; /* O is written by the first chunk's product */
  piece pc[KC];
  int np = 0;
  int64_t nkeys = 0;
  for (int32_t si = 0; si < it->num_segments; si++) {
    const bsa__segment *seg = &plan->segs[it->seg_offset + si];
    for (int64_t kb = seg->kv_begin; kb < seg->kv_end;) {
      int64_t n = seg->kv_end - kb;
      if (n > KC - nkeys) n = KC - nkeys;
      pc[np].seg = seg;
      pc[np].kb = kb;
      pc[np].n = n;
      np++;
      nkeys += n;
      kb += n;
      if (nkeys == KC) {
        run_chunk(j, it, pc, np, nkeys, &w, first);
        first = 0;
        np = 0;
        nkeys = 0;
      }
    }
  }
  if (nkeys > 0) {
    run_chunk(j, it, pc, np, nkeys, &w, first);
    first = 0;
  }
  if (first) memset(w.O, 0, sizeof(float) * (size_t)(R * Dp)); /* no keys at all */

  for (int64_t r = 0; r < R; r++) {
    const int64_t t = it->q_begin + r / g;
    const int32_t qh = it->kv_head * g + (int32_t)(r % g);
    const int64_t dst = bsa__tok_offset(p->layout, M, Hq, D, t, qh);
    float *orow = w.O + r * Dp;
    if (w.l[r] > 0.0f) {
      const float inv = 1.0f / w.l[r];
      for (int32_t d = 0; d < D; d++) orow[d] *= inv;
      if (j->lse) j->lse[t * Hq + qh] = w.m[r] + logf(w.l[r]);
    } else {
      memset(orow, 0, sizeof(float) * (size_t)D);
      if (j->lse) j->lse[t * Hq + qh] = -INFINITY;
    }
    store_row(j->o, p->o_dtype, dst, orow, D, s->stream);
  }
}

static void *run_worker(void *arg) {
  run_job *j = arg;
  pthread_mutex_lock(&j->lock);
  int tid = j->tid_next++;
  pthread_mutex_unlock(&j->lock);
  float *scratch = j->s->scratch + (size_t)tid * j->s->scratch_per_thread;
  for (;;) {
    int64_t i = atomic_fetch_add(&j->next, 1);
    if (i >= j->plan->num_items) break;
    run_item(j, &j->plan->items[i], scratch);
  }
#ifdef HAVE_STREAM_STORES
  /* Non-temporal stores are weakly ordered: make them visible before the
   * thread reports done. */
  if (j->s->stream) _mm_sfence();
#endif
  return NULL;
}

/* Runs fn(arg) on n threads (the caller is one of them). */
static void parallel(int n, void *(*fn)(void *), void *arg) {
  pthread_t th[1024];
  int started = 0;
  for (int i = 1; i < n; i++) {
    if (pthread_create(&th[started], NULL, fn, arg) != 0) break;
    started++;
  }
  fn(arg);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

/* Floats of staged V, [Hkv, N, Dp]. */
static size_t staged_v_elems(const bsa_attn_params *p) {
  return (size_t)p->num_kv_heads * (size_t)p->kv_len * (size_t)ROUND32(p->head_dim);
}

/* Whether the products read the caller's float32 K (or V) in place: only
 * HND rows, D floats apart.  NHD rows of one head lie Hkv * D floats apart
 * (4 KB at Hkv = 8, D = 128): a chunk of KC of them covers KC * 4 KB, which
 * with 2 MB pages maps each column to 1/64 of L2's sets (a 512-key chunk of
 * V fills their 16 ways), and each row sits alone in its 4 KB page, where
 * the hardware prefetchers do not follow.  With smaller chunks and the
 * products' own prefetches, in place only matched staging for sparse plans
 * at density 0.1 and lost for dense and at 0.25 (docs/PERF.md), so NHD is
 * staged.  K needs no RoPE, V needs D a multiple of 32 (the product reads
 * 32-column panels). */
static int k_direct(const bsa_plan *plan) {
  const bsa_attn_params *p = &plan->p;
  return p->kv_dtype == BSA_DTYPE_F32 && p->pos_encoding != BSA_POS_ROPE_LLAMA &&
         p->layout == BSA_LAYOUT_HND;
}
static int v_direct_plan(const bsa_plan *plan) {
  const bsa_attn_params *p = &plan->p;
  return p->kv_dtype == BSA_DTYPE_F32 && p->head_dim % 32 == 0 && p->layout == BSA_LAYOUT_HND;
}
/* V in place also needs the caller's tensor 64-byte aligned: every 64-byte
 * vector load of a row would otherwise straddle two cache lines (dense HND
 * from a 16-byte aligned malloc block ran 7% slower than from the staged
 * copy, docs/PERF.md).  Decided per run, as the pointer comes per run. */
static int v_direct(const bsa_plan *plan, const void *v) {
  return v_direct_plan(plan) && ((uintptr_t)v & 63) == 0;
}

/* The caller's q can be used in place: float32, no RoPE, and one query
 * head per kv head (so the rows of an item are evenly spaced). */
static int q_direct(const bsa_plan *plan) {
  const bsa_attn_params *p = &plan->p;
  return p->q_dtype == BSA_DTYPE_F32 && p->pos_encoding != BSA_POS_ROPE_LLAMA && plan->group == 1;
}

static bsa_status ensure_state(bsa_plan *plan, cpu_state **out) {
  cpu_state *s = plan->backend;
  if (s) {
    *out = s;
    return BSA_OK;
  }
  const bsa_attn_params *p = &plan->p;
  s = calloc(1, sizeof *s);
  if (!s) return bsa__fail(plan->ctx, BSA_ERR_NOMEM, "cpu run: out of memory");
  s->threads = plan->ctx->num_threads;
  if (s->threads > plan->num_items) s->threads = plan->num_items > 0 ? (int)plan->num_items : 1;
  const int64_t D = p->head_dim, Dp = ROUND32(D);
  const size_t q_elems = (size_t)p->num_qo_heads * (size_t)p->qo_len * (size_t)D;
  const size_t k_elems = (size_t)p->num_kv_heads * (size_t)p->kv_len * (size_t)D;
  s->stream = stream_output(p);
  const int64_t RPmax = ROUND16(plan->max_item_rows * plan->group);
  s->scratch_per_thread = (scratch_layout(NULL, NULL, RPmax, D, Dp) + 15) & ~(size_t)15;
  const int need_q = !q_direct(plan), need_k = !k_direct(plan), need_v = !v_direct_plan(plan);
  const size_t v_elems = staged_v_elems(p);
  if (need_q) s->q = bsa__aligned_alloc(q_elems * sizeof(float));
  if (need_k) s->k = bsa__aligned_alloc(k_elems * sizeof(float));
  if (need_v) s->v = bsa__aligned_alloc(v_elems * sizeof(float));
  s->scratch = bsa__aligned_alloc(s->scratch_per_thread * (size_t)s->threads * sizeof(float));
  s->slopes = malloc(sizeof(float) * (size_t)p->num_qo_heads);
  const int rope = p->pos_encoding == BSA_POS_ROPE_LLAMA;
  if (rope) s->rope_freq = malloc(sizeof(double) * (size_t)(p->head_dim / 2 + 1));
  plan->backend = s;
  plan->backend_free = cpu_state_free;
  if ((need_q && !s->q) || (need_k && !s->k) || (need_v && !s->v) || !s->scratch || !s->slopes ||
      (rope && !s->rope_freq)) {
    size_t total = (q_elems + k_elems + v_elems) * sizeof(float);
    cpu_state_free(plan);
    return bsa__fail(plan->ctx, BSA_ERR_NOMEM,
                     "cpu run: out of memory for %zu bytes of staged inputs", total);
  }
  for (int32_t h = 0; h < p->num_qo_heads; h++) s->slopes[h] = bsa_alibi_slope(h, p->num_qo_heads);
  for (int32_t i = 0; rope && i < p->head_dim / 2; i++)
    s->rope_freq[i] = pow((double)p->rope_theta, -2.0 * i / p->head_dim) / p->rope_scale;
  *out = s;
  return BSA_OK;
}

bsa_status bsa__cpu_run(bsa_plan *plan, const void *q, const void *k, const void *v, void *o,
                        float *lse) {
  cpu_state *s = NULL;
  bsa_status st = ensure_state(plan, &s);
  if (st != BSA_OK) return st;
  const bsa_attn_params *p = &plan->p;
  const int64_t D = p->head_dim, M = p->qo_len, N = p->kv_len;
  const int kd = k_direct(plan), vd = v_direct(plan, v), qd = q_direct(plan);
  if (!vd && !s->v) { /* a plan that reads V in place met an unaligned V */
    const size_t v_bytes = staged_v_elems(p) * sizeof(float);
    s->v = bsa__aligned_alloc(v_bytes);
    if (!s->v)
      return bsa__fail(
          plan->ctx, BSA_ERR_NOMEM,
          "cpu run: out of memory for %zu bytes of staged v (v is not 64-byte aligned)", v_bytes);
  }
  if (kd) {
    s->kbase = k;
    bsa__strides(p->layout, N, p->num_kv_heads, (int32_t)D, &s->k_ld, &s->k_hs);
  } else { /* staged [Hkv, N, D] */
    s->kbase = s->k;
    s->k_ld = D;
    s->k_hs = N * D;
  }
  if (vd) {
    s->vbase = v;
    bsa__strides(p->layout, N, p->num_kv_heads, (int32_t)D, &s->v_ld, &s->v_hs);
  } else { /* staged [Hkv, N, Dp] */
    s->vbase = s->v;
    s->v_ld = ROUND32(D);
    s->v_hs = N * s->v_ld;
  }
  if (qd) {
    s->qbase = q;
    bsa__strides(p->layout, M, p->num_qo_heads, (int32_t)D, &s->q_tstride, &s->q_hstride);
    s->q_ld = s->q_tstride;
  } else {
    s->qbase = s->q;
    s->q_hstride = M * plan->group * D;
    s->q_tstride = plan->group * D;
    s->q_ld = D;
  }
  stage_job sj;
  memset(&sj, 0, sizeof sj);
  sj.plan = plan;
  sj.s = s;
  sj.q = q;
  sj.k = k;
  sj.v = v;
  const int64_t mc = (M + STAGE_CHUNK - 1) / STAGE_CHUNK;
  const int64_t nc = (N + STAGE_CHUNK - 1) / STAGE_CHUNK;
  sj.nq = qd ? 0 : mc;
  sj.nk = kd ? 0 : nc;
  sj.nv = vd ? 0 : nc;
  atomic_init(&sj.next, 0);
  if (sj.nq + sj.nk + sj.nv > 0) parallel(plan->ctx->num_threads, stage_worker, &sj);
  run_job rj;
  memset(&rj, 0, sizeof rj);
  rj.plan = plan;
  rj.s = s;
  rj.o = o;
  rj.lse = lse;
  atomic_init(&rj.next, 0);
  pthread_mutex_init(&rj.lock, NULL);
  parallel(s->threads, run_worker, &rj);
  pthread_mutex_destroy(&rj.lock);
  return BSA_OK;
}
