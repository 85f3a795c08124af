/*
 * tests/check_maskgen.c - mask generators and evaluation (maskgen/gen_*.c,
 * kmeans.c, eval.c) against independent naive computations.
 *
 * - oracle block scores, pooled scores and kmeans centroid scores are
 *   recomputed here in double with plain loops;
 * - selection rules are checked for what they promise: top-p reaches p on
 *   every row block with the shortest prefix, top-k keeps the k best,
 *   threshold keeps exactly those above it, forced sinks and local bands
 *   are on, the kmeans floor holds;
 * - k-means recovers a planted cluster layout (well separated clusters
 *   scattered over the positions), and the generator's permutation makes
 *   each planted cluster one block; results are deterministic for a seed
 *   and do not depend on the thread count;
 * - densities and the evaluation (recall, rel L2 / L1, cosine, through
 *   libbsa) match element-by-element double loops, also with permutations,
 *   causal masking, sampled rows and traces without v;
 * - bad arguments give errors that name the argument.
 * Inputs are fresh random values for every check (the seed is printed on
 * failure); outputs are poisoned where the API lets the caller allocate.
 */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bsa.h"
#include "bsa/maskgen.h"
#include "bsa/trace.h"
#include "test_rand.h"


static bsa_trace_record *new_record(int32_t hq, int32_t hkv, int32_t D, int64_t sq, int64_t sk,
                                    int causal, double amp, int with_v) {
  bsa_trace_record *r = calloc(1, sizeof *r);
  r->name = strdup("rec0");
  r->num_qo_heads = hq;
  r->num_kv_heads = hkv;
  r->head_dim = D;
  r->qo_len = sq;
  r->kv_len = sk;
  r->causal = causal;
  r->step = -1;
  r->q = malloc(sizeof(float) * (size_t)(hq * sq * D));
  r->k = malloc(sizeof(float) * (size_t)(hkv * sk * D));
  r->v = with_v ? malloc(sizeof(float) * (size_t)(hkv * sk * D)) : NULL;
  for (int64_t x = 0; x < hq * sq * D; x++) r->q[x] = (float)(amp * nrand());
  for (int64_t x = 0; x < hkv * sk * D; x++) r->k[x] = (float)(amp * nrand());
  if (with_v)
    for (int64_t x = 0; x < hkv * sk * D; x++) r->v[x] = (float)nrand();
  return r;
}

static void free_record(bsa_trace_record *r) {
  if (!r) return;
  free(r->name), free(r->q), free(r->k), free(r->v), free(r);
}

static double rec_scale(const bsa_trace_record *r) {
  return r->sm_scale > 0 ? r->sm_scale : 1.0 / sqrt((double)r->head_dim);
}

/* Softmax row of query head hq, token i over all keys (causal when the
 * record is); p [Sk].  Returns 0 when the row sees no key. */
static int naive_probs(const bsa_trace_record *r, int32_t hq, int64_t i, double *p) {
  int64_t D = r->head_dim, sk = r->kv_len, off = r->kv_len - r->qo_len;
  int32_t h = hq / (r->num_qo_heads / r->num_kv_heads);
  const float *q = r->q + ((size_t)hq * r->qo_len + i) * D;
  double mx = -INFINITY;
  for (int64_t j = 0; j < sk; j++) {
    if (r->causal && j > i + off) {
      p[j] = -INFINITY;
      continue;
    }
    const float *k = r->k + ((size_t)h * sk + j) * D;
    double s = 0;
    for (int64_t d = 0; d < D; d++) s += (double)q[d] * k[d];
    p[j] = s * rec_scale(r);
    if (p[j] > mx) mx = p[j];
  }
  if (mx == -INFINITY) {
    for (int64_t j = 0; j < sk; j++) p[j] = 0;
    return 0;
  }
  double tot = 0;
  for (int64_t j = 0; j < sk; j++) tot += p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
  for (int64_t j = 0; j < sk; j++) p[j] /= tot;
  return 1;
}

/* ---- generator checks -------------------------------------------------- */

/* Expected oracle scores [Hkv, MB, NB] in double. */
static double *naive_oracle(const bsa_trace_record *r, int64_t R, int64_t C) {
  int64_t sq = r->qo_len, sk = r->kv_len, mb = (sq + R - 1) / R, nb = (sk + C - 1) / C;
  int32_t G = r->num_qo_heads / r->num_kv_heads;
  double *sc = calloc((size_t)(r->num_kv_heads * mb * nb), sizeof(double));
  double *p = malloc(sizeof(double) * (size_t)sk);
  for (int32_t h = 0; h < r->num_kv_heads; h++)
    for (int64_t ib = 0; ib < mb; ib++) {
      double *row = sc + ((size_t)h * mb + ib) * nb;
      int64_t n = 0;
      for (int32_t g = 0; g < G; g++)
        for (int64_t i = ib * R; i < sq && i < (ib + 1) * R; i++) {
          if (!naive_probs(r, h * G + g, i, p)) continue;
          n++;
          for (int64_t j = 0; j < sk; j++) row[j / C] += p[j];
        }
      for (int64_t jb = 0; jb < nb; jb++) row[jb] = n ? row[jb] / n : 0;
    }
  free(p);
  return sc;
}

static int block_visible(const bsa_trace_record *r, int64_t r0, int64_t r1, int64_t j0) {
  return !r->causal || j0 <= r1 - 1 + (r->kv_len - r->qo_len);
}

START_TEST(test_oracle_scores_and_top_p) {
  fresh_seed();
  for (int rep = 0; rep < 4; rep++) {
    int causal = rep & 1;
    int32_t hkv = (int32_t)irand(1, 2), hq = hkv * (int32_t)irand(1, 3);
    int64_t sq = irand(40, 130), sk = causal ? sq + irand(0, 20) : irand(40, 130);
    bsa_trace_record *r = new_record(hq, hkv, (int32_t)irand(8, 24), sq, sk, causal, 1.5, 0);
    bsa_maskgen_params p;
    bsa_maskgen_params_init(&p);
    p.block_q = irand(3, 20);
    p.block_k = irand(3, 20);
    p.select = BSA_MASKGEN_SELECT_TOP_P;
    p.top_p = 0.3 + 0.65 * urand();
    p.num_threads = (int32_t)irand(1, 3);
    bsa_mask_record *m = NULL;
    ck_assert_int_eq(bsa_maskgen_oracle(r, &p, &m), BSA_OK);
    int64_t mb = m->num_block_rows, nb = m->num_block_cols;
    ck_assert_int_eq(mb, (sq + p.block_q - 1) / p.block_q);
    ck_assert_int_eq(nb, (sk + p.block_k - 1) / p.block_k);
    ck_assert_ptr_null(m->q_perm);
    double *want = naive_oracle(r, p.block_q, p.block_k);
    for (int32_t h = 0; h < hkv; h++)
      for (int64_t i = 0; i < mb; i++) {
        const double *w = want + ((size_t)h * mb + i) * nb;
        const float *got = m->block_scores + ((size_t)h * mb + i) * nb;
        const uint8_t *keep = m->block_mask_map + ((size_t)h * mb + i) * nb;
        double total = 0, kept = 0, min_kept = INFINITY, max_dropped = 0;
        for (int64_t j = 0; j < nb; j++) {
          ck_assert_msg(fabs(got[j] - w[j]) <= 2e-5, "seed %llu: score[%d,%lld,%lld] %g vs %g",
                        (unsigned long long)g_seed, h, (long long)i, (long long)j, got[j], w[j]);
          total += w[j];
          int vis = block_visible(r, i * p.block_q, (i + 1) * p.block_q < sq ? (i + 1) * p.block_q : sq,
                                  j * p.block_k);
          if (keep[j]) {
            ck_assert_msg(vis, "seed %llu: kept an invisible block", (unsigned long long)g_seed);
            kept += w[j];
            if (w[j] < min_kept) min_kept = w[j];
          } else if (vis && w[j] > max_dropped) {
            max_dropped = w[j];
          }
        }
        if (total == 0) continue;
        ck_assert_msg(fabs(total - 1) < 1e-6, "seed %llu: row sums to %g", (unsigned long long)g_seed,
                      total);
        /* Reaches p, with the shortest prefix of the descending order. */
        ck_assert_msg(kept >= p.top_p - 2e-5, "seed %llu: head %d row block %lld keeps %g < p %g",
                      (unsigned long long)g_seed, h, (long long)i, kept, p.top_p);
        ck_assert_msg(kept - min_kept < p.top_p + 2e-5, "seed %llu: prefix not shortest",
                      (unsigned long long)g_seed);
        ck_assert_msg(max_dropped <= min_kept + 2e-5, "seed %llu: dropped %g > kept %g",
                      (unsigned long long)g_seed, max_dropped, min_kept);
      }
    ck_assert(m->density > 0 && m->density <= 1);
    ck_assert(isnan(m->recall));
    free(want);
    bsa_mask_record_free(m);
    free_record(r);
  }
}
END_TEST

