/*
 * maskgen/synth.c - synthetic attention traces with planted structure
 * (sinks, local windows, vertical stripes, token clusters); see
 * bsa/trace.h for the model and docs/formats.md for the file.
 *
 * Each head's vectors are built in a canonical basis where every kind of
 * structure has its own coordinates, [D] = [clusters Dc | positional 2m |
 * sink 1 | stripe 1 | rest], then rotated by a random orthogonal matrix of
 * the head, which keeps all dot products (and so the attention) and hides
 * the axes.  With unit-norm centroids and positional features, a logit is
 * roughly (A_q A_k [same cluster] + B_q B_k kernel(t - s) + sink + stripe
 * + noise) / sqrt(D); the strengths below were chosen so that each kind of
 * structure holds a sizeable share of the attention mass at the defaults.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsa/trace.h"
#include "internal.h"

/* ---- random numbers: splitmix64 seeding, xoshiro256**, Box-Muller -------- */

typedef struct rng {
  uint64_t s[4];
  int has_spare;
  double spare;
} rng;

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* One independent stream per (seed, record, head); head -1 is the record's
 * shared stream. */
static void rng_init(rng *r, uint64_t seed, int64_t record, int64_t head) {
  uint64_t x = seed;
  uint64_t a = splitmix64(&x);
  x = a ^ (0xd1b54a32d192ed03ull * (uint64_t)(record + 1));
  uint64_t b = splitmix64(&x);
  x = b ^ (0x8cb92ba72f3d8dd7ull * (uint64_t)(head + 2));
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
  r->has_spare = 0;
}

static inline uint64_t rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

static uint64_t rng_next(rng *r) {
  uint64_t *s = r->s;
  uint64_t res = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return res;
}

/* Uniform in [0, 1) with 53 bits. */
static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static double rng_range(rng *r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }

/* Uniform integer in [0, n), n > 0 (rejection keeps it unbiased). */
static uint64_t rng_below(rng *r, uint64_t n) {
  uint64_t lim = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = rng_next(r);
  while (v >= lim);
  return v % n;
}

static double rng_normal(rng *r) {
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  double u1, u2;
  do u1 = rng_uniform(r);
  while (u1 <= 0);
  u2 = rng_uniform(r);
  double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
  r->spare = rad * sin(th);
  r->has_spare = 1;
  return rad * cos(th);
}

/* ---- parameters ------------------------------------------------------------ */

void bsa_trace_synth_defaults(bsa_trace_synth_params *p) {
  memset(p, 0, sizeof *p);
  p->num_records = 4;
  p->num_qo_heads = 4;
  p->num_kv_heads = 2;
  p->head_dim = 64;
  p->seq_len = 1024;
  p->seed = 1;
  p->causal = 0;
  p->num_clusters = 8;
  p->num_sinks = 4;
  p->num_stripes = 8;
  p->window = 32;
}

static bsa_status check_params(const bsa_trace_synth_params *p) {
  const bsa_status E = BSA_ERR_INVALID_ARG;
  if (!p) return bsa__fail(NULL, E, "synth: params must not be NULL");
  if (p->num_records < 1 || p->num_records > 100000)
    return bsa__fail(NULL, E, "synth: num_records = %d is outside [1, 100000]", p->num_records);
  if (p->num_kv_heads < 1 || p->num_kv_heads > 4096)
    return bsa__fail(NULL, E, "synth: num_kv_heads = %d is outside [1, 4096]", p->num_kv_heads);
  if (p->num_qo_heads < 1 || p->num_qo_heads > 4096)
    return bsa__fail(NULL, E, "synth: num_qo_heads = %d is outside [1, 4096]", p->num_qo_heads);
  if (p->num_qo_heads % p->num_kv_heads != 0)
    return bsa__fail(NULL, E, "synth: num_qo_heads = %d is not a multiple of num_kv_heads = %d",
                     p->num_qo_heads, p->num_kv_heads);
  if (p->head_dim < 8 || p->head_dim > 1024)
    return bsa__fail(NULL, E,
                     "synth: head_dim = %d is outside [8, 1024] (8 is the least the planted "
                     "structure fits in)",
                     p->head_dim);
  if (p->seq_len < 16 || p->seq_len > ((int64_t)1 << 30))
    return bsa__fail(NULL, E, "synth: seq_len = %lld is outside [16, 2^30]", (long long)p->seq_len);
  if (p->causal != 0 && p->causal != 1)
    return bsa__fail(NULL, E, "synth: causal = %d; expected 0 or 1", p->causal);
  if (p->num_clusters < 1 || p->num_clusters > p->seq_len)
    return bsa__fail(NULL, E, "synth: num_clusters = %d is outside [1, seq_len = %lld]",
                     p->num_clusters, (long long)p->seq_len);
  if (p->num_sinks < 0 || p->num_stripes < 0 || (int64_t)p->num_sinks + p->num_stripes > p->seq_len)
    return bsa__fail(NULL, E,
                     "synth: num_sinks = %d and num_stripes = %d must be >= 0 and together at "
                     "most seq_len = %lld",
                     p->num_sinks, p->num_stripes, (long long)p->seq_len);
  if (p->window < 1 || p->window > p->seq_len)
    return bsa__fail(NULL, E, "synth: window = %d is outside [1, seq_len = %lld]", p->window,
                     (long long)p->seq_len);
  return BSA_OK;
}

