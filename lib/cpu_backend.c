/*
 * lib/cpu_backend.c - exact block-sparse attention on the CPU.
 *
 * A run has two phases:
 *  1. Staging: q, k, v are converted to float32, RoPE is applied, K is
 *     multiplied by sm_scale, and the data is laid out so that the rows of
 *     one work item are contiguous: q as [Hkv, M, group, D] (the query heads
 *     of a GQA group interleaved per token; float32 MHA q without RoPE is
 *     used in place), K transposed as [Hkv, D, N] so any key range is a
 *     column range, V as [Hkv, N, D] (float32 HND V is used in place).
 *  2. Work items (longest first) are taken by worker threads.  For an item
 *     with R = rows * group query rows, each KV segment is visited in
 *     chunks of KC keys (short segments gathered into one chunk):
 *     S = Q K^T (lib/cpu_gemm.c), the logits epilogue (soft cap,
 *     ALiBi, masks only on flagged segments), online softmax (running max
 *     m and sum l per row), O += P V.  Finally O /= l and
 *     LSE = m + log l; rows that saw no key get O = 0 and LSE = -inf.
 *
 * The float32 buffers live in the plan and are reused across runs.
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define KC 512 /* keys per chunk: S = [R, SLD] stays in L2 */
/* Row stride of S: room for a last piece's product rounded up to 32. */
#define SLD (KC + 32)
/* Pieces at least this long are multiplied in place, one product each. */
#define PIECE_INPLACE 64

typedef struct cpu_state {
  float *q, *v; /* staged inputs (K is staged transposed in kt) */
  size_t q_elems, kv_elems;
  float *scratch; /* per thread: S [Rmax, KC], O [Rmax, D], m, l [Rmax] */
  size_t scratch_per_thread;
  int threads;
  float *slopes;     /* [Hq] ALiBi slopes */
  double *rope_freq; /* [D/2] RoPE: theta^(-2i/D) / rope_scale */
  /* Where a run reads K and V: the staged copies, or the caller's float32
   * tensors in place when no conversion or RoPE is needed.  Key j of kv
   * head h starts at base + h * hstride + j * ld. */
  const float *vbase;
  int64_t ld, hstride;
  /* Where the query rows of item (kv head h, first token t) start:
   * qbase + h * q_hstride + t * q_tstride, rows q_ld floats apart; the
   * staged copy, or the caller's q for float32 MHA without RoPE. */
  const float *qbase;
  int64_t q_hstride, q_tstride, q_ld;
  /* K transposed, with np_k = kv_len rounded up to 32 plus 32 zero
   * columns.  Row-major [Hkv, D, np_k], so any key range is a column range
   * read in place; or, when every segment starts at a multiple of 32 keys
   * (dense, BSR with C a multiple of 32), in panels [Hkv, np_k / 32, D, 32]:
   * the 32 keys of a panel are one contiguous 16 KB (D = 128) block, which
   * the product streams in order where row-major rows of scattered blocks
   * sit 4 * np_k bytes apart (5-8% on BSR at density 0.1). */
  float *kt;
  int64_t np_k;
  int kt_panels;
} cpu_state;

static void cpu_state_free(bsa_plan *plan) {
  cpu_state *s = plan->backend;
  if (!s) return;
  free(s->q);
  free(s->kt);
  free(s->v);
  free(s->scratch);
  free(s->slopes);
  free(s->rope_freq);
  free(s);
  plan->backend = NULL;
  plan->backend_free = NULL;
}

/* ---------------------------------------------------------------- helpers */

/* K row d, key `key` in the staged K of one kv head (kh): its address, and
 * in *len how many of the keys up to `end` follow it contiguously (the
 * rest of the row when row-major, of the panel in panels).  kt_ld is the
 * distance between rows d and d + 1 of a key run. */
static inline float *kt_run(const cpu_state *s, float *kh, int32_t D, int32_t d, int64_t key,
                            int64_t end, int64_t *len) {
  if (!s->kt_panels) {
    *len = end - key;
    return kh + (int64_t)d * s->np_k + key;
  }
  const int64_t o = key & 31;
  *len = end - key < 32 - o ? end - key : 32 - o;
  return kh + (key >> 5) * D * 32 + d * 32 + o;
}
static inline int64_t kt_ld(const cpu_state *s) { return s->kt_panels ? 32 : s->np_k; }

/* Element i of base in dtype t, as a byte address. */
static inline const void *elem_at(const void *base, bsa_dtype t, int64_t i) {
  return (const char *)base + (size_t)i * bsa_dtype_size(t);
}