START_TEST(test_top_k_threshold_forced) {
  fresh_seed();
  for (int rep = 0; rep < 6; rep++) {
    int causal = rep % 2;
    int pooled = (rep / 2) % 2;
    bsa_trace_record *r = new_record(2, 1, 16, irand(60, 120), 0, causal, 1.0, 0);
    r->kv_len = causal ? r->qo_len : irand(60, 120);
    free(r->k);
    r->k = malloc(sizeof(float) * (size_t)(r->kv_len * 16));
    for (int64_t x = 0; x < r->kv_len * 16; x++) r->k[x] = (float)nrand();
    bsa_maskgen_params p;
    bsa_maskgen_params_init(&p);
    p.block_q = irand(4, 16);
    p.block_k = irand(4, 16);
    p.sink_blocks = irand(0, 2);
    p.local_blocks = irand(0, 3);
    int rule = rep / 2 == 2 ? 2 : (int)irand(1, 2); /* 1 top-k, 2 threshold */
    p.select = rule == 1 ? BSA_MASKGEN_SELECT_TOP_K : BSA_MASKGEN_SELECT_THRESHOLD;
    p.top_k = irand(1, 4);
    p.threshold = 0.02 + 0.1 * urand();
    bsa_mask_record *m = NULL;
    ck_assert_int_eq(pooled ? bsa_maskgen_pooled(r, &p, &m) : bsa_maskgen_oracle(r, &p, &m),
                     BSA_OK);
    int64_t sq = r->qo_len, sk = r->kv_len, off = sk - sq, mb = m->num_block_rows,
            nb = m->num_block_cols;
    for (int64_t i = 0; i < mb; i++) {
      int64_t r0 = i * p.block_q, r1 = r0 + p.block_q < sq ? r0 + p.block_q : sq;
      /* Forced blocks, computed row by row. */
      uint8_t *forced = calloc((size_t)nb, 1);
      for (int64_t j = 0; j < nb && j < p.sink_blocks; j++) forced[j] = 1;
      if (p.local_blocks > 0)
        for (int64_t t = r0; t < r1; t++) {
          int64_t d = t + off;
          if (d < 0) d = 0;
          if (d > sk - 1) d = sk - 1;
          int64_t b = d / p.block_k;
          for (int64_t j = b - (p.local_blocks - 1); j <= b + (causal ? 0 : p.local_blocks - 1); j++)
            if (j >= 0 && j < nb) forced[j] = 1;
        }
      const float *s = m->block_scores + (size_t)i * nb;
      const uint8_t *keep = m->block_mask_map + (size_t)i * nb;
      int64_t nkept_free = 0, nvis_free = 0;
      float min_kept = INFINITY, max_dropped = -INFINITY;
      for (int64_t j = 0; j < nb; j++) {
        int vis = block_visible(r, r0, r1, j * p.block_k);
        if (!vis) {
          ck_assert_msg(!keep[j], "seed %llu: invisible block kept", (unsigned long long)g_seed);
          continue;
        }
        if (forced[j]) {
          ck_assert_msg(keep[j], "seed %llu: forced block (%lld, %lld) off (sinks %lld local %lld)",
                        (unsigned long long)g_seed, (long long)i, (long long)j,
                        (long long)p.sink_blocks, (long long)p.local_blocks);
          continue;
        }
        nvis_free++;
        if (keep[j]) {
          nkept_free++;
          if (s[j] < min_kept) min_kept = s[j];
          if (rule == 2) ck_assert(s[j] >= p.threshold);
        } else {
          if (s[j] > max_dropped) max_dropped = s[j];
          if (rule == 2) ck_assert(s[j] < p.threshold);
        }
      }
      if (rule == 1) {
        ck_assert_int_eq(nkept_free, nvis_free < p.top_k ? nvis_free : p.top_k);
        ck_assert(max_dropped <= min_kept);
      }
      free(forced);
    }
    bsa_mask_record_free(m);
    free_record(r);
  }
}
END_TEST

START_TEST(test_pooled_scores) {
  fresh_seed();
  for (int rep = 0; rep < 4; rep++) {
    int causal = rep & 1;
    int64_t sq = irand(30, 100), sk = causal ? sq : irand(30, 100);
    bsa_trace_record *r = new_record(4, 2, 12, sq, sk, causal, 1.0, 0);
    bsa_maskgen_params p;
    bsa_maskgen_params_init(&p);
    p.block_q = irand(4, 12);
    p.block_k = irand(4, 12);
    p.select = BSA_MASKGEN_SELECT_TOP_P;
    p.top_p = 0.5 + 0.5 * urand();
    bsa_mask_record *m = NULL;
    ck_assert_int_eq(bsa_maskgen_pooled(r, &p, &m), BSA_OK);
    int64_t R = p.block_q, C = p.block_k, mb = m->num_block_rows, nb = m->num_block_cols;
    int64_t off = sk - sq, D = 12;
    for (int32_t h = 0; h < 2; h++)
      for (int64_t i = 0; i < mb; i++) {
        int64_t r0 = i * R, r1 = r0 + R < sq ? r0 + R : sq;
        double want[64] = {0};
        for (int g = 0; g < 2; g++) {
          double qbar[12] = {0}, lg[64], w[64], mx = -INFINITY, tot = 0;
          for (int64_t t = r0; t < r1; t++)
            for (int d = 0; d < D; d++) qbar[d] += r->q[((size_t)(h * 2 + g) * sq + t) * D + d] / (double)(r1 - r0);
          for (int64_t j = 0; j < nb; j++) {
            int64_t j0 = j * C, j1 = j0 + C < sk ? j0 + C : sk;
            double kbar[12] = {0}, vis = 0;
            for (int64_t t = j0; t < j1; t++)
              for (int d = 0; d < D; d++) kbar[d] += r->k[((size_t)h * sk + t) * D + d] / (double)(j1 - j0);
            for (int64_t a = r0; a < r1; a++)
              for (int64_t b = j0; b < j1; b++) vis += !causal || b <= a + off;
            w[j] = vis / (double)(r1 - r0);
            lg[j] = 0;
            for (int d = 0; d < D; d++) lg[j] += qbar[d] * kbar[d] / sqrt((double)D);
            if (w[j] > 0 && lg[j] > mx) mx = lg[j];
          }
          for (int64_t j = 0; j < nb; j++) tot += w[j] > 0 ? w[j] * exp(lg[j] - mx) : 0;
          for (int64_t j = 0; j < nb; j++) want[j] += w[j] > 0 ? w[j] * exp(lg[j] - mx) / tot / 2 : 0;
        }
        for (int64_t j = 0; j < nb; j++)
          ck_assert_msg(fabs(m->block_scores[((size_t)h * mb + i) * nb + j] - want[j]) < 1e-5,
                        "seed %llu: pooled score (%d,%lld,%lld) %g vs %g", (unsigned long long)g_seed,
                        h, (long long)i, (long long)j, m->block_scores[((size_t)h * mb + i) * nb + j],
                        want[j]);
      }
    bsa_mask_record_free(m);
    free_record(r);
  }
}
END_TEST