/* ---- generation ------------------------------------------------------------- */

/* Random orthogonal matrix [D, D] (rows orthonormal), by Gram-Schmidt on
 * Gaussian rows (done twice for accuracy). */
static void random_orthogonal(rng *r, int32_t D, double *m) {
  for (int64_t i = 0; i < (int64_t)D * D; i++) m[i] = rng_normal(r);
  for (int32_t i = 0; i < D; i++) {
    double *a = m + (int64_t)i * D;
    for (int pass = 0; pass < 2; pass++)
      for (int32_t j = 0; j < i; j++) {
        const double *b = m + (int64_t)j * D;
        double dot = 0;
        for (int32_t k = 0; k < D; k++) dot += a[k] * b[k];
        for (int32_t k = 0; k < D; k++) a[k] -= dot * b[k];
      }
    double n = 0;
    for (int32_t k = 0; k < D; k++) n += a[k] * a[k];
    n = sqrt(n);
    for (int32_t k = 0; k < D; k++) a[k] /= n;
  }
}

/* out[t] = R x[t] for S rows: out = X R^T, accumulated in a fixed order so
 * the result does not depend on threads or libraries. */
static void rotate_rows(const double *R, int32_t D, const double *X, int64_t S, float *out) {
  double *acc = malloc(sizeof(double) * (size_t)D);
  for (int64_t t = 0; t < S; t++) {
    const double *x = X + t * D;
    for (int32_t i = 0; i < D; i++) acc[i] = 0;
    for (int32_t j = 0; j < D; j++) {
      double xj = x[j];
      if (xj == 0) continue;
      /* column j of R, i.e. R[i][j] for all i, read with stride D */
      for (int32_t i = 0; i < D; i++) acc[i] += R[(int64_t)i * D + j] * xj;
    }
    for (int32_t i = 0; i < D; i++) out[t * D + i] = (float)acc[i];
  }
  free(acc);
}

/* The canonical-basis layout of a head of dimension D. */
typedef struct basis {
  int32_t Dc;     /* cluster coordinates [0, Dc) */
  int32_t m;      /* positional frequencies: cos at [Dc, Dc+m), sin at [Dc+m, Dc+2m) */
  int32_t sink;   /* sink coordinate */
  int32_t stripe; /* stripe coordinate */
} basis;

static basis make_basis(int32_t D) {
  basis b;
  b.Dc = D / 4 > 2 ? D / 4 : 2;
  b.m = D / 8 > 1 ? D / 8 : 1;
  b.sink = b.Dc + 2 * b.m;
  b.stripe = b.sink + 1;
  return b;
}