/* Converts D elements starting at element src of base to float32. */
static inline void load_row(float *dst, const void *base, bsa_dtype t, int64_t src, int32_t D) {
  bsa_convert(dst, BSA_DTYPE_F32, elem_at(base, t, src), t, (size_t)D);
}

/* Converts D float32 values to dtype t at element dst of base. */
static inline void store_row(void *base, bsa_dtype t, int64_t dst, const float *src, int32_t D) {
  bsa_convert((void *)elem_at(base, t, dst), t, src, BSA_DTYPE_F32, (size_t)D);
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

/* K tokens [t0, t1) into kt [Hkv, D, np_k], rotated and scaled: blocks of
 * tokens are loaded row by row, then written transposed so that each of the
 * D rows of kt gets one contiguous run. */
static void stage_k(stage_job *j, int64_t t0, int64_t t1) {
  const bsa_attn_params *p = &j->plan->p;
  cpu_state *s = j->s;
  const int32_t D = p->head_dim, Hkv = p->num_kv_heads;
  const int64_t N = p->kv_len;
  const int rope = p->pos_encoding == BSA_POS_ROPE_LLAMA;
  const float scale = p->sm_scale; /* folded into K: (s q).k = q.(s k) */
  float tmp[4096];
  double c[4096 / 2], sn[4096 / 2]; /* angles of the block's tokens */
  const int64_t tb = (int64_t)(sizeof tmp / sizeof tmp[0]) / D;
  for (int64_t t = t0; t < t1; t += tb) {
    const int64_t n = t1 - t < tb ? t1 - t : tb;
    if (rope)
      for (int64_t i = 0; i < n; i++)
        rope_angles(s, D, (double)(t + i), c + i * (D / 2), sn + i * (D / 2));
    for (int32_t h = 0; h < Hkv; h++) {
      for (int64_t i = 0; i < n; i++) {
        load_row(tmp + i * D, j->k, p->kv_dtype, bsa__tok_offset(p->layout, N, Hkv, D, t + i, h),
                 D);
        if (rope) rope_rotate(tmp + i * D, D, c + i * (D / 2), sn + i * (D / 2));
      }
      float *kh = s->kt + (int64_t)h * D * s->np_k;
      for (int32_t d = 0; d < D; d++)
        for (int64_t i0 = 0, len = 0; i0 < n; i0 += len) {
          float *dst = kt_run(s, kh, D, d, t + i0, t + n, &len);
          for (int64_t i = 0; i < len; i++) dst[i] = tmp[(i0 + i) * D + d] * scale;
        }
    }
  }
}

/* V tokens [t0, t1) into [Hkv, N, D]. */
static void stage_v(stage_job *j, int64_t t0, int64_t t1) {
  const bsa_attn_params *p = &j->plan->p;
  const int32_t D = p->head_dim, Hkv = p->num_kv_heads;
  const int64_t N = p->kv_len;
  for (int64_t t = t0; t < t1; t++)
    for (int32_t h = 0; h < Hkv; h++)
      load_row(j->s->v + ((int64_t)h * N + t) * D, j->v, p->kv_dtype,
               bsa__tok_offset(p->layout, N, Hkv, D, t, h), D);
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

/* Logits epilogue for keys [kb, kb + n) of one query row at token t: soft
 * cap, ALiBi, and masks only where the segment is flagged. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void row_logits(
    float *srow, int64_t n, int64_t kb, int64_t t, int64_t off, int32_t flags, const uint8_t *mrow,
    float cap, float slope, int alibi) {
  if (cap > 0.0f) {
    const float rc = 1.0f / cap;
    for (int64_t c = 0; c < n; c++) srow[c] = cap * tanhf(srow[c] * rc);
  }
  if (alibi) {
    const float base = (float)(kb - (t + off));
    for (int64_t c = 0; c < n; c++) srow[c] += slope * (base + (float)c);
  }
  if (flags & BSA__SEG_CAUSAL) {
    int64_t lim = t + off + 1 - kb; /* columns >= lim are not visible */
    if (lim < 0) lim = 0;
    for (int64_t c = lim; c < n; c++) srow[c] = -INFINITY;
  }
  if (flags & BSA__SEG_ELEMASK)
    for (int64_t c = 0; c < n; c++)
      if (!mrow[c]) srow[c] = -INFINITY;
}

