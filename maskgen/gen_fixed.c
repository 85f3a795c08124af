/*
 * maskgen/gen_fixed.c - fixed-block generators: the exact block-mass
 * oracle and mean-pooled Q/K scoring, with top-p / top-k / threshold
 * selection and forced sink and local blocks.
 *
 * Oracle: for each kv head h and each row tile of up to TILE_Q query rows
 * of each query head of the group, S = sm_scale * Q_tile K^T is one sgemm
 * ([rows, D] x [D, Sk'] where Sk' stops at the causal diagonal of the
 * tile's last row), then per row the softmax (max, exp, sum) and the sum of
 * each column block's share.  score[h, i, j] is the mean over the rows of
 * row block i (with at least one visible key) and over the group's query
 * heads of the mass of column block j, so each row of scores sums to 1.
 * Work is split into jobs of whole row blocks (at least TILE_Q rows) so a
 * job owns its output rows and results do not depend on the thread count.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen_internal.h"

enum { TILE_Q = 64 };

typedef struct geom {
  int64_t sq, sk, R, C, mb, nb, off;
  int causal;
} geom;

static geom make_geom(const bsa_trace_record *rec, const bsa_maskgen_params *p) {
  geom g;
  g.sq = rec->qo_len;
  g.sk = rec->kv_len;
  g.R = p->block_q;
  g.C = p->block_k;
  g.mb = (g.sq + g.R - 1) / g.R;
  g.nb = (g.sk + g.C - 1) / g.C;
  g.off = g.sk - g.sq;
  g.causal = rec->causal != 0;
  return g;
}

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- vectorisable row helpers ------------------------------------------ */

static inline float vmax(const float *x, int64_t n) {
  float a[16];
  for (int u = 0; u < 16; u++) a[u] = -INFINITY;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 16; u++) a[u] = x[j + u] > a[u] ? x[j + u] : a[u];
  float m = -INFINITY;
  for (int u = 0; u < 16; u++) m = a[u] > m ? a[u] : m;
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}

static inline float vsum(const float *x, int64_t n) {
  float a[16] = {0};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 16; u++) a[u] += x[j + u];
  float s = 0.0f;
  for (int u = 0; u < 16; u++) s += a[u];
  for (; j < n; j++) s += x[j];
  return s;
}

/* One query row: s [lim] scaled logits (overwritten with exp).  Adds the
 * softmax mass of each column block of width C into acc [ceil(lim / C)];
 * bsum is scratch of the same size. */
BSA__HOT static void row_block_mass(float *s, int64_t lim, int64_t C, double *acc, double *bsum) {
  float m = vmax(s, lim);
  for (int64_t j = 0; j < lim; j++) s[j] = bsa__expf(s[j] - m);
  int64_t nblk = (lim + C - 1) / C;
  double tot = 0.0;
  for (int64_t b = 0; b < nblk; b++) {
    int64_t j0 = b * C, w = imin(C, lim - j0);
    bsum[b] = vsum(s + j0, w);
    tot += bsum[b];
  }
  double inv = 1.0 / tot; /* tot >= 1: the maximum contributes exp(0) */
  for (int64_t b = 0; b < nblk; b++) acc[b] += bsum[b] * inv;
}

/* ---- oracle ----------------------------------------------------------- */

typedef struct oracle_ctx {
  const bsa_trace_record *rec;
  geom g;
  float scale;
  int32_t group;
  int64_t rb_per_job, jobs_per_head;
  float *scores; /* [Hkv, MB, NB] */
  /* per thread scratch */
  float **S;      /* [TILE_Q, Sk] */
  double **acc;   /* [rb_per_job, NB] */
  double **bsum;  /* [NB] */
  int64_t **rows; /* [rb_per_job] rows with a visible key, summed over heads */
} oracle_ctx;