bsa_status bsa_trace_synth_record(const bsa_trace_synth_params *p, int32_t index,
                                  bsa_trace_record **out) {
  if (out) *out = NULL;
  if (!out) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "synth: out must not be NULL");
  bsa_status s = check_params(p);
  if (s != BSA_OK) return s;
  if (index < 0 || index >= p->num_records)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "synth: record index %d is outside [0, %d)", index,
                     p->num_records);
  const int32_t D = p->head_dim, Hq = p->num_qo_heads, Hkv = p->num_kv_heads;
  const int32_t G = Hq / Hkv, C = p->num_clusters;
  const int64_t S = p->seq_len;
  const basis b = make_basis(D);
  const double sigma = 0.35; /* noise per coordinate */

  bsa_trace_record *r = calloc(1, sizeof *r);
  char name[32];
  snprintf(name, sizeof name, p->num_records > 100 ? "layer%04d" : "layer%02d", index);
  double *R = malloc(sizeof(double) * (size_t)D * D);
  double *X = malloc(sizeof(double) * (size_t)(S * D));
  double *mu = malloc(sizeof(double) * (size_t)C * D); /* cluster centroids */
  double *nu = malloc(sizeof(double) * (size_t)C * D); /* cluster value means */
  double *pos = malloc(sizeof(double) * (size_t)(S * 2 * b.m));
  double *freq = malloc(sizeof(double) * (size_t)b.m);
  double *stripe_gain = malloc(sizeof(double) * (size_t)(p->num_stripes + 1));
  int64_t *stripe_pos = malloc(sizeof(int64_t) * (size_t)(p->num_stripes + 1));
  uint8_t *is_stripe = calloc((size_t)S, 1);
  if (r) {
    r->name = strdup(name);
    r->q = malloc(sizeof(float) * (size_t)Hq * (size_t)(S * D));
    r->k = malloc(sizeof(float) * (size_t)Hkv * (size_t)(S * D));
    r->v = malloc(sizeof(float) * (size_t)Hkv * (size_t)(S * D));
    r->cluster_id = malloc(sizeof(int32_t) * (size_t)Hkv * (size_t)S);
  }
  if (!r || !r->name || !r->q || !r->k || !r->v || !r->cluster_id || !R || !X || !mu || !nu ||
      !pos || !freq || !stripe_gain || !stripe_pos || !is_stripe) {
    s = bsa__fail(NULL, BSA_ERR_NOMEM,
                  "synth: out of memory for a record of %d+2x%d heads x "
                  "%lld tokens x %d",
                  Hq, Hkv, (long long)S, D);
    goto done;
  }
  r->num_qo_heads = Hq;
  r->num_kv_heads = Hkv;
  r->head_dim = D;
  r->qo_len = S;
  r->kv_len = S;
  r->layer = index;
  r->step = -1;
  r->causal = p->causal;
  r->sm_scale = 0;
  r->num_clusters = C;

  /* Stripes: positions after the sinks shared by all heads of the record
   * (special tokens get attention from every head). */
  rng shared;
  rng_init(&shared, p->seed, index, -1);
  for (int32_t i = 0; i < p->num_stripes; i++) {
    int64_t t;
    do t = p->num_sinks + (int64_t)rng_below(&shared, (uint64_t)(S - p->num_sinks));
    while (is_stripe[t]);
    is_stripe[t] = 1;
    stripe_pos[i] = t;
    stripe_gain[i] = rng_range(&shared, 0.9, 1.1);
  }

  for (int32_t h = 0; h < Hkv; h++) {
    rng g;
    rng_init(&g, p->seed, index, h);
    random_orthogonal(&g, D, R);
    /* Strengths of this head: how clustered, how local, how much sink. */
    /* Logits scale as strength^2 / sqrt(D): strengths grow as D^(1/4) so
     * the attention pattern does not depend on the head dimension. */
    double dscale = pow((double)D / 64.0, 0.25);
    double A = dscale * rng_range(&g, 4.0, 6.0), B = dscale * rng_range(&g, 4.0, 6.0);
    double Gs = dscale * rng_range(&g, 6.5, 8.0), Gv = dscale * rng_range(&g, 5.0, 6.5);

    /* Centroids in the cluster coordinates: orthonormal when they fit. */
    memset(mu, 0, sizeof(double) * (size_t)C * D);
    for (int32_t c = 0; c < C; c++) {
      double *u = mu + (int64_t)c * D;
      for (int pass = 0; pass < 2; pass++) {
        if (pass == 0)
          for (int32_t k = 0; k < b.Dc; k++) u[k] = rng_normal(&g);
        if (c < b.Dc)
          for (int32_t j = 0; j < c; j++) {
            const double *w = mu + (int64_t)j * D;
            double dot = 0;
            for (int32_t k = 0; k < b.Dc; k++) dot += u[k] * w[k];
            for (int32_t k = 0; k < b.Dc; k++) u[k] -= dot * w[k];
          }
      }
      double n = 0;
      for (int32_t k = 0; k < b.Dc; k++) n += u[k] * u[k];
      n = sqrt(n);
      for (int32_t k = 0; k < b.Dc; k++) u[k] /= n;
      double *vm = nu + (int64_t)c * D;
      for (int32_t k = 0; k < D; k++) vm[k] = rng_normal(&g);
    }

    /* Cluster assignment: runs of about 8 tokens, cluster drawn with
     * uneven weights, so clusters have different sizes and are scattered. */
    double wsum = 0, *wt = X; /* X is free scratch here */
    for (int32_t c = 0; c < C; c++) wsum += (wt[c] = rng_range(&g, 0.5, 1.5));
    int32_t *cid = r->cluster_id + (int64_t)h * S;
    for (int64_t t = 0; t < S;) {
      int64_t len = 1;
      while (rng_uniform(&g) < 7.0 / 8.0 && len < S) len++;
      double u = rng_uniform(&g) * wsum;
      int32_t c = 0;
      while (c < C - 1 && u >= wt[c]) u -= wt[c++];
      for (int64_t e = t + len < S ? t + len : S; t < e; t++) cid[t] = c;
    }

    /* Positional features: random frequencies below pi / window, so the
     * kernel sum_i cos(f_i (t - s)) / m is 1 at distance 0 and falls off
     * within about a window. */
    for (int32_t i = 0; i < b.m; i++) freq[i] = rng_range(&g, 0.1, 1.0) * M_PI / p->window;
    double rm = 1.0 / sqrt((double)b.m);
    for (int32_t i = 0; i < b.m; i++) {
      double ph = rng_range(&g, 0, 2 * M_PI);
      for (int64_t t = 0; t < S; t++) {
        pos[t * 2 * b.m + i] = cos(freq[i] * (double)t + ph) * rm;
        pos[t * 2 * b.m + b.m + i] = sin(freq[i] * (double)t + ph) * rm;
      }
    }

    /* Keys. */
    for (int64_t t = 0; t < S; t++) {
      double *x = X + t * D;
      const double *u = mu + (int64_t)cid[t] * D;
      for (int32_t k = 0; k < D; k++) x[k] = sigma * rng_normal(&g) + A * u[k];
      for (int32_t i = 0; i < 2 * b.m; i++) x[b.Dc + i] += B * pos[t * 2 * b.m + i];
      /* Earlier sinks are stronger, as in real models. */
      if (t < p->num_sinks) x[b.sink] += Gs * (1.0 - 0.5 * (double)t / p->num_sinks);
    }
    for (int32_t i = 0; i < p->num_stripes; i++)
      X[stripe_pos[i] * D + b.stripe] += Gv * stripe_gain[i];
    rotate_rows(R, D, X, S, r->k + (int64_t)h * S * D);

    /* Values: cluster mean plus noise; sinks carry little (no-op tokens). */
    for (int64_t t = 0; t < S; t++) {
      double *x = X + t * D;
      const double *vm = nu + (int64_t)cid[t] * D;
      double damp = t < p->num_sinks ? 0.1 : 1.0;
      for (int32_t k = 0; k < D; k++) x[k] = damp * (0.6 * vm[k] + rng_normal(&g));
    }
    rotate_rows(R, D, X, S, r->v + (int64_t)h * S * D);

    /* Queries of the group's heads: the same structure, own strengths. */
    for (int32_t qh = h * G; qh < (h + 1) * G; qh++) {
      double a = A * rng_range(&g, 0.85, 1.15), bb = B * rng_range(&g, 0.85, 1.15);
      double gs = 0.9 * rng_range(&g, 0.8, 1.2), gv = 0.9 * rng_range(&g, 0.9, 1.1);
      for (int64_t t = 0; t < S; t++) {
        double *x = X + t * D;
        const double *u = mu + (int64_t)cid[t] * D;
        for (int32_t k = 0; k < D; k++) x[k] = sigma * rng_normal(&g) + a * u[k];
        for (int32_t i = 0; i < 2 * b.m; i++) x[b.Dc + i] += bb * pos[t * 2 * b.m + i];
        if (p->num_sinks > 0) x[b.sink] += Gs * gs;
        if (p->num_stripes > 0) x[b.stripe] += Gv * gv;
      }
      rotate_rows(R, D, X, S, r->q + (int64_t)qh * S * D);
    }
  }