/* Online-softmax update of one row over a chunk of n logits: on return srow
 * holds p = exp(s - m_new), *m and *l are updated, and the result is the
 * factor by which the row's previous O must be scaled. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static float row_softmax(float *srow,
                                                                                      int64_t n,
                                                                                      float *m,
                                                                                      float *l) {
  /* Reductions in 16 independent lanes so the compiler keeps them in
   * vector registers (a single accumulator would serialise them). */
  float lane[16];
  for (int u = 0; u < 16; u++) lane[u] = -INFINITY;
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    for (int u = 0; u < 16; u++) lane[u] = srow[c + u] > lane[u] ? srow[c + u] : lane[u];
  float mx = -INFINITY;
  for (; c < n; c++) mx = srow[c] > mx ? srow[c] : mx;
  for (int u = 0; u < 16; u++) mx = lane[u] > mx ? lane[u] : mx;
  float m_old = *m;
  float m_new = mx > m_old ? mx : m_old;
  if (m_new == -INFINITY) { /* nothing visible yet */
    for (c = 0; c < n; c++) srow[c] = 0.0f;
    return 1.0f;
  }
  for (int u = 0; u < 16; u++) lane[u] = 0.0f;
  for (c = 0; c + 16 <= n; c += 16)
    for (int u = 0; u < 16; u++) {
      float e = exp_neg(srow[c + u] - m_new);
      srow[c + u] = e;
      lane[u] += e;
    }
  float sum = 0.0f;
  for (; c < n; c++) {
    float e = exp_neg(srow[c] - m_new);
    srow[c] = e;
    sum += e;
  }
  for (int u = 0; u < 16; u++) sum += lane[u];
  float alpha = m_old == -INFINITY ? 0.0f : exp_neg(m_old - m_new);
  *m = m_new;
  *l = *l * alpha + sum;
  return alpha;
}

/* A chunk is up to KC keys taken from one or more segments (pieces).  The
 * product S = Q Kt needs K transposed with NP = nkeys rounded to 32 columns:
 * staging keeps all of K transposed, so a one-piece chunk reads it in place
 * and several pieces are copied as contiguous runs.  V is used in place when
 * the chunk is one piece and its rows are exactly Dp floats apart, else
 * packed into Vp [n, Dp]. */
typedef struct piece {
  const bsa__segment *seg;
  int64_t kb, n; /* keys [kb, kb + n) */
} piece;

typedef struct item_scratch {
  float *S;  /* [Rmax, SLD] logits, then probabilities */
  float *O;  /* [Rmax, Dp] unnormalised output */
  float *m;  /* [Rmax] running max */
  float *l;  /* [Rmax] running sum */
  float *Kt; /* [D, KC] */
  float *Vp; /* [KC, Dp] */
} item_scratch;

#define ROUND32(x) (((x) + 31) & ~(int64_t)31)

/* first: this is the item's first chunk, so O holds nothing yet and the
 * first product overwrites it instead of accumulating. */
