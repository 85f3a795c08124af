/*
 * maskgen/kmeans.c - Lloyd's k-means with k-means++ or random seeding.
 *
 * Distances are ||x||^2 - 2 x.c + ||c||^2 with the x.c term one sgemm per
 * tile of TILE_N points ([TILE_N, dim] x [dim, k]), so an iteration runs at
 * the machine's GEMM rate; the argmin only needs ||c||^2 - 2 x.c.  One call
 * is single-threaded and deterministic for a seed; the generator runs one
 * call per (kv head, side) on its worker threads.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen_internal.h"

enum { TILE_N = 1024 };

/* Nearest centroid of each of n points given dot [n, k] = x.c and cn [k];
 * writes labels, returns how many changed.  Ties go to the lower index.
 * The minimum is found with a vectorisable reduction, then its first
 * position with a short scan. */
BSA__HOT static int64_t assign_tile(const float *restrict dot, const float *restrict cn, int64_t n,
                                    int64_t k, int32_t *restrict labels, float *restrict tmp) {
  int64_t changed = 0;
  for (int64_t r = 0; r < n; r++) {
    const float *restrict d = dot + r * k;
    for (int64_t c = 0; c < k; c++) tmp[c] = cn[c] - 2.0f * d[c];
    float a[16];
    for (int u = 0; u < 16; u++) a[u] = INFINITY;
    int64_t c = 0;
    for (; c + 16 <= k; c += 16)
      for (int u = 0; u < 16; u++) a[u] = tmp[c + u] < a[u] ? tmp[c + u] : a[u];
    float bv = INFINITY;
    for (int u = 0; u < 16; u++) bv = a[u] < bv ? a[u] : bv;
    for (; c < k; c++) bv = tmp[c] < bv ? tmp[c] : bv;
    int32_t best = 0;
    while (best < k - 1 && !(tmp[best] <= bv)) best++;
    if (labels[r] != best) {
      labels[r] = best;
      changed++;
    }
  }
  return changed;
}

/* sums [k, dim] += the rows of x [n, dim] by label. */
BSA__HOT static void sum_by_label(const float *restrict x, const int32_t *restrict labels,
                                  int64_t n, int64_t dim, double *restrict sums) {
  for (int64_t t = 0; t < n; t++) {
    double *restrict s = sums + (size_t)labels[t] * dim;
    const float *restrict a = x + (size_t)t * dim;
    for (int64_t d = 0; d < dim; d++) s[d] += a[d];
  }
}

static void row_norms(const float *x, int64_t n, int64_t dim, float *out) {
  for (int64_t t = 0; t < n; t++) {
    const float *a = x + (size_t)t * dim;
    float s = 0.0f;
    for (int64_t d = 0; d < dim; d++) s += a[d] * a[d];
    out[t] = s;
  }
}

/* mind[t] = min(mind[t], ||x_t - c||^2) for a new centroid c (first: set). */
static void update_min_dist(const float *x, const float *xn, int64_t n, int64_t dim, const float *c,
                            float *dot, double *mind, int first) {
  float cn = 0.0f;
  for (int64_t d = 0; d < dim; d++) cn += c[d] * c[d];
  cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)dim, 1.0f, x, (int)dim, c, 1, 0.0f, dot, 1);
  for (int64_t t = 0; t < n; t++) {
    double v = (double)xn[t] - 2.0 * (double)dot[t] + (double)cn;
    if (v < 0.0) v = 0.0;
    if (first || v < mind[t]) mind[t] = v;
  }
}

static void seed_plusplus(const float *x, const float *xn, int64_t n, int64_t dim, int64_t k,
                          uint64_t *rng, float *C, float *dot, double *mind) {
  int64_t t0 = (int64_t)bsa__rng_below(rng, (uint64_t)n);
  memcpy(C, x + (size_t)t0 * dim, sizeof(float) * (size_t)dim);
  update_min_dist(x, xn, n, dim, C, dot, mind, 1);
  for (int64_t c = 1; c < k; c++) {
    double total = 0.0;
    for (int64_t t = 0; t < n; t++) total += mind[t];
    int64_t pick;
    if (!(total > 0.0)) {
      /* Fewer distinct points than clusters: any point (its cluster may end
       * up empty, which the masks format allows). */
      pick = (int64_t)bsa__rng_below(rng, (uint64_t)n);
    } else {
      double r = bsa__rng_double(rng) * total, cum = 0.0;
      pick = n - 1;
      for (int64_t t = 0; t < n; t++) {
        cum += mind[t];
        if (cum > r && mind[t] > 0.0) {
          pick = t;
          break;
        }
      }
    }
    float *cc = C + (size_t)c * dim;
    memcpy(cc, x + (size_t)pick * dim, sizeof(float) * (size_t)dim);
    update_min_dist(x, xn, n, dim, cc, dot, mind, 0);
  }
}

