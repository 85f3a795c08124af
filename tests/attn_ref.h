/*
 * tests/attn_ref.h - naive double-precision attention reference and random
 * case helpers shared by the CPU and GPU attention suites.
 *
 * The reference builds the full element mask [Hkv, M, N] from a sparsity
 * description on its own (no code shared with lib/), then computes softmax
 * attention row by row in double.
 */
#ifndef BSA_TESTS_ATTN_REF_H
#define BSA_TESTS_ATTN_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bsa.h"

/* xorshift-style PRNG with a 64-bit state (splitmix64 step). */
static inline uint64_t ref_rand_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static inline double ref_rand_unit(uint64_t *s) { /* [0, 1) */
  return (double)(ref_rand_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}
static inline double ref_rand_normal(uint64_t *s) {
  double u = ref_rand_unit(s), v = ref_rand_unit(s);
  if (u < 1e-300) u = 1e-300;
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Element mask [Hkv, M, N] from a BSR description. */
static inline uint8_t *ref_mask_from_bsr(const bsa_attn_params *p, const bsa_bsr_desc *b) {
  const int64_t M = p->qo_len, N = p->kv_len, Hkv = p->num_kv_heads;
  const int64_t MB = (M + b->R - 1) / b->R;
  uint8_t *m = calloc((size_t)(Hkv * M * N), 1);
  for (int64_t h = 0; h < Hkv; h++) {
    const int32_t *ip = b->indptr + (b->per_kv_head ? h * (MB + 1) : 0);
    for (int64_t i = 0; i < MB; i++)
      for (int64_t e = ip[i]; e < ip[i + 1]; e++) {
        int64_t c = b->indices[e];
        for (int64_t r = 0; r < b->R; r++)
          for (int64_t cc = 0; cc < b->C; cc++) {
            int64_t row = i * b->R + r, col = c * b->C + cc;
            if (row >= M || col >= N) continue;
            int keep = b->mask ? b->mask[(e * b->R + r) * b->C + cc] != 0 : 1;
            if (keep) m[(h * M + row) * N + col] = 1;
          }
      }
  }
  return m;
}

/* Element mask [Hkv, M, N] from a variable-block description. */
static inline uint8_t *ref_mask_from_var(const bsa_attn_params *p, const bsa_var_desc *v) {
  const int64_t M = p->qo_len, N = p->kv_len, Hkv = p->num_kv_heads;
  const int64_t MB = v->num_block_rows, NB = v->num_block_cols;
  uint8_t *m = calloc((size_t)(Hkv * M * N), 1);
  for (int64_t h = 0; h < Hkv; h++) {
    int64_t r0 = 0;
    for (int64_t i = 0; i < MB; i++) {
      int64_t rs = v->block_row_sz[h * MB + i], c0 = 0;
      for (int64_t j = 0; j < NB; j++) {
        int64_t cs = v->block_col_sz[h * NB + j];
        if (v->block_mask_map[(h * MB + i) * NB + j])
          for (int64_t r = r0; r < r0 + rs; r++)
            for (int64_t c = c0; c < c0 + cs; c++) m[(h * M + r) * N + c] = 1;
        c0 += cs;
      }
      r0 += rs;
    }
  }
  return m;
}

static inline double ref_alibi_slope(int h, int n_heads) {
  int n = 1;
  while (n * 2 <= n_heads) n *= 2;
  if (h < n) return pow(2.0, -8.0 * (h + 1) / n);
  return pow(2.0, -4.0 * (2 * (h - n) + 1) / n);
}

static inline void ref_rope(double *x, int D, double pos, double theta, double scale) {
  for (int i = 0; i < D / 2; i++) {
    double a = pos / scale * pow(theta, -2.0 * i / D);
    double x1 = x[i], x2 = x[i + D / 2];
    x[i] = x1 * cos(a) - x2 * sin(a);
    x[i + D / 2] = x2 * cos(a) + x1 * sin(a);
  }
}

/* Reads element (t, h, d) of a tensor given as float32 values in the
 * params' layout (the caller converts dtypes to float first). */
static inline double ref_at(const float *x, bsa_layout layout, int64_t len, int heads, int D,
                            int64_t t, int h, int d) {
  int64_t off = layout == BSA_LAYOUT_NHD ? (t * heads + h) * (int64_t)D
                                         : ((int64_t)h * len + t) * (int64_t)D;
  return x[off + d];
}

/* Reference attention.  q, k, v are float32 values (already rounded to the
 * input dtype) in the params' layout; emask [Hkv, M, N] (NULL = dense).
 * o_ref is float64 in the same layout as q; lse_ref [M, Hq]. */
static inline void ref_attention(const bsa_attn_params *p, const float *q, const float *k,
                                 const float *v, const uint8_t *emask, double *o_ref,
                                 double *lse_ref) {
  const int Hq = p->num_qo_heads, Hkv = p->num_kv_heads, D = p->head_dim;
  const int64_t M = p->qo_len, N = p->kv_len, off = N - M;
  const int g = Hq / Hkv;
  const double scale = p->sm_scale > 0 ? p->sm_scale : 1.0 / sqrt((double)D);
  const double theta = p->rope_theta > 0 ? p->rope_theta : 1e4;
  const double rscale = p->rope_scale > 0 ? p->rope_scale : 1.0;
  double *kk = malloc(sizeof(double) * (size_t)(N * D));
  double *qq = malloc(sizeof(double) * (size_t)D);
  double *s = malloc(sizeof(double) * (size_t)N);
  for (int qh = 0; qh < Hq; qh++) {
    int h = qh / g;
    for (int64_t j = 0; j < N; j++) {
      for (int d = 0; d < D; d++) kk[j * D + d] = ref_at(k, p->layout, N, Hkv, D, j, h, d);
      if (p->pos_encoding == BSA_POS_ROPE_LLAMA) ref_rope(kk + j * D, D, (double)j, theta, rscale);
    }
    for (int64_t t = 0; t < M; t++) {
      for (int d = 0; d < D; d++) qq[d] = ref_at(q, p->layout, M, Hq, D, t, qh, d);
      if (p->pos_encoding == BSA_POS_ROPE_LLAMA) ref_rope(qq, D, (double)(t + off), theta, rscale);
      double mx = -INFINITY;
      for (int64_t j = 0; j < N; j++) {
        int vis = !emask || emask[((int64_t)h * M + t) * N + j];
        if (p->causal && j > t + off) vis = 0;
        if (!vis) {
          s[j] = -INFINITY;
          continue;
        }
        double acc = 0;
        for (int d = 0; d < D; d++) acc += qq[d] * kk[j * D + d];
        acc *= scale;
        if (p->logits_soft_cap > 0) acc = p->logits_soft_cap * tanh(acc / p->logits_soft_cap);
        if (p->pos_encoding == BSA_POS_ALIBI)
          acc += ref_alibi_slope(qh, Hq) * (double)(j - (t + off));
        s[j] = acc;
        if (acc > mx) mx = acc;
      }
      int64_t ob = p->layout == BSA_LAYOUT_NHD ? (t * Hq + qh) * (int64_t)D
                                               : ((int64_t)qh * M + t) * (int64_t)D;
      if (mx == -INFINITY) {
        for (int d = 0; d < D; d++) o_ref[ob + d] = 0;
        lse_ref[t * Hq + qh] = -INFINITY;
        continue;
      }
      double sum = 0;
      for (int64_t j = 0; j < N; j++) sum += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
      for (int d = 0; d < D; d++) o_ref[ob + d] = 0;
      for (int64_t j = 0; j < N; j++) {
        if (s[j] == -INFINITY) continue;
        double w = exp(s[j] - mx) / sum;
        for (int d = 0; d < D; d++) o_ref[ob + d] += w * ref_at(v, p->layout, N, Hkv, D, j, h, d);
      }
      lse_ref[t * Hq + qh] = mx + log(sum);
    }
  }
  free(kk);
  free(qq);
  free(s);
}

#endif