static bsa_status oracle_job(void *arg, int64_t job, int thread) {
  oracle_ctx *c = arg;
  const geom *g = &c->g;
  const bsa_trace_record *rec = c->rec;
  int64_t D = rec->head_dim;
  int32_t h = (int32_t)(job / c->jobs_per_head);
  int64_t rb0 = (job % c->jobs_per_head) * c->rb_per_job;
  int64_t rb1 = imin(g->mb, rb0 + c->rb_per_job);
  int64_t q0 = rb0 * g->R, q1 = imin(g->sq, rb1 * g->R);
  float *S = c->S[thread];
  double *acc = c->acc[thread], *bsum = c->bsum[thread];
  int64_t *rows = c->rows[thread];
  memset(acc, 0, sizeof(double) * (size_t)((rb1 - rb0) * g->nb));
  memset(rows, 0, sizeof(int64_t) * (size_t)(rb1 - rb0));
  const float *K = rec->k + (size_t)h * g->sk * D;
  for (int32_t gi = 0; gi < c->group; gi++) {
    const float *Q = rec->q + ((size_t)h * c->group + gi) * g->sq * D;
    for (int64_t s0 = q0; s0 < q1; s0 += TILE_Q) {
      int64_t s1 = imin(q1, s0 + TILE_Q);
      /* Keys past the diagonal of the tile's last row are never needed. */
      int64_t kv_hi = g->causal ? imin(g->sk, s1 - 1 + g->off + 1) : g->sk;
      if (kv_hi <= 0) continue;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(s1 - s0), (int)kv_hi, (int)D,
                  c->scale, Q + (size_t)s0 * D, (int)D, K, (int)D, 0.0f, S, (int)kv_hi);
      for (int64_t i = s0; i < s1; i++) {
        int64_t lim = g->causal ? imin(kv_hi, i + g->off + 1) : kv_hi;
        if (lim <= 0) continue;
        int64_t lrb = i / g->R - rb0;
        row_block_mass(S + (size_t)(i - s0) * kv_hi, lim, g->C, acc + (size_t)lrb * g->nb, bsum);
        rows[lrb]++;
      }
    }
  }
  for (int64_t rb = rb0; rb < rb1; rb++) {
    float *out = c->scores + ((size_t)h * g->mb + rb) * g->nb;
    const double *a = acc + (size_t)(rb - rb0) * g->nb;
    int64_t n = rows[rb - rb0];
    for (int64_t j = 0; j < g->nb; j++) out[j] = n ? (float)(a[j] / (double)n) : 0.0f;
  }
  return BSA_OK;
}

static bsa_status oracle_scores(const bsa_trace_record *rec, const bsa_maskgen_params *p,
                                const geom *g, float *scores) {
  oracle_ctx c;
  memset(&c, 0, sizeof c);
  c.rec = rec;
  c.g = *g;
  c.scale = bsa__record_scale(rec);
  c.group = rec->num_qo_heads / rec->num_kv_heads;
  c.rb_per_job = imax(1, (TILE_Q + g->R - 1) / g->R);
  c.jobs_per_head = (g->mb + c.rb_per_job - 1) / c.rb_per_job;
  c.scores = scores;
  int64_t njobs = c.jobs_per_head * rec->num_kv_heads;
  int nt = bsa__gen_threads(p->num_threads);
  if (nt > njobs) nt = (int)njobs;
  c.S = calloc((size_t)nt, sizeof *c.S);
  c.acc = calloc((size_t)nt, sizeof *c.acc);
  c.bsum = calloc((size_t)nt, sizeof *c.bsum);
  c.rows = calloc((size_t)nt, sizeof *c.rows);
  bsa_status st = BSA_OK;
  if (!c.S || !c.acc || !c.bsum || !c.rows) st = BSA_ERR_NOMEM;
  for (int t = 0; st == BSA_OK && t < nt; t++) {
    c.S[t] = malloc(sizeof(float) * (size_t)TILE_Q * (size_t)g->sk);
    c.acc[t] = malloc(sizeof(double) * (size_t)(c.rb_per_job * g->nb));
    c.bsum[t] = malloc(sizeof(double) * (size_t)g->nb);
    c.rows[t] = malloc(sizeof(int64_t) * (size_t)c.rb_per_job);
    if (!c.S[t] || !c.acc[t] || !c.bsum[t] || !c.rows[t]) st = BSA_ERR_NOMEM;
  }
  if (st == BSA_OK) st = bsa__gen_parallel(nt, njobs, oracle_job, &c);
  for (int t = 0; t < nt; t++) {
    if (c.S) free(c.S[t]);
    if (c.acc) free(c.acc[t]);
    if (c.bsum) free(c.bsum[t]);
    if (c.rows) free(c.rows[t]);
  }
  free(c.S);
  free(c.acc);
  free(c.bsum);
  free(c.rows);
  if (st == BSA_ERR_NOMEM)
    return bsa__fail(NULL, st, "oracle: out of memory for record '%s' (%lld keys)",
                     rec->name ? rec->name : "", (long long)g->sk);
  return st;
}