static bsa_status seed_random(const float *x, int64_t n, int64_t dim, int64_t k, uint64_t *rng,
                              float *C) {
  int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
  if (!idx) return BSA_ERR_NOMEM;
  for (int64_t t = 0; t < n; t++) idx[t] = (int32_t)t;
  for (int64_t c = 0; c < k; c++) { /* partial Fisher-Yates */
    int64_t j = c + (int64_t)bsa__rng_below(rng, (uint64_t)(n - c));
    int32_t tmp = idx[c];
    idx[c] = idx[j];
    idx[j] = tmp;
    memcpy(C + (size_t)c * dim, x + (size_t)idx[c] * dim, sizeof(float) * (size_t)dim);
  }
  free(idx);
  return BSA_OK;
}

bsa_status bsa_kmeans(const float *x, int64_t n, int64_t dim, int64_t k, int32_t iters,
                      uint64_t seed, bsa_kmeans_init init, int32_t *labels, float *centroids,
                      int32_t *sizes, int32_t *iters_done) {
  if (!x || !labels || !centroids || !sizes)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "kmeans: x, labels, centroids or sizes is NULL");
  if (n < 1 || dim < 1 || k < 1 || iters < 1 || n > INT32_MAX)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "kmeans: n = %lld, dim = %lld, k = %lld, iters = %d (all must be >= 1, "
                     "n <= %d)",
                     (long long)n, (long long)dim, (long long)k, iters, INT32_MAX);
  if (k > n)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "kmeans: k = %lld clusters exceed n = %lld points",
                     (long long)k, (long long)n);
  float *xn = malloc(sizeof(float) * (size_t)n);
  float *C = malloc(sizeof(float) * (size_t)(k * dim));
  float *cn = malloc(sizeof(float) * (size_t)k);
  float *dot = malloc(sizeof(float) * (size_t)(n > TILE_N * k ? n : TILE_N * k));
  float *tmp = malloc(sizeof(float) * (size_t)k);
  double *mind = malloc(sizeof(double) * (size_t)n);
  double *sum = malloc(sizeof(double) * (size_t)(k * dim));
  int64_t *cnt = malloc(sizeof(int64_t) * (size_t)k);
  int64_t *newid = malloc(sizeof(int64_t) * (size_t)k);
  bsa_status st = BSA_OK;
  if (!xn || !C || !cn || !dot || !tmp || !mind || !sum || !cnt || !newid) {
    st = BSA_ERR_NOMEM;
    goto done;
  }
  uint64_t rng = seed;
  row_norms(x, n, dim, xn);
  if (init == BSA_KMEANS_INIT_RANDOM)
    st = seed_random(x, n, dim, k, &rng, C);
  else
    seed_plusplus(x, xn, n, dim, k, &rng, C, dot, mind);
  if (st != BSA_OK) goto done;

  for (int64_t t = 0; t < n; t++) labels[t] = -1;
  int32_t it = 0;
  for (; it < iters; it++) {
    row_norms(C, k, dim, cn);
    int64_t changed = 0;
    for (int64_t t0 = 0; t0 < n; t0 += TILE_N) {
      int64_t m = n - t0 < TILE_N ? n - t0 : TILE_N;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)k, (int)dim, 1.0f,
                  x + (size_t)t0 * dim, (int)dim, C, (int)dim, 0.0f, dot, (int)k);
      changed += assign_tile(dot, cn, m, k, labels + t0, tmp);
    }
    if (changed == 0) break; /* the centroids are already the means */
    memset(sum, 0, sizeof(double) * (size_t)(k * dim));
    memset(cnt, 0, sizeof(int64_t) * (size_t)k);
    sum_by_label(x, labels, n, dim, sum);
    for (int64_t t = 0; t < n; t++) cnt[labels[t]]++;
    for (int64_t c = 0; c < k; c++) {
      if (!cnt[c]) continue; /* an empty cluster keeps its centroid */
      double inv = 1.0 / (double)cnt[c];
      for (int64_t d = 0; d < dim; d++)
        C[(size_t)c * dim + d] = (float)(sum[(size_t)c * dim + d] * inv);
    }
  }
  if (iters_done) *iters_done = it < iters ? it + 1 : iters;

  /* Number the clusters in the order of their first member, empty ones
   * last, so the result does not depend on the seeding's numbering. */
  for (int64_t c = 0; c < k; c++) newid[c] = -1, cnt[c] = 0;
  int64_t next = 0;
  for (int64_t t = 0; t < n; t++) {
    if (newid[labels[t]] < 0) newid[labels[t]] = next++;
    cnt[labels[t]]++;
  }
  for (int64_t c = 0; c < k; c++)
    if (newid[c] < 0) newid[c] = next++;
  for (int64_t t = 0; t < n; t++) labels[t] = (int32_t)newid[labels[t]];
  for (int64_t c = 0; c < k; c++) {
    memcpy(centroids + (size_t)newid[c] * dim, C + (size_t)c * dim, sizeof(float) * (size_t)dim);
    sizes[newid[c]] = (int32_t)cnt[c];
  }
done:
  free(xn), free(C), free(cn), free(dot), free(tmp), free(mind), free(sum), free(cnt), free(newid);
  if (st == BSA_ERR_NOMEM)
    return bsa__fail(NULL, st, "kmeans: out of memory for %lld points x %lld dims, k = %lld",
                     (long long)n, (long long)dim, (long long)k);
  return st;
}