/* ---- k-means ----------------------------------------------------------- */

START_TEST(test_kmeans_planted) {
  fresh_seed();
  for (int rep = 0; rep < 4; rep++) {
    int64_t k = irand(3, 12), dim = irand(4, 40), n = irand(k * 20, 800);
    float *centers = malloc(sizeof(float) * (size_t)(k * dim));
    for (int64_t x = 0; x < k * dim; x++) centers[x] = (float)(10 * nrand());
    int32_t *truth = malloc(sizeof(int32_t) * (size_t)n);
    float *x = malloc(sizeof(float) * (size_t)(n * dim));
    for (int64_t t = 0; t < n; t++) {
      truth[t] = t < k ? (int32_t)t : (int32_t)irand(0, k - 1); /* scattered, none empty */
      for (int64_t d = 0; d < dim; d++)
        x[t * dim + d] = centers[truth[t] * dim + d] + (float)(0.05 * nrand());
    }
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)n), *sizes = malloc(sizeof(int32_t) * (size_t)k);
    float *cent = malloc(sizeof(float) * (size_t)(k * dim));
    for (int64_t t = 0; t < n; t++) lab[t] = -7;
    int32_t done = 0;
    bsa_kmeans_init init = rep % 2 ? BSA_KMEANS_INIT_RANDOM : BSA_KMEANS_INIT_PLUSPLUS;
    ck_assert_int_eq(bsa_kmeans(x, n, dim, k, 30, rnd_u64(), init, lab, cent, sizes, &done),
                     BSA_OK);
    ck_assert(done >= 1 && done <= 30);
    if (init == BSA_KMEANS_INIT_PLUSPLUS) {
      /* Same partition up to label order: a bijection truth <-> label. */
      int32_t *map = malloc(sizeof(int32_t) * (size_t)k), *back = malloc(sizeof(int32_t) * (size_t)k);
      for (int64_t c = 0; c < k; c++) map[c] = back[c] = -1;
      for (int64_t t = 0; t < n; t++) {
        if (map[truth[t]] < 0) map[truth[t]] = lab[t];
        if (back[lab[t]] < 0) back[lab[t]] = truth[t];
        ck_assert_msg(map[truth[t]] == lab[t] && back[lab[t]] == truth[t],
                      "seed %llu: planted clusters not recovered (token %lld)",
                      (unsigned long long)g_seed, (long long)t);
      }
      free(map), free(back);
    }
    /* Labels numbered by first member; sizes and centroids consistent. */
    int32_t next = 0;
    int64_t *cnt = calloc((size_t)k, sizeof(int64_t));
    double *mean = calloc((size_t)(k * dim), sizeof(double));
    for (int64_t t = 0; t < n; t++) {
      ck_assert(lab[t] >= 0 && lab[t] < k);
      ck_assert(lab[t] <= next);
      if (lab[t] == next) next++;
      cnt[lab[t]]++;
      for (int64_t d = 0; d < dim; d++) mean[lab[t] * dim + d] += x[t * dim + d];
    }
    for (int64_t c = 0; c < k; c++) {
      ck_assert_int_eq(sizes[c], cnt[c]);
      for (int64_t d = 0; cnt[c] && d < dim; d++)
        ck_assert(fabs(cent[c * dim + d] - mean[c * dim + d] / cnt[c]) < 1e-3);
    }
    free(cnt), free(mean), free(centers), free(truth), free(x), free(lab), free(sizes), free(cent);
  }
}
END_TEST

/* A GQA record whose query and key tokens belong to planted clusters,
 * scattered over the positions; qa/ka [Hkv, S] receive the truth. */
static bsa_trace_record *planted_record(int32_t hq, int32_t hkv, int32_t D, int64_t S, int kq,
                                        int kk, int32_t *qa, int32_t *ka) {
  bsa_trace_record *r = new_record(hq, hkv, D, S, S, 0, 0.02, 1);
  int32_t G = hq / hkv;
  for (int32_t h = 0; h < hkv; h++) {
    float *cq = malloc(sizeof(float) * (size_t)(G * kq * D)), *ck = malloc(sizeof(float) * (size_t)(kk * D));
    for (int64_t x = 0; x < G * kq * D; x++) cq[x] = (float)(3 * nrand());
    for (int64_t x = 0; x < kk * D; x++) ck[x] = (float)(3 * nrand());
    for (int64_t t = 0; t < S; t++) {
      qa[h * S + t] = t < kq ? (int32_t)t : (int32_t)irand(0, kq - 1);
      ka[h * S + t] = t < kk ? (int32_t)t : (int32_t)irand(0, kk - 1);
      for (int32_t g = 0; g < G; g++)
        for (int32_t d = 0; d < D; d++)
          r->q[((size_t)(h * G + g) * S + t) * D + d] += cq[((size_t)g * kq + qa[h * S + t]) * D + d];
      for (int32_t d = 0; d < D; d++) r->k[((size_t)h * S + t) * D + d] += ck[(size_t)ka[h * S + t] * D + d];
    }
    free(cq), free(ck);
  }
  return r;
}

/* Every block of the permuted order holds exactly one planted cluster. */
static void check_blocks_are_clusters(const int32_t *perm, const int32_t *sz, int64_t nblk,
                                      const int32_t *truth, int64_t S, int k) {
  uint8_t *seen = calloc((size_t)k, 1);
  int64_t t = 0;
  for (int64_t b = 0; b < nblk; b++) {
    ck_assert_msg(sz[b] > 0, "seed %llu: block %lld empty", (unsigned long long)g_seed, (long long)b);
    int32_t c = truth[perm[t]];
    ck_assert_msg(!seen[c], "seed %llu: cluster %d split", (unsigned long long)g_seed, c);
    seen[c] = 1;
    int64_t prev = -1;
    for (int64_t e = t + sz[b]; t < e; t++) {
      ck_assert_msg(truth[perm[t]] == c, "seed %llu: block %lld mixes clusters",
                    (unsigned long long)g_seed, (long long)b);
      ck_assert(perm[t] > prev); /* token order kept inside a cluster */
      prev = perm[t];
    }
  }
  ck_assert_int_eq(t, S);
  free(seen);
}