/* ---- pooled ----------------------------------------------------------- */

/* Mean of rows [r0, r1) of x [n, D] into out [D]; acc [D] is scratch. */
static void mean_rows(const float *x, int64_t r0, int64_t r1, int64_t D, double *acc, float *out) {
  for (int64_t d = 0; d < D; d++) acc[d] = 0.0;
  for (int64_t r = r0; r < r1; r++)
    for (int64_t d = 0; d < D; d++) acc[d] += x[(size_t)r * D + d];
  double inv = r1 > r0 ? 1.0 / (double)(r1 - r0) : 0.0;
  for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[d] * inv);
}

static bsa_status pooled_scores(const bsa_trace_record *rec, const geom *g, float *scores) {
  int64_t D = rec->head_dim;
  int32_t hkv = rec->num_kv_heads, group = rec->num_qo_heads / hkv;
  float scale = bsa__record_scale(rec);
  float *Qp = malloc(sizeof(float) * (size_t)(g->mb * D));
  float *Kp = malloc(sizeof(float) * (size_t)(g->nb * D));
  float *L = malloc(sizeof(float) * (size_t)(g->mb * g->nb));
  double *w = malloc(sizeof(double) * (size_t)(g->mb * g->nb));
  double *acc = malloc(sizeof(double) * (size_t)D);
  if (!Qp || !Kp || !L || !w || !acc) {
    free(Qp), free(Kp), free(L), free(w), free(acc);
    return bsa__fail(NULL, BSA_ERR_NOMEM, "pooled: out of memory for record '%s'",
                     rec->name ? rec->name : "");
  }
  /* w[i, j]: visible keys of block (i, j) per row of i, the weight that
   * turns a pooled logit into the block's share of the row's mass. */
  for (int64_t i = 0; i < g->mb; i++) {
    int64_t r0 = i * g->R, r1 = imin(g->sq, r0 + g->R);
    for (int64_t j = 0; j < g->nb; j++) {
      int64_t j0 = j * g->C, j1 = imin(g->sk, j0 + g->C);
      w[i * g->nb + j] =
          (double)bsa__visible_pairs(r0, r1, j0, j1, g->off, g->causal) / (double)(r1 - r0);
    }
  }
  memset(scores, 0, sizeof(float) * (size_t)(hkv * g->mb * g->nb));
  for (int32_t h = 0; h < hkv; h++) {
    const float *K = rec->k + (size_t)h * g->sk * D;
    for (int64_t j = 0; j < g->nb; j++)
      mean_rows(K, j * g->C, imin(g->sk, (j + 1) * g->C), D, acc, Kp + j * D);
    float *out = scores + (size_t)h * g->mb * g->nb;
    for (int32_t gi = 0; gi < group; gi++) {
      const float *Q = rec->q + ((size_t)h * group + gi) * g->sq * D;
      for (int64_t i = 0; i < g->mb; i++)
        mean_rows(Q, i * g->R, imin(g->sq, (i + 1) * g->R), D, acc, Qp + i * D);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->mb, (int)g->nb, (int)D, scale,
                  Qp, (int)D, Kp, (int)D, 0.0f, L, (int)g->nb);
      for (int64_t i = 0; i < g->mb; i++) {
        const float *l = L + i * g->nb;
        const double *wi = w + i * g->nb;
        double m = -INFINITY, tot = 0.0;
        for (int64_t j = 0; j < g->nb; j++)
          if (wi[j] > 0 && l[j] > m) m = l[j];
        if (m == -INFINITY) continue; /* no visible key in this row block */
        for (int64_t j = 0; j < g->nb; j++)
          if (wi[j] > 0) tot += wi[j] * exp((double)l[j] - m);
        for (int64_t j = 0; j < g->nb; j++)
          if (wi[j] > 0) out[i * g->nb + j] += (float)(wi[j] * exp((double)l[j] - m) / tot / group);
      }
    }
  }
  free(Qp), free(Kp), free(L), free(w), free(acc);
  return BSA_OK;
}

/* ---- shared: record, forced blocks, selection -------------------------- */