static void run_chunk(run_job *j, const bsa__work_item *it, const piece *pc, int np, int64_t nkeys,
                      const item_scratch *w, int first) {
  bsa_plan *plan = j->plan;
  const bsa_attn_params *p = &plan->p;
  cpu_state *s = j->s;
  const int32_t D = p->head_dim, g = plan->group;
  const int64_t Dp = ROUND32(D), NP = ROUND32(nkeys);
  const int64_t M = p->qo_len, off = p->kv_len - M;
  const int64_t R = (it->q_end - it->q_begin) * g;
  const float *Q = s->qbase + (int64_t)it->kv_head * s->q_hstride + it->q_begin * s->q_tstride;
  const int64_t lda = s->q_ld;
  const int64_t ld = s->ld;
  float *KT = s->kt + (int64_t)it->kv_head * D * s->np_k;
  const float *V = s->vbase + (int64_t)it->kv_head * s->hstride;
  const int alibi = p->pos_encoding == BSA_POS_ALIBI;

  /* In place: every piece is long, so each gets its own products straight
   * from kt and V (its S columns rounded up to 32 spill into the next
   * piece's columns, which that piece's product then overwrites, or into
   * the slack of SLD).  Packed: pieces are copied into Kt [D, NP] and
   * Vp [nkeys, Dp] for one product each. */
  int inplace = D == Dp;
  for (int i = 0; i < np && inplace; i++)
    inplace = (pc[i].n >= PIECE_INPLACE || np == 1) && (!s->kt_panels || (pc[i].kb & 31) == 0);
  /* V rows in place only where they are contiguous per head (staged or
   * HND); NHD input rows are Hkv * D apart, which the product reads badly. */
  const int v_inplace = inplace && ld == Dp;
  int64_t c0 = 0;
  if (inplace) {
    /* One product per contiguous run of K: the whole piece row-major, a
     * panel (the piece starts on one) in panels. */
    for (int i = 0; i < np; i++) {
      const int64_t end = pc[i].kb + pc[i].n;
      for (int64_t key = pc[i].kb, len = 0; key < end; key += len, c0 += len) {
        const float *b = kt_run(s, KT, D, 0, key, end, &len);
        bsa__gemm(R, ROUND32(len), D, Q, lda, b, kt_ld(s), w->S + c0, SLD, 0);
      }
    }
  } else {
    for (int32_t d = 0; d < D; d++) {
      float *dst = w->Kt + (int64_t)d * KC;
      c0 = 0;
      for (int i = 0; i < np; i++) {
        const int64_t end = pc[i].kb + pc[i].n;
        for (int64_t key = pc[i].kb, len = 0; key < end; key += len, c0 += len) {
          const float *src = kt_run(s, KT, D, d, key, end, &len); /* sets len */
          memcpy(dst + c0, src, sizeof(float) * (size_t)len);
        }
      }
      memset(dst + nkeys, 0, sizeof(float) * (size_t)(NP - nkeys));
    }
    bsa__gemm(R, NP, D, Q, lda, w->Kt, KC, w->S, SLD, 0);
  }
  if (!v_inplace) {
    c0 = 0;
    for (int i = 0; i < np; i++)
      for (int64_t r = 0; r < pc[i].n; r++, c0++) {
        memcpy(w->Vp + c0 * Dp, V + (pc[i].kb + r) * ld, sizeof(float) * (size_t)D);
        if (Dp > D) memset(w->Vp + c0 * Dp + D, 0, sizeof(float) * (size_t)(Dp - D));
      }
  }

  for (int64_t r = 0; r < R; r++) {
    const int64_t t = it->q_begin + r / g;
    const int32_t qh = it->kv_head * g + (int32_t)(r % g);
    float *srow = w->S + r * SLD;
    c0 = 0;
    for (int i = 0; i < np; i++) {
      const bsa__segment *seg = pc[i].seg;
      const uint8_t *mrow = NULL;
      if (seg->flags & BSA__SEG_ELEMASK)
        mrow = plan->mask + seg->mask_offset + (seg->mask_row0 + (t - it->q_begin)) * plan->C +
               (pc[i].kb - seg->kv_begin);
      if (seg->flags || alibi || p->logits_soft_cap > 0.0f)
        row_logits(srow + c0, pc[i].n, pc[i].kb, t, off, seg->flags, mrow, p->logits_soft_cap,
                   alibi ? s->slopes[qh] : 0.0f, alibi);
      c0 += pc[i].n;
    }
    float alpha = row_softmax(srow, nkeys, &w->m[r], &w->l[r]);
    if (alpha != 1.0f && !first) {
      float *orow = w->O + r * Dp;
      for (int64_t d = 0; d < Dp; d++) orow[d] *= alpha;
    }
  }
  if (v_inplace) {
    c0 = 0;
    for (int i = 0; i < np; i++) {
      bsa__gemm(R, Dp, pc[i].n, w->S + c0, SLD, V + pc[i].kb * ld, ld, w->O, Dp, !first || i > 0);
      c0 += pc[i].n;
    }
  } else {
    bsa__gemm(R, Dp, nkeys, w->S, SLD, w->Vp, Dp, w->O, Dp, !first);
  }
}