START_TEST(test_kmeans_generator_planted) {
  fresh_seed();
  int32_t hq = 4, hkv = 2, D = 16;
  int64_t S = irand(200, 400);
  int kq = (int)irand(3, 6), kk = (int)irand(3, 7);
  int32_t *qa = malloc(sizeof(int32_t) * (size_t)(hkv * S)), *ka = malloc(sizeof(int32_t) * (size_t)(hkv * S));
  bsa_trace_record *r = planted_record(hq, hkv, D, S, kq, kk, qa, ka);
  bsa_maskgen_params p;
  bsa_maskgen_params_init(&p);
  p.q_clusters = kq;
  p.k_clusters = kk;
  p.iters = 25;
  p.top_p = 0.3 + 0.6 * urand();
  p.min_kc_ratio = urand() * 0.6;
  p.seed = rnd_u64();
  bsa_mask_record *m = NULL;
  ck_assert_int_eq(bsa_maskgen_kmeans(r, &p, &m), BSA_OK);
  ck_assert_int_eq(m->num_block_rows, kq);
  ck_assert_int_eq(m->num_block_cols, kk);
  ck_assert_ptr_nonnull(m->q_perm);
  ck_assert_ptr_nonnull(m->k_perm);
  ck_assert_int_eq(bsa_mask_record_check(m, r), BSA_OK);
  int64_t floor_n = (int64_t)floor(p.min_kc_ratio * kk + 1e-9);
  for (int32_t h = 0; h < hkv; h++) {
    check_blocks_are_clusters(m->q_perm + h * S, m->block_row_sz + h * kq, kq, qa + h * S, S, kq);
    check_blocks_are_clusters(m->k_perm + h * S, m->block_col_sz + h * kk, kk, ka + h * S, S, kk);
    /* Scores: size-weighted softmax of centroid logits, recomputed from the
     * members of each block. */
    int32_t G = hq / hkv;
    double *cq = calloc((size_t)(kq * G * D), sizeof(double)), *ck = calloc((size_t)(kk * D), sizeof(double));
    int64_t t = 0;
    for (int a = 0; a < kq; a++)
      for (int64_t e = t + m->block_row_sz[h * kq + a]; t < e; t++)
        for (int32_t g = 0; g < G; g++)
          for (int d = 0; d < D; d++)
            cq[(a * G + g) * D + d] += r->q[((size_t)(h * G + g) * S + m->q_perm[h * S + t]) * D + d] /
                                       m->block_row_sz[h * kq + a];
    t = 0;
    for (int b = 0; b < kk; b++)
      for (int64_t e = t + m->block_col_sz[h * kk + b]; t < e; t++)
        for (int d = 0; d < D; d++)
          ck[b * D + d] += r->k[((size_t)h * S + m->k_perm[h * S + t]) * D + d] / m->block_col_sz[h * kk + b];
    for (int a = 0; a < kq; a++) {
      double want[8] = {0};
      for (int32_t g = 0; g < G; g++) {
        double l[8], mx = -INFINITY, tot = 0;
        for (int b = 0; b < kk; b++) {
          l[b] = 0;
          for (int d = 0; d < D; d++) l[b] += cq[(a * G + g) * D + d] * ck[b * D + d] / sqrt((double)D);
          if (l[b] > mx) mx = l[b];
        }
        for (int b = 0; b < kk; b++) tot += m->block_col_sz[h * kk + b] * exp(l[b] - mx);
        for (int b = 0; b < kk; b++) want[b] += m->block_col_sz[h * kk + b] * exp(l[b] - mx) / tot / G;
      }
      const float *s = m->block_scores + ((size_t)h * kq + a) * kk;
      const uint8_t *keep = m->block_mask_map + ((size_t)h * kq + a) * kk;
      double kept = 0;
      int64_t nk = 0;
      for (int b = 0; b < kk; b++) {
        ck_assert_msg(fabs(s[b] - want[b]) < 1e-4, "seed %llu: kmeans score %g vs %g",
                      (unsigned long long)g_seed, s[b], want[b]);
        if (keep[b]) kept += want[b], nk++;
      }
      ck_assert_msg(kept >= p.top_p - 1e-4, "seed %llu: top-p %g not reached (%g)",
                    (unsigned long long)g_seed, p.top_p, kept);
      ck_assert_msg(nk >= floor_n, "seed %llu: %lld kept < floor %lld", (unsigned long long)g_seed,
                    (long long)nk, (long long)floor_n);
    }
    free(cq), free(ck);
  }
  /* Deterministic for a seed, whatever the thread count. */
  bsa_maskgen_params p2 = p;
  p2.num_threads = p.num_threads == 1 ? 2 : 1;
  bsa_mask_record *m2 = NULL;
  ck_assert_int_eq(bsa_maskgen_kmeans(r, &p2, &m2), BSA_OK);
  size_t cells = (size_t)(hkv * kq * kk);
  ck_assert(memcmp(m->block_mask_map, m2->block_mask_map, cells) == 0);
  ck_assert(memcmp(m->block_scores, m2->block_scores, cells * sizeof(float)) == 0);
  ck_assert(memcmp(m->q_perm, m2->q_perm, sizeof(int32_t) * (size_t)(hkv * S)) == 0);
  ck_assert(memcmp(m->k_perm, m2->k_perm, sizeof(int32_t) * (size_t)(hkv * S)) == 0);
  bsa_mask_record_free(m2);
  bsa_mask_record_free(m);
  free_record(r);
  free(qa), free(ka);
}
END_TEST

START_TEST(test_kmeans_determinism_random_data) {
  fresh_seed();
  bsa_trace_record *r = new_record(2, 2, 8, irand(100, 300), 0, 0, 1.0, 0);
  r->kv_len = irand(100, 300);
  free(r->k);
  r->k = malloc(sizeof(float) * (size_t)(2 * r->kv_len * 8));
  for (int64_t x = 0; x < 2 * r->kv_len * 8; x++) r->k[x] = (float)nrand();
  bsa_maskgen_params p;
  bsa_maskgen_params_init(&p);
  p.q_clusters = irand(5, 40);
  p.k_clusters = irand(5, 40);
  p.seed = rnd_u64();
  p.init = irand(0, 1) ? BSA_KMEANS_INIT_RANDOM : BSA_KMEANS_INIT_PLUSPLUS;
  bsa_mask_record *a = NULL, *b = NULL;
  ck_assert_int_eq(bsa_maskgen_kmeans(r, &p, &a), BSA_OK);
  ck_assert_int_eq(bsa_maskgen_kmeans(r, &p, &b), BSA_OK);
  size_t cells = (size_t)(2 * p.q_clusters * p.k_clusters);
  ck_assert(memcmp(a->block_mask_map, b->block_mask_map, cells) == 0);
  ck_assert(memcmp(a->block_row_sz, b->block_row_sz, sizeof(int32_t) * 2 * p.q_clusters) == 0);
  ck_assert(memcmp(a->q_perm, b->q_perm, sizeof(int32_t) * (size_t)(2 * r->qo_len)) == 0);
  ck_assert(memcmp(a->k_perm, b->k_perm, sizeof(int32_t) * (size_t)(2 * r->kv_len)) == 0);
  ck_assert_int_eq(bsa_mask_record_check(a, r), BSA_OK);
  /* Every non-empty query cluster keeps at least one block, empty ones none. */
  for (int64_t c = 0; c < 2 * p.q_clusters; c++) {
    int64_t n = 0;
    for (int64_t j = 0; j < p.k_clusters; j++) n += a->block_mask_map[c * p.k_clusters + j];
    ck_assert(a->block_row_sz[c] > 0 ? n >= 1 : n == 0);
  }
  bsa_mask_record_free(a);
  bsa_mask_record_free(b);
  free_record(r);
}
END_TEST

