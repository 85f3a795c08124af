/*
 * maskgen/gen_kmeans.c - the k-means generator (Sparse VideoGen2's
 * semantic-aware permutation).
 *
 * For each kv head h:
 *   - query points: token t -> concat over the group's query heads g of
 *     q[h*G + g, t, :]  ([Sq, G*D]); key points: k[h, t, :]  ([Sk, D]);
 *   - k-means of each (bsa_kmeans, one job per (head, side) on the worker
 *     threads, each with its own seed derived from --seed, h and the side);
 *   - q_perm / k_perm list the tokens cluster by cluster (tokens in
 *     increasing order inside a cluster), block_row_sz / block_col_sz are
 *     the cluster sizes (0 for an empty cluster);
 *   - score[a, b] = mean over g of the size-weighted softmax over b of
 *     sm_scale * <cq[a, g], ck[b]>:  |b| e^{l_ab} / sum_b' |b'| e^{l_ab'},
 *     i.e. the share of query cluster a's attention that key cluster b
 *     would get if all its tokens sat at the centroids;
 *   - per query cluster, top-p over the non-empty key clusters, keeping at
 *     least floor(min_kc_ratio * NB) of them (the floor of Sparse
 *     VideoGen2's identify_dynamic_map).
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen_internal.h"

typedef struct km_ctx {
  const bsa_trace_record *rec;
  const bsa_maskgen_params *p;
  int32_t group;
  /* outputs per kv head */
  int32_t *qlab, *klab;   /* [Hkv, Sq], [Hkv, Sk] */
  float *qcent, *kcent;   /* [Hkv, Kq, G*D], [Hkv, Kk, D] */
  int32_t *qsize, *ksize; /* [Hkv, Kq], [Hkv, Kk] */
} km_ctx;

static uint64_t job_seed(uint64_t seed, int64_t job) {
  uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(job + 1));
  return bsa__rng_next(&s);
}

static bsa_status km_job(void *arg, int64_t job, int thread) {
  (void)thread;
  km_ctx *c = arg;
  const bsa_trace_record *rec = c->rec;
  const bsa_maskgen_params *p = c->p;
  int32_t h = (int32_t)(job / 2);
  int side = (int)(job % 2);
  int64_t D = rec->head_dim, sq = rec->qo_len, sk = rec->kv_len;
  uint64_t seed = job_seed(p->seed, job);
  if (side == 1) {
    return bsa_kmeans(rec->k + (size_t)h * sk * D, sk, D, p->k_clusters, p->iters, seed, p->init,
                      c->klab + (size_t)h * sk, c->kcent + (size_t)h * p->k_clusters * D,
                      c->ksize + (size_t)h * p->k_clusters, NULL);
  }
  int64_t G = c->group, dim = G * D;
  const float *x = rec->q + (size_t)h * G * sq * D;
  float *cat = NULL;
  if (G > 1) {
    cat = malloc(sizeof(float) * (size_t)(sq * dim));
    if (!cat) return BSA_ERR_NOMEM;
    for (int64_t t = 0; t < sq; t++)
      for (int64_t g = 0; g < G; g++)
        memcpy(cat + (size_t)t * dim + g * D, x + ((size_t)g * sq + t) * D,
               sizeof(float) * (size_t)D);
    x = cat;
  }
  bsa_status st = bsa_kmeans(x, sq, dim, p->q_clusters, p->iters, seed, p->init,
                             c->qlab + (size_t)h * sq, c->qcent + (size_t)h * p->q_clusters * dim,
                             c->qsize + (size_t)h * p->q_clusters, NULL);
  free(cat);
  return st;
}

/* perm lists tokens cluster by cluster; labels [n] in 0..k-1, sizes [k]. */
static bsa_status perm_from_labels(const int32_t *labels, const int32_t *sizes, int64_t n,
                                   int64_t k, int32_t *perm) {
  int64_t *pos = malloc(sizeof(int64_t) * (size_t)k);
  if (!pos) return BSA_ERR_NOMEM;
  int64_t acc = 0;
  for (int64_t c = 0; c < k; c++) pos[c] = acc, acc += sizes[c];
  for (int64_t t = 0; t < n; t++) perm[pos[labels[t]]++] = (int32_t)t;
  free(pos);
  return BSA_OK;
}