static void run_item(run_job *j, const bsa__work_item *it, float *scratch) {
  bsa_plan *plan = j->plan;
  const bsa_attn_params *p = &plan->p;
  const int32_t D = p->head_dim, g = plan->group, Hq = p->num_qo_heads;
  const int64_t Dp = ROUND32(D);
  const int64_t M = p->qo_len;
  const int64_t R = (it->q_end - it->q_begin) * g;
  const int64_t Rmax = plan->max_item_rows * g;
  item_scratch w;
  w.S = scratch;
  w.O = w.S + Rmax * SLD;
  w.m = w.O + Rmax * Dp;
  w.l = w.m + Rmax;
  w.Kt = w.l + Rmax;
  w.Vp = w.Kt + (int64_t)KC * D;

  int first = 1; /* O is written by the first chunk's product */
  for (int64_t r = 0; r < R; r++) {
    w.m[r] = -INFINITY;
    w.l[r] = 0.0f;
  }
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
    store_row(j->o, p->o_dtype, dst, orow, D);
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

/* V is read straight from the caller's float32 input: always for HND (rows
 * of a head are contiguous, products take them in place), and for NHD when
 * the plan is sparse (density <= V_DIRECT_DENSITY) and D is a multiple of 32:
 * then each chunk copies its V rows into Vp, which costs less than staging
 * all of V when few rows are used (a dense NHD plan stages V). */
#define V_DIRECT_DENSITY 0.25
static int v_direct(const bsa_plan *plan) {
  const bsa_attn_params *p = &plan->p;
  if (p->kv_dtype != BSA_DTYPE_F32) return 0;
  if (p->layout == BSA_LAYOUT_HND) return 1;
  return p->head_dim % 32 == 0 && plan->info.density <= V_DIRECT_DENSITY;
}

/* The caller's q can be used in place: float32, no RoPE, and one query
 * head per kv head (so the rows of an item are evenly spaced). */
static int q_direct(const bsa_plan *plan) {
  const bsa_attn_params *p = &plan->p;
  return p->q_dtype == BSA_DTYPE_F32 && p->pos_encoding != BSA_POS_ROPE_LLAMA && plan->group == 1;
}

/* Whether every segment of the work list starts at a multiple of 32 keys
 * (K is then staged in panels, see cpu_state). */
static int segments_aligned(const bsa_plan *plan) {
  for (int64_t i = 0; i < plan->num_items; i++) {
    const bsa__work_item *it = &plan->items[i];
    for (int32_t k = 0; k < it->num_segments; k++)
      if (plan->segs[it->seg_offset + k].kv_begin & 31) return 0;
  }
  return 1;
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
  s->q_elems = (size_t)p->num_qo_heads * (size_t)p->qo_len * (size_t)p->head_dim;
  s->kv_elems = (size_t)p->num_kv_heads * (size_t)p->kv_len * (size_t)p->head_dim;
  const size_t Rmax = (size_t)plan->max_item_rows * (size_t)plan->group;
  const size_t Dp = (size_t)ROUND32(p->head_dim);
  s->scratch_per_thread =
      Rmax * SLD + Rmax * Dp + 2 * Rmax + (size_t)KC * p->head_dim + (size_t)KC * Dp + 16;
  s->scratch_per_thread = (s->scratch_per_thread + 15) & ~(size_t)15;
  const int need_q = !q_direct(plan);
  if (need_q) s->q = bsa__aligned_alloc(s->q_elems * sizeof(float));
  const int need_v = !v_direct(plan);
  if (need_v) s->v = bsa__aligned_alloc(s->kv_elems * sizeof(float));
  s->np_k = ROUND32(p->kv_len) + 32;
  s->kt_panels = segments_aligned(plan);
  const size_t kt_elems = (size_t)p->num_kv_heads * (size_t)p->head_dim * (size_t)s->np_k;
  s->kt = bsa__aligned_alloc(kt_elems * sizeof(float));
  if (s->kt) memset(s->kt, 0, kt_elems * sizeof(float)); /* the padding stays zero */
  s->scratch = bsa__aligned_alloc(s->scratch_per_thread * (size_t)s->threads * sizeof(float));
  s->slopes = malloc(sizeof(float) * (size_t)p->num_qo_heads);
  const int rope = p->pos_encoding == BSA_POS_ROPE_LLAMA;
  if (rope) s->rope_freq = malloc(sizeof(double) * (size_t)(p->head_dim / 2 + 1));
  plan->backend = s;
  plan->backend_free = cpu_state_free;
  if ((need_q && !s->q) || !s->kt || (need_v && !s->v) || !s->scratch || !s->slopes ||
      (rope && !s->rope_freq)) {
    size_t total = (s->q_elems + 2 * s->kv_elems) * sizeof(float);
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
  /* V is read from the input when v_direct says so; K is always staged
   * (transposed, with RoPE). */
  const int direct = v_direct(plan);
  s->vbase = direct ? v : s->v;
  /* Staged V is HND. */
  bsa__strides(direct ? p->layout : BSA_LAYOUT_HND, p->kv_len, p->num_kv_heads, p->head_dim, &s->ld,
               &s->hstride);
  const int64_t D = p->head_dim, M = p->qo_len;
  if (q_direct(plan)) {
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
  const int64_t nc = (p->kv_len + STAGE_CHUNK - 1) / STAGE_CHUNK;
  sj.nq = q_direct(plan) ? 0 : mc;
  sj.nk = nc;
  sj.nv = direct ? 0 : nc;
  atomic_init(&sj.next, 0);
  parallel(plan->ctx->num_threads, stage_worker, &sj);
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