/* ---- densities ---------------------------------------------------------- */

/* Random partition of n into nb sizes, some of them 0. */
static void random_sizes(int32_t *sz, int64_t nb, int64_t n) {
  for (int64_t j = 0; j < nb; j++) sz[j] = 0;
  for (int64_t t = 0; t < n; t++) sz[irand(0, nb - 1)]++;
}

static bsa_mask_record *random_mask(const bsa_trace_record *r, int64_t mb, int64_t nb, int perm,
                                    double density) {
  int32_t hkv = r->num_kv_heads;
  int64_t sq = r->qo_len, sk = r->kv_len;
  bsa_mask_record *m = calloc(1, sizeof *m);
  m->name = strdup(r->name);
  m->num_kv_heads = hkv;
  m->qo_len = sq;
  m->kv_len = sk;
  m->num_block_rows = mb;
  m->num_block_cols = nb;
  m->block_mask_map = malloc((size_t)(hkv * mb * nb));
  m->block_row_sz = malloc(sizeof(int32_t) * (size_t)(hkv * mb));
  m->block_col_sz = malloc(sizeof(int32_t) * (size_t)(hkv * nb));
  for (int64_t c = 0; c < hkv * mb * nb; c++) m->block_mask_map[c] = urand() < density;
  for (int32_t h = 0; h < hkv; h++) {
    random_sizes(m->block_row_sz + h * mb, mb, sq);
    random_sizes(m->block_col_sz + h * nb, nb, sk);
  }
  if (perm) {
    m->q_perm = malloc(sizeof(int32_t) * (size_t)(hkv * sq));
    m->k_perm = malloc(sizeof(int32_t) * (size_t)(hkv * sk));
    for (int32_t h = 0; h < hkv; h++) {
      int32_t *a = m->q_perm + h * sq, *b = m->k_perm + h * sk;
      for (int64_t t = 0; t < sq; t++) a[t] = (int32_t)t;
      for (int64_t t = 0; t < sk; t++) b[t] = (int32_t)t;
      for (int64_t t = sq - 1; t > 0; t--) {
        int64_t u = irand(0, t);
        int32_t x = a[t]; a[t] = a[u]; a[u] = x;
      }
      for (int64_t t = sk - 1; t > 0; t--) {
        int64_t u = irand(0, t);
        int32_t x = b[t]; b[t] = b[u]; b[u] = x;
      }
    }
  }
  m->density = NAN;
  m->recall = NAN;
  return m;
}

/* blk [S]: block of each token of head h (through the permutation). */
static void token_blocks(const int32_t *perm, const int32_t *sz, int64_t nblk, int64_t S,
                         int64_t *blk) {
  int64_t t = 0;
  for (int64_t b = 0; b < nblk; b++)
    for (int64_t e = t + sz[b]; t < e; t++) blk[perm ? perm[t] : t] = b;
  ck_assert_int_eq(t, S);
}

START_TEST(test_density_naive) {
  fresh_seed();
  for (int rep = 0; rep < 6; rep++) {
    int causal = rep % 2, perm = !causal && rep % 4 == 0;
    bsa_trace_record *r = new_record(2, 2, 4, irand(20, 90), 1, causal, 1.0, 0);
    r->kv_len = causal ? r->qo_len + irand(-10, 10) : irand(20, 90);
    bsa_mask_record *m = random_mask(r, irand(1, 9), irand(1, 9), perm, urand());
    int64_t sq = r->qo_len, sk = r->kv_len, off = sk - sq, mb = m->num_block_rows,
            nb = m->num_block_cols;
    int64_t *qb = malloc(sizeof(int64_t) * (size_t)sq), *kb = malloc(sizeof(int64_t) * (size_t)sk);
    double kf = 0, kc = 0, vis = 0, kbk = 0;
    for (int32_t h = 0; h < 2; h++) {
      token_blocks(m->q_perm ? m->q_perm + h * sq : NULL, m->block_row_sz + h * mb, mb, sq, qb);
      token_blocks(m->k_perm ? m->k_perm + h * sk : NULL, m->block_col_sz + h * nb, nb, sk, kb);
      double hf = 0, hc = 0, hv = 0, hb = 0;
      for (int64_t i = 0; i < sq; i++)
        for (int64_t j = 0; j < sk; j++) {
          int keep = m->block_mask_map[(h * mb + qb[i]) * nb + kb[j]];
          int v = j <= i + off;
          hf += keep;
          hv += v;
          hc += keep && v;
        }
      for (int64_t c = 0; c < mb * nb; c++) hb += m->block_mask_map[h * mb * nb + c];
      bsa_mask_density d;
      ck_assert_int_eq(bsa_mask_density_get(m, h, causal, &d), BSA_OK);
      ck_assert(fabs(d.full - hf / (double)(sq * sk)) < 1e-12);
      ck_assert(fabs(d.blocks - hb / (double)(mb * nb)) < 1e-12);
      if (causal) {
        ck_assert_msg(fabs(d.causal - (hv ? hc / hv : 0)) < 1e-12, "seed %llu: causal density %g vs %g",
                      (unsigned long long)g_seed, d.causal, hc / hv);
        ck_assert(d.compute == d.causal);
      } else {
        ck_assert(isnan(d.causal));
        ck_assert(d.compute == d.full);
      }
      kf += hf, kc += hc, vis += hv, kbk += hb;
    }
    bsa_mask_density d;
    ck_assert_int_eq(bsa_mask_density_get(m, -1, causal, &d), BSA_OK);
    ck_assert(fabs(d.full - kf / (double)(2 * sq * sk)) < 1e-12);
    ck_assert(fabs(d.blocks - kbk / (double)(2 * mb * nb)) < 1e-12);
    if (causal) ck_assert(fabs(d.causal - (vis ? kc / vis : 0)) < 1e-12);
    free(qb), free(kb);
    bsa_mask_record_free(m);
    free_record(r);
  }
}
END_TEST