done:
  free(R);
  free(X);
  free(mu);
  free(nu);
  free(pos);
  free(freq);
  free(stripe_gain);
  free(stripe_pos);
  free(is_stripe);
  if (s != BSA_OK) {
    bsa_trace_record_free(r);
    return s;
  }
  *out = r;
  return BSA_OK;
}

bsa_status bsa_trace_synth_write(const char *path, const bsa_trace_synth_params *p,
                                 bsa_dtype dtype) {
  bsa_status s = check_params(p);
  if (s != BSA_OK) return s;
  char source[512];
  snprintf(source, sizeof source,
           "bsa trace synth: seed=%llu records=%d heads=%d kv_heads=%d head_dim=%d seq=%lld "
           "causal=%d clusters=%d sinks=%d stripes=%d window=%d",
           (unsigned long long)p->seed, p->num_records, p->num_qo_heads, p->num_kv_heads,
           p->head_dim, (long long)p->seq_len, p->causal, p->num_clusters, p->num_sinks,
           p->num_stripes, p->window);
  bsa_trace_writer *w;
  s = bsa_trace_writer_create(path, dtype, "synthetic", source, &w);
  if (s != BSA_OK) return s;
  for (int32_t i = 0; i < p->num_records; i++) {
    bsa_trace_record *r;
    s = bsa_trace_synth_record(p, i, &r);
    if (s == BSA_OK) {
      s = bsa_trace_writer_add(w, r);
      bsa_trace_record_free(r);
    }
    if (s != BSA_OK) {
      bsa_trace_writer_abort(w);
      return s;
    }
  }
  return bsa_trace_writer_commit(w);
}
