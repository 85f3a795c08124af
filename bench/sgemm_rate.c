/*
 * bench/sgemm_rate.c - the CBLAS sgemm rate of this machine for the products
 * dense attention does: for each of H heads, S = Q K^T ([S, D] x [D, S]) and
 * O = P V ([S, S] x [S, D]).  Prints GFLOP/s (median of reps) and the BLAS
 * core in use, so attention can be compared with it in the same run.
 *
 * usage: sgemm_rate [--heads H] [--seq S] [--head-dim D] [--reps N]
 */
#include "config.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int H = 8, S = 4096, D = 128, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--heads")) H = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--seq")) S = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--head-dim")) D = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "sgemm_rate: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  if (H < 1 || S < 1 || D < 1 || reps < 1) {
    fprintf(stderr, "sgemm_rate: --heads, --seq, --head-dim and --reps must be >= 1\n");
    return 2;
  }
  size_t sd = (size_t)S * D, ss = (size_t)S * S;
  float *q = malloc(sizeof(float) * sd), *k = malloc(sizeof(float) * sd);
  float *v = malloc(sizeof(float) * sd), *o = malloc(sizeof(float) * sd);
  float *s = malloc(sizeof(float) * ss);
  if (!q || !k || !v || !o || !s) {
    fprintf(stderr, "sgemm_rate: out of memory\n");
    return 1;
  }
  unsigned x = 12345;
  for (size_t i = 0; i < sd; i++) {
    x = x * 1664525u + 1013904223u;
    q[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
    k[i] = q[i] * 0.5f + 0.1f;
    v[i] = -q[i];
  }
  for (size_t i = 0; i < ss; i++) s[i] = (float)(i % 97) / 97.0f;
  double *t = malloc(sizeof(double) * (size_t)reps);
  for (int r = -1; r < reps; r++) {
    double t0 = now_ms();
    for (int h = 0; h < H; h++) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, S, D, 1.0f, q, D, k, D, 0.0f, s, S);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, D, S, 1.0f, s, S, v, D, 0.0f, o, D);
    }
    if (r >= 0) t[r] = now_ms() - t0;
  }
  qsort(t, (size_t)reps, sizeof(double), cmp);
  double flops = 4.0 * H * (double)S * S * D;
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
  const char *core = openblas_get_corename();
  int threads = openblas_get_num_threads();
#else
  const char *core = "unknown";
  int threads = 0;
#endif
  printf("{\"what\":\"sgemm\",\"heads\":%d,\"seq\":%d,\"head_dim\":%d,\"time_ms\":%.3f,"
         "\"gflops\":%.2f,\"blas_core\":\"%s\",\"blas_threads\":%d}\n",
         H, S, D, t[reps / 2], flops / (t[reps / 2] * 1e-3) / 1e9, core, threads);
  free(q), free(k), free(v), free(o), free(s), free(t);
  return 0;
}