START_TEST(test_permute_roundtrip_and_checks) {
  fresh_seed();
  bsa_trace_record *r = new_record(4, 2, 8, irand(20, 60), irand(20, 60), 0, 1.0, 1);
  bsa_mask_record *m = random_mask(r, 5, 6, 1, 0.5);
  ck_assert_int_eq(bsa_mask_record_check(m, r), BSA_OK);
  ck_assert_int_eq(bsa_mask_is_permuted(m), 1);
  float *q = NULL, *k = NULL, *v = NULL;
  ck_assert_int_eq(bsa_mask_permute_qkv(r, m, &q, &k, &v), BSA_OK);
  int64_t sq = r->qo_len, sk = r->kv_len;
  for (int32_t h = 0; h < 2; h++)
    for (int64_t t = 0; t < sk; t++)
      for (int d = 0; d < 8; d++) {
        ck_assert(k[(h * sk + t) * 8 + d] == r->k[(h * sk + m->k_perm[h * sk + t]) * 8 + d]);
        ck_assert(v[(h * sk + t) * 8 + d] == r->v[(h * sk + m->k_perm[h * sk + t]) * 8 + d]);
      }
  float *back = malloc(sizeof(float) * (size_t)(4 * sq * 8));
  for (int64_t x = 0; x < 4 * sq * 8; x++) back[x] = NAN;
  bsa_mask_unpermute_o(m, 4, 8, q, back);
  ck_assert(memcmp(back, r->q, sizeof(float) * (size_t)(4 * sq * 8)) == 0);
  free(q), free(k), free(v), free(back);
  bsa_var_desc d;
  bsa_mask_var_desc(m, &d);
  ck_assert_ptr_eq(d.block_mask_map, m->block_mask_map);
  ck_assert_int_eq(d.num_block_cols, 6);

  /* Broken masks are refused with the dataset named. */
  m->block_row_sz[0] += 1;
  ck_assert_int_eq(bsa_mask_record_check(m, r), BSA_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "block_row_sz"));
  m->block_row_sz[0] -= 1;
  int32_t keep = m->k_perm[1];
  m->k_perm[1] = m->k_perm[0];
  ck_assert_int_eq(bsa_mask_record_check(m, r), BSA_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "k_perm"));
  m->k_perm[1] = keep;
  r->num_kv_heads = 1, r->num_qo_heads = 2;
  ck_assert_int_eq(bsa_mask_record_check(m, r), BSA_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "rec0"));
  r->num_kv_heads = 2, r->num_qo_heads = 4;
  bsa_mask_record_free(m);
  free_record(r);
}
END_TEST

/* ---- bad arguments ------------------------------------------------------ */

START_TEST(test_bad_arguments) {
  fresh_seed();
  bsa_trace_record *r = new_record(2, 1, 8, 50, 50, 0, 1.0, 0);
  bsa_mask_record *m = (bsa_mask_record *)&m; /* must be reset to NULL on failure */
  bsa_maskgen_params p;
  struct {
    bsa_maskgen_method method;
    int what;
    const char *needle;
    bsa_status st;
  } cases[] = {
      {BSA_MASKGEN_ORACLE, 0, "--top-p", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_ORACLE, 1, "--top-p", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_POOLED, 2, "--top-k", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_ORACLE, 3, "--threshold", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_ORACLE, 4, "--top-p, --top-k, --threshold", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_ORACLE, 5, "--block-q", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_POOLED, 6, "--block-k = -3", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_ORACLE, 7, "--sink-blocks", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_KMEANS, 8, "--q-clusters = 51 exceeds the 50 query tokens", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_KMEANS, 9, "--k-clusters", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_KMEANS, 10, "--min-kc-ratio", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_KMEANS, 11, "--iters", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_KMEANS, 12, "--top-k is not a kmeans option", BSA_ERR_INVALID_ARG},
      {BSA_MASKGEN_KMEANS, 13, "causal", BSA_ERR_UNSUPPORTED},
      {BSA_MASKGEN_KMEANS, 14, "--top-p", BSA_ERR_INVALID_ARG},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    bsa_maskgen_params_init(&p);
    p.select = BSA_MASKGEN_SELECT_TOP_P;
    r->causal = 0;
    switch (cases[c].what) {
      case 0: p.top_p = 0.0; break;
      case 1: p.top_p = 1.5; break;
      case 2: p.select = BSA_MASKGEN_SELECT_TOP_K, p.top_k = 0; break;
      case 3: p.select = BSA_MASKGEN_SELECT_THRESHOLD, p.threshold = -0.1; break;
      case 4: p.select = BSA_MASKGEN_SELECT_NONE; break;
      case 5: p.block_q = 0; break;
      case 6: p.block_k = -3; break;
      case 7: p.sink_blocks = -1; break;
      case 8: p.q_clusters = 51, p.select = BSA_MASKGEN_SELECT_NONE; break;
      case 9: p.k_clusters = 0; break;
      case 10: p.min_kc_ratio = 1.5; break;
      case 11: p.iters = 0; break;
      case 12: p.select = BSA_MASKGEN_SELECT_TOP_K; break;
      case 13: r->causal = 1, p.q_clusters = p.k_clusters = 10; break;
      case 14: p.top_p = -1; break;
    }
    m = (bsa_mask_record *)&m;
    bsa_status st = bsa_maskgen_run(cases[c].method, r, &p, &m);
    ck_assert_msg(st == cases[c].st, "case %zu: status %d", c, (int)st);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(bsa_last_error(), cases[c].needle), "case %zu: message '%s' lacks '%s'", c,
                  bsa_last_error(), cases[c].needle);
  }
  bsa_maskgen_method meth;
  ck_assert_int_eq(bsa_maskgen_method_parse("svg", &meth), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "--method = 'svg'"));
  ck_assert_int_eq(bsa_maskgen_method_parse("kmeans", &meth), BSA_OK);
  ck_assert_int_eq(meth, BSA_MASKGEN_KMEANS);
  /* Parameters recorded as JSON. */
  bsa_maskgen_params_init(&p);
  p.select = BSA_MASKGEN_SELECT_TOP_K;
  p.top_k = 3;
  char *js = bsa_maskgen_params_json(BSA_MASKGEN_POOLED, &p);
  ck_assert_ptr_nonnull(strstr(js, "\"top_k\":3"));
  ck_assert_ptr_nonnull(strstr(js, "\"method\":\"pooled\""));
  free(js);
  float lab_c[4];
  int32_t lab[2], sz[4];
  ck_assert_int_eq(bsa_kmeans(r->q, 2, 8, 4, 5, 1, BSA_KMEANS_INIT_PLUSPLUS, lab, lab_c, sz, NULL),
                   BSA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "k = 4"));
  free_record(r);
}
END_TEST

/* ---- evaluation --------------------------------------------------------- */

typedef struct naive_m {
  double recall_sum, recall_min, d2, r2, d1, r1, dot, s2;
  int64_t n;
} naive_m;

/* Element-level evaluation of mask on rec over the rows in[] (NULL: all),
 * per kv head (nm [Hkv]). */