static bsa_status fixed_generate(bsa_maskgen_method method, const bsa_trace_record *rec,
                                 const bsa_maskgen_params *p, bsa_mask_record **out) {
  if (!out) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "out is NULL");
  *out = NULL;
  bsa_status st = bsa_maskgen_params_check(method, p, rec);
  if (st != BSA_OK) return st;
  geom g = make_geom(rec, p);
  int32_t hkv = rec->num_kv_heads;
  bsa_mask_record *m = bsa__mask_record_new(rec->name, hkv, g.sq, g.sk, g.mb, g.nb, 0);
  if (!m) return BSA_ERR_NOMEM;
  st = method == BSA_MASKGEN_ORACLE ? oracle_scores(rec, p, &g, m->block_scores)
                                    : pooled_scores(rec, &g, m->block_scores);
  uint8_t *elig = malloc((size_t)g.nb), *forced = malloc((size_t)g.nb);
  int64_t *order = malloc(sizeof(int64_t) * (size_t)g.nb);
  if (st == BSA_OK && (!elig || !forced || !order))
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory selecting blocks");
  for (int32_t h = 0; st == BSA_OK && h < hkv; h++) {
    for (int64_t i = 0; i < g.mb; i++)
      m->block_row_sz[(size_t)h * g.mb + i] = (int32_t)(imin(g.sq, (i + 1) * g.R) - i * g.R);
    for (int64_t j = 0; j < g.nb; j++)
      m->block_col_sz[(size_t)h * g.nb + j] = (int32_t)(imin(g.sk, (j + 1) * g.C) - j * g.C);
    for (int64_t i = 0; i < g.mb; i++) {
      int64_t r0 = i * g.R, r1 = imin(g.sq, r0 + g.R);
      for (int64_t j = 0; j < g.nb; j++) {
        int64_t j0 = j * g.C, j1 = imin(g.sk, j0 + g.C);
        elig[j] = bsa__visible_pairs(r0, r1, j0, j1, g.off, g.causal) > 0;
        forced[j] = j < p->sink_blocks;
      }
      if (p->local_blocks > 0) {
        /* The band: column blocks holding the diagonal keys of the block's
         * rows, local_blocks - 1 more before them and, when not causal, as
         * many after them. */
        int64_t d0 = imax(0, imin(g.sk - 1, r0 + g.off));
        int64_t d1 = imax(0, imin(g.sk - 1, r1 - 1 + g.off));
        int64_t b0 = imax(0, d0 / g.C - (p->local_blocks - 1));
        int64_t b1 = imin(g.nb - 1, d1 / g.C + (g.causal ? 0 : p->local_blocks - 1));
        for (int64_t j = b0; j <= b1; j++) forced[j] = 1;
      }
      size_t row = ((size_t)h * g.mb + i) * g.nb;
      bsa__select_row(m->block_scores + row, elig, forced, g.nb, p->select, p->top_p, p->top_k,
                      p->threshold, 0, order, m->block_mask_map + row);
    }
  }
  free(elig), free(forced), free(order);
  bsa_mask_density dens;
  if (st == BSA_OK) st = bsa_mask_density_get(m, -1, g.causal, &dens);
  if (st != BSA_OK) {
    bsa_mask_record_free(m);
    return st;
  }
  m->density = dens.compute;
  *out = m;
  return BSA_OK;
}

bsa_status bsa_maskgen_oracle(const bsa_trace_record *rec, const bsa_maskgen_params *p,
                              bsa_mask_record **out) {
  return fixed_generate(BSA_MASKGEN_ORACLE, rec, p, out);
}

bsa_status bsa_maskgen_pooled(const bsa_trace_record *rec, const bsa_maskgen_params *p,
                              bsa_mask_record **out) {
  return fixed_generate(BSA_MASKGEN_POOLED, rec, p, out);
}

bsa_status bsa_maskgen_run(bsa_maskgen_method method, const bsa_trace_record *rec,
                           const bsa_maskgen_params *p, bsa_mask_record **out) {
  switch (method) {
    case BSA_MASKGEN_ORACLE:
      return bsa_maskgen_oracle(rec, p, out);
    case BSA_MASKGEN_POOLED:
      return bsa_maskgen_pooled(rec, p, out);
    case BSA_MASKGEN_KMEANS:
      return bsa_maskgen_kmeans(rec, p, out);
  }
  if (out) *out = NULL;
  return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "method = %d is not a method", (int)method);
}