bsa_status bsa_maskgen_kmeans(const bsa_trace_record *rec, const bsa_maskgen_params *p,
                              bsa_mask_record **out) {
  if (!out) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "out is NULL");
  *out = NULL;
  bsa_status st = bsa_maskgen_params_check(BSA_MASKGEN_KMEANS, p, rec);
  if (st != BSA_OK) return st;
  int32_t hkv = rec->num_kv_heads, G = rec->num_qo_heads / hkv;
  int64_t D = rec->head_dim, sq = rec->qo_len, sk = rec->kv_len;
  int64_t kq = p->q_clusters, kk = p->k_clusters;
  km_ctx c = {rec, p, G, NULL, NULL, NULL, NULL, NULL, NULL};
  c.qlab = malloc(sizeof(int32_t) * (size_t)(hkv * sq));
  c.klab = malloc(sizeof(int32_t) * (size_t)(hkv * sk));
  c.qcent = malloc(sizeof(float) * (size_t)(hkv * kq * G * D));
  c.kcent = malloc(sizeof(float) * (size_t)(hkv * kk * D));
  c.qsize = malloc(sizeof(int32_t) * (size_t)(hkv * kq));
  c.ksize = malloc(sizeof(int32_t) * (size_t)(hkv * kk));
  float *L = malloc(sizeof(float) * (size_t)(kq * kk));
  uint8_t *elig = malloc((size_t)kk), *none = calloc((size_t)kk, 1);
  int64_t *order = malloc(sizeof(int64_t) * (size_t)kk);
  bsa_mask_record *m = NULL;
  if (!c.qlab || !c.klab || !c.qcent || !c.kcent || !c.qsize || !c.ksize || !L || !elig || !none ||
      !order) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "kmeans: out of memory for record '%s'",
                   rec->name ? rec->name : "");
    goto done;
  }
  st = bsa__gen_parallel(bsa__gen_threads(p->num_threads), 2 * (int64_t)hkv, km_job, &c);
  if (st != BSA_OK) {
    if (st == BSA_ERR_NOMEM)
      bsa__fail(NULL, st, "kmeans: out of memory clustering record '%s'",
                rec->name ? rec->name : "");
    goto done;
  }
  m = bsa__mask_record_new(rec->name, hkv, sq, sk, kq, kk, 1);
  if (!m) {
    st = BSA_ERR_NOMEM;
    goto done;
  }
  float scale = bsa__record_scale(rec);
  int64_t min_keep = (int64_t)floor(p->min_kc_ratio * (double)kk + 1e-9);
  for (int32_t h = 0; h < hkv; h++) {
    const int32_t *qs = c.qsize + (size_t)h * kq, *ks = c.ksize + (size_t)h * kk;
    memcpy(m->block_row_sz + (size_t)h * kq, qs, sizeof(int32_t) * (size_t)kq);
    memcpy(m->block_col_sz + (size_t)h * kk, ks, sizeof(int32_t) * (size_t)kk);
    if (perm_from_labels(c.qlab + (size_t)h * sq, qs, sq, kq, m->q_perm + (size_t)h * sq) ||
        perm_from_labels(c.klab + (size_t)h * sk, ks, sk, kk, m->k_perm + (size_t)h * sk)) {
      st = bsa__fail(NULL, BSA_ERR_NOMEM, "kmeans: out of memory");
      goto done;
    }
    float *score = m->block_scores + (size_t)h * kq * kk;
    memset(score, 0, sizeof(float) * (size_t)(kq * kk));
    const float *Ck = c.kcent + (size_t)h * kk * D;
    for (int64_t g = 0; g < G; g++) {
      /* Logits of the g-th D-slice of the query centroids. */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)kq, (int)kk, (int)D, scale,
                  c.qcent + (size_t)h * kq * G * D + g * D, (int)(G * D), Ck, (int)D, 0.0f, L,
                  (int)kk);
      for (int64_t a = 0; a < kq; a++) {
        const float *l = L + a * kk;
        double mx = -INFINITY, tot = 0.0;
        for (int64_t b = 0; b < kk; b++)
          if (ks[b] > 0 && l[b] > mx) mx = l[b];
        for (int64_t b = 0; b < kk; b++)
          if (ks[b] > 0) tot += (double)ks[b] * exp((double)l[b] - mx);
        for (int64_t b = 0; b < kk; b++)
          if (ks[b] > 0)
            score[a * kk + b] += (float)((double)ks[b] * exp((double)l[b] - mx) / tot / (double)G);
      }
    }
    for (int64_t b = 0; b < kk; b++) elig[b] = ks[b] > 0;
    for (int64_t a = 0; a < kq; a++) {
      size_t row = ((size_t)h * kq + a) * kk;
      /* An empty query cluster has no rows to compute: keep nothing. */
      bsa__select_row(score + a * kk, qs[a] > 0 ? elig : none, NULL, kk, BSA_MASKGEN_SELECT_TOP_P,
                      p->top_p, 0, 0.0, min_keep, order, m->block_mask_map + row);
    }
  }
  bsa_mask_density dens;
  st = bsa_mask_density_get(m, -1, 0, &dens);
  if (st == BSA_OK) {
    m->density = dens.compute;
    *out = m;
    m = NULL;
  }
done:
  bsa_mask_record_free(m);
  free(c.qlab), free(c.klab), free(c.qcent), free(c.kcent), free(c.qsize), free(c.ksize);
  free(L), free(elig), free(none), free(order);
  return st;
}