static void naive_eval(const bsa_trace_record *r, const bsa_mask_record *m, const uint8_t *rows,
                       naive_m *nm) {
  int64_t sq = r->qo_len, sk = r->kv_len, D = r->head_dim, mb = m->num_block_rows,
          nb = m->num_block_cols;
  int32_t G = r->num_qo_heads / r->num_kv_heads;
  int64_t *qb = malloc(sizeof(int64_t) * (size_t)sq), *kb = malloc(sizeof(int64_t) * (size_t)sk);
  double *p = malloc(sizeof(double) * (size_t)sk);
  for (int32_t h = 0; h < r->num_kv_heads; h++) {
    memset(&nm[h], 0, sizeof nm[h]);
    nm[h].recall_min = INFINITY;
    token_blocks(m->q_perm ? m->q_perm + h * sq : NULL, m->block_row_sz + h * mb, mb, sq, qb);
    token_blocks(m->k_perm ? m->k_perm + h * sk : NULL, m->block_col_sz + h * nb, nb, sk, kb);
    for (int32_t g = 0; g < G; g++)
      for (int64_t i = 0; i < sq; i++) {
        if (rows && !rows[i]) continue;
        int vis = naive_probs(r, h * G + g, i, p);
        double kept = 0, od[64] = {0}, os[64] = {0};
        for (int64_t j = 0; j < sk; j++) {
          int keep = m->block_mask_map[(h * mb + qb[i]) * nb + kb[j]];
          if (keep) kept += p[j];
          for (int64_t d = 0; r->v && d < D; d++) {
            double vv = r->v[((size_t)h * sk + j) * D + d];
            od[d] += p[j] * vv;
            if (keep) os[d] += p[j] * vv;
          }
        }
        for (int64_t d = 0; d < D; d++) {
          double s = kept > 0 ? os[d] / kept : 0, e = s - od[d];
          nm[h].d2 += e * e, nm[h].r2 += od[d] * od[d], nm[h].d1 += fabs(e), nm[h].r1 += fabs(od[d]);
          nm[h].dot += s * od[d], nm[h].s2 += s * s;
        }
        if (vis) {
          nm[h].recall_sum += kept;
          nm[h].n++;
          if (kept < nm[h].recall_min) nm[h].recall_min = kept;
        }
      }
  }
  free(qb), free(kb), free(p);
}

static void compare_eval(const bsa_trace_record *r, const bsa_mask_record *m,
                         const bsa_eval_result *res, const uint8_t *rows) {
  naive_m *nm = calloc((size_t)r->num_kv_heads, sizeof *nm);
  naive_eval(r, m, rows, nm);
  for (int32_t h = 0; h < r->num_kv_heads; h++) {
    const bsa_eval_metrics *e = &res->heads[h];
    ck_assert_int_eq(e->head, h);
    double rec = nm[h].recall_sum / nm[h].n;
    ck_assert_msg(fabs(e->recall - rec) < 1e-4, "seed %llu: head %d recall %.6f vs %.6f",
                  (unsigned long long)g_seed, h, e->recall, rec);
    ck_assert(fabs(e->recall_min - nm[h].recall_min) < 1e-4);
    if (r->v) {
      double l2 = sqrt(nm[h].d2 / nm[h].r2), l1 = nm[h].d1 / nm[h].r1,
             /* An all-zero sparse output (nothing kept) has cosine 0. */
             cs = nm[h].s2 > 0 ? nm[h].dot / sqrt(nm[h].r2 * nm[h].s2) : 0.0;
      ck_assert_msg(fabs(e->rel_l2 - l2) < 1e-4 + 1e-3 * l2, "seed %llu: head %d rel_l2 %.6g vs %.6g",
                    (unsigned long long)g_seed, h, e->rel_l2, l2);
      ck_assert_msg(fabs(e->rel_l1 - l1) < 1e-4 + 1e-3 * l1, "seed %llu: rel_l1 %.6g vs %.6g",
                    (unsigned long long)g_seed, e->rel_l1, l1);
      ck_assert_msg(fabs(e->cosine - cs) < 1e-4, "seed %llu: cosine %.6g vs %.6g",
                    (unsigned long long)g_seed, e->cosine, cs);
    } else {
      ck_assert(isnan(e->rel_l2) && isnan(e->rel_l1) && isnan(e->cosine));
    }
    bsa_mask_density d;
    ck_assert_int_eq(bsa_mask_density_get(m, h, r->causal, &d), BSA_OK);
    ck_assert(e->density.compute == d.compute);
  }
  free(nm);
}

static bsa_ctx *cpu_ctx(void) {
  bsa_ctx *ctx = NULL;
  bsa_ctx_options o;
  memset(&o, 0, sizeof o);
  o.num_threads = 2;
  ck_assert_int_eq(bsa_ctx_create(&o, &ctx), BSA_OK);
  return ctx;
}

START_TEST(test_eval_full_mask) {
  fresh_seed();
  bsa_ctx *ctx = cpu_ctx();
  for (int causal = 0; causal < 2; causal++) {
    bsa_trace_record *r = new_record(4, 2, 16, irand(50, 150), 0, causal, 1.0, 1);
    r->kv_len = r->qo_len;
    free(r->k), free(r->v);
    r->k = malloc(sizeof(float) * (size_t)(2 * r->kv_len * 16));
    r->v = malloc(sizeof(float) * (size_t)(2 * r->kv_len * 16));
    for (int64_t x = 0; x < 2 * r->kv_len * 16; x++) r->k[x] = (float)nrand(), r->v[x] = (float)nrand();
    bsa_maskgen_params p;
    bsa_maskgen_params_init(&p);
    p.block_q = p.block_k = irand(4, 32);
    p.select = BSA_MASKGEN_SELECT_TOP_P;
    p.top_p = 1.0;
    bsa_mask_record *m = NULL;
    ck_assert_int_eq(bsa_maskgen_oracle(r, &p, &m), BSA_OK);
    /* Fill the whole map, also blocks above the diagonal. */
    memset(m->block_mask_map, 1, (size_t)(2 * m->num_block_rows * m->num_block_cols));
    bsa_eval_result res;
    ck_assert_int_eq(bsa_mask_eval(ctx, r, m, NULL, &res), BSA_OK);
    ck_assert_int_eq(res.num_heads, 2);
    ck_assert_int_eq(res.rows_evaluated, r->qo_len);
    ck_assert_int_eq(res.sampled, 0);
    for (int h = -1; h < 2; h++) {
      const bsa_eval_metrics *e = h < 0 ? &res.total : &res.heads[h];
      ck_assert_msg(e->rel_l2 < 1e-5, "seed %llu: full mask rel_l2 %g", (unsigned long long)g_seed,
                    e->rel_l2);
      ck_assert(e->rel_l1 < 1e-5);
      ck_assert(e->cosine > 1 - 1e-6);
      ck_assert(e->recall > 1 - 1e-5);
      ck_assert(fabs(e->density.full - 1) < 1e-12);
      ck_assert(fabs(e->density.compute - 1) < 1e-12);
    }
    ck_assert_int_eq(res.total.head, -1);
    bsa_eval_result_free(&res);
    bsa_mask_record_free(m);
    free_record(r);
  }
  bsa_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_eval_matches_naive) {
  fresh_seed();
  bsa_ctx *ctx = cpu_ctx();
  for (int rep = 0; rep < 6; rep++) {
    int causal = rep % 2, perm = !causal && (rep % 4 == 0), with_v = rep != 5;
    int32_t hkv = (int32_t)irand(1, 2), hq = hkv * (int32_t)irand(1, 2);
    /* Causal with Sk < Sq leaves the first rows without any key. */
    int64_t sq = irand(30, 120), sk = causal ? sq + irand(-8, 8) : irand(30, 120);
    bsa_trace_record *r = new_record(hq, hkv, (int32_t)irand(4, 32), sq, sk, causal, 1.2, with_v);
    bsa_mask_record *m = random_mask(r, irand(1, 10), irand(1, 10), perm, 0.3 + 0.5 * urand());
    bsa_eval_result res;
    ck_assert_int_eq(bsa_mask_eval(ctx, r, m, NULL, &res), BSA_OK);
    ck_assert_int_eq(res.has_v, with_v);
    compare_eval(r, m, &res, NULL);
    bsa_eval_result_free(&res);
    bsa_mask_record_free(m);
    free_record(r);
  }
  bsa_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_eval_long_records) {
  /* More query rows than one libbsa problem takes (2048): the evaluation
   * goes in groups / pieces and must still match the reference. */
  fresh_seed();
  bsa_ctx *ctx = cpu_ctx();
  for (int causal = 0; causal < 2; causal++) {
    int64_t sq = irand(2100, 2600), sk = causal ? sq : irand(60, 150);
    bsa_trace_record *r = new_record(2, 1, 4, sq, sk, causal, 1.0, 1);
    bsa_mask_record *m = random_mask(r, irand(3, 20), irand(3, 12), !causal, 0.5);
    bsa_eval_result res;
    ck_assert_int_eq(bsa_mask_eval(ctx, r, m, NULL, &res), BSA_OK);
    ck_assert_int_eq(res.rows_evaluated, sq);
    compare_eval(r, m, &res, NULL);
    bsa_eval_result_free(&res);
    bsa_mask_record_free(m);
    free_record(r);
  }
  bsa_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_eval_sampled_rows) {
  fresh_seed();
  bsa_ctx *ctx = cpu_ctx();
  for (int rep = 0; rep < 4; rep++) {
    int causal = rep % 2, perm = !causal;
    int64_t sq = irand(400, 700), sk = causal ? sq : irand(100, 300);
    bsa_trace_record *r = new_record(2, 1, 8, sq, sk, causal, 1.0, 1);
    bsa_mask_record *m = random_mask(r, irand(2, 12), irand(2, 12), perm, 0.5);
    bsa_eval_options o;
    memset(&o, 0, sizeof o);
    o.sample_rows = irand(64, 200);
    o.seed = rnd_u64();
    bsa_eval_result res;
    ck_assert_int_eq(bsa_mask_eval(ctx, r, m, &o, &res), BSA_OK);
    ck_assert_int_eq(res.sampled, 1);
    ck_assert(res.num_runs == (o.sample_rows + 63) / 64);
    uint8_t *rows = calloc((size_t)sq, 1);
    int64_t n = 0, prev_end = 0;
    for (int64_t c = 0; c < res.num_runs; c++) {
      ck_assert(res.run_start[c] >= prev_end && res.run_len[c] >= 1);
      prev_end = res.run_start[c] + res.run_len[c];
      ck_assert(prev_end <= sq);
      memset(rows + res.run_start[c], 1, (size_t)res.run_len[c]);
      n += res.run_len[c];
    }
    ck_assert_int_eq(res.rows_evaluated, n);
    ck_assert(n >= o.sample_rows - 64 && n <= o.sample_rows + 64);
    compare_eval(r, m, &res, rows);
    free(rows);
    bsa_eval_result_free(&res);
    bsa_mask_record_free(m);
    free_record(r);
  }
  bsa_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_eval_generated_masks) {
  /* End to end in memory: each generator's mask evaluated; the oracle's
   * recall reaches its top-p on average, kmeans' stays valid. */
  fresh_seed();
  bsa_ctx *ctx = cpu_ctx();
  int64_t S = irand(200, 300);
  int32_t *qa = malloc(sizeof(int32_t) * (size_t)(2 * S)), *ka = malloc(sizeof(int32_t) * (size_t)(2 * S));
  bsa_trace_record *r = planted_record(4, 2, 16, S, 4, 5, qa, ka);
  for (int meth = 0; meth < 3; meth++) {
    bsa_maskgen_params p;
    bsa_maskgen_params_init(&p);
    p.select = BSA_MASKGEN_SELECT_TOP_P;
    p.top_p = 0.8;
    p.block_q = p.block_k = 32;
    p.q_clusters = 4;
    p.k_clusters = 5;
    p.min_kc_ratio = 0;
    if (meth == 2) p.select = BSA_MASKGEN_SELECT_NONE;
    bsa_mask_record *m = NULL;
    ck_assert_int_eq(bsa_maskgen_run((bsa_maskgen_method)meth, r, &p, &m), BSA_OK);
    bsa_eval_result res;
    ck_assert_int_eq(bsa_mask_eval(ctx, r, m, NULL, &res), BSA_OK);
    compare_eval(r, m, &res, NULL);
    if (meth == 0) ck_assert(res.total.recall >= 0.8 - 1e-4);
    ck_assert(fabs(res.total.density.compute - m->density) < 1e-12);
    bsa_eval_result_free(&res);
    bsa_mask_record_free(m);
  }
  free_record(r);
  free(qa), free(ka);
  bsa_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_eval_errors) {
  fresh_seed();
  bsa_ctx *ctx = cpu_ctx();
  bsa_trace_record *r = new_record(2, 1, 8, 40, 40, 1, 1.0, 1);
  bsa_mask_record *m = random_mask(r, 3, 3, 1, 0.5);
  bsa_eval_result res;
  res.heads = (bsa_eval_metrics *)&res; /* poison */
  ck_assert_int_eq(bsa_mask_eval(ctx, r, m, NULL, &res), BSA_ERR_UNSUPPORTED);
  ck_assert_ptr_null(res.heads);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "causal"));
  bsa_mask_density d;
  ck_assert_int_eq(bsa_mask_density_get(m, 0, 1, &d), BSA_ERR_UNSUPPORTED);
  r->causal = 0;
  r->qo_len = 39;
  ck_assert_int_eq(bsa_mask_eval(ctx, r, m, NULL, &res), BSA_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "rec0"));
  r->qo_len = 40;
  bsa_eval_options o;
  memset(&o, 0, sizeof o);
  o.sample_rows = -5;
  ck_assert_int_eq(bsa_mask_eval(ctx, r, m, &o, &res), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "--sample-rows"));
  ck_assert_int_eq(bsa_mask_eval(NULL, r, m, NULL, &res), BSA_ERR_INVALID_ARG);
  bsa_mask_record_free(m);
  free_record(r);
  bsa_ctx_destroy(ctx);
}
END_TEST

static Suite *maskgen_suite(void) {
  Suite *s = suite_create("maskgen");
  TCase *g = tcase_create("generators");
  tcase_add_test(g, test_oracle_scores_and_top_p);
  tcase_add_test(g, test_top_k_threshold_forced);
  tcase_add_test(g, test_pooled_scores);
  tcase_add_test(g, test_kmeans_planted);
  tcase_add_test(g, test_kmeans_generator_planted);
  tcase_add_test(g, test_kmeans_determinism_random_data);
  tcase_add_test(g, test_bad_arguments);
  suite_add_tcase(s, g);
  TCase *m = tcase_create("masks");
  tcase_add_test(m, test_density_naive);
  tcase_add_test(m, test_permute_roundtrip_and_checks);
  suite_add_tcase(s, m);
  TCase *e = tcase_create("eval");
  tcase_add_test(e, test_eval_full_mask);
  tcase_add_test(e, test_eval_matches_naive);
  tcase_add_test(e, test_eval_long_records);
  tcase_add_test(e, test_eval_sampled_rows);
  tcase_add_test(e, test_eval_generated_masks);
  tcase_add_test(e, test_eval_errors);
  suite_add_tcase(s, e);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(maskgen_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
