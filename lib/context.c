/*
 * lib/context.c - contexts, device memory and timing.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* Blocks of 2 MiB or more are 2 MiB aligned and asked for transparent huge
 * pages: the products reach K and V rows all over such a block (a sparse
 * plan's segments, an NHD tensor's rows 4 KB apart), and with 4 KB pages
 * nearly every row is a TLB miss.  Where the system gives no huge pages
 * (transparent_hugepage=never), madvise fails and the block is used as is. */
void *bsa__aligned_alloc(size_t bytes) {
  void *p = NULL;
  if (bytes == 0) bytes = 64;
  const size_t huge = (size_t)2 << 20;
  size_t align = 64;
  if (bytes >= huge) {
    align = huge;
    bytes = (bytes + huge - 1) & ~(huge - 1);
  }
  if (posix_memalign(&p, align, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (align == huge) (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

double bsa__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

bsa_status bsa_ctx_create(const bsa_ctx_options *opts, bsa_ctx **out) {
  if (!out) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "bsa_ctx_create: out is NULL");
  *out = NULL;
  bsa_ctx_options o;
  memset(&o, 0, sizeof o);
  if (opts) o = *opts;
  if (o.device != BSA_DEVICE_CPU && o.device != BSA_DEVICE_CUDA)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "device = %d is not BSA_DEVICE_CPU (0) or BSA_DEVICE_CUDA (1)", (int)o.device);
  if (o.num_threads < 0 || o.num_threads > 1024)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "num_threads = %d is outside [0, 1024]",
                     o.num_threads);
#ifndef BSA_HAVE_CUDA
  if (o.device == BSA_DEVICE_CUDA)
    return bsa__fail(NULL, BSA_ERR_NO_DEVICE,
                     "device = cuda: this libbsa was built without the CUDA backend "
                     "(configure --with-cuda)");
#endif
  bsa_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return bsa__fail(NULL, BSA_ERR_NOMEM, "bsa_ctx_create: out of memory");
  ctx->device = o.device;
  ctx->cuda_device = o.cuda_device;
  ctx->cuda_stream = o.cuda_stream;
  ctx->num_threads = o.num_threads;
  if (ctx->num_threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    ctx->num_threads = n > 0 ? (int)n : 1;
  }
  snprintf(ctx->device_name, sizeof ctx->device_name, "cpu (%d threads)", ctx->num_threads);
#ifdef BSA_HAVE_CUDA
  if (ctx->device == BSA_DEVICE_CUDA) {
    bsa_status st = bsa__cuda_ctx_init(ctx);
    if (st != BSA_OK) {
      free(ctx);
      return st;
    }
  }
#endif
  *out = ctx;
  return BSA_OK;
}

void bsa_ctx_destroy(bsa_ctx *ctx) { free(ctx); }

const char *bsa_ctx_last_error(const bsa_ctx *ctx) { return ctx ? ctx->msg : bsa_last_error(); }

bsa_device bsa_ctx_device(const bsa_ctx *ctx) { return ctx ? ctx->device : BSA_DEVICE_CPU; }

int bsa_ctx_num_threads(const bsa_ctx *ctx) { return ctx ? ctx->num_threads : 0; }

const char *bsa_ctx_device_name(const bsa_ctx *ctx) { return ctx ? ctx->device_name : ""; }

const char *bsa_ctx_device_driver(const bsa_ctx *ctx) { return ctx ? ctx->driver : ""; }

bsa_status bsa_ctx_alloc(bsa_ctx *ctx, size_t bytes, void **ptr) {
  if (!ctx || !ptr)
    return bsa__fail(ctx, BSA_ERR_INVALID_ARG, "bsa_ctx_alloc: %s is NULL", !ctx ? "ctx" : "ptr");
  *ptr = NULL;
#ifdef BSA_HAVE_CUDA
  if (ctx->device == BSA_DEVICE_CUDA) return bsa__cuda_alloc(ctx, bytes, ptr);
#endif
  *ptr = bsa__aligned_alloc(bytes);
  if (!*ptr)
    return bsa__fail(ctx, BSA_ERR_NOMEM, "bsa_ctx_alloc: %zu bytes of host memory failed", bytes);
  return BSA_OK;
}

void bsa_ctx_free(bsa_ctx *ctx, void *ptr) {
  if (!ctx || !ptr) return;
#ifdef BSA_HAVE_CUDA
  if (ctx->device == BSA_DEVICE_CUDA) {
    bsa__cuda_free(ctx, ptr);
    return;
  }
#endif
  free(ptr);
}

static bsa_status copy(bsa_ctx *ctx, void *dst, const void *src, size_t bytes, int to_dev) {
  if (!ctx || (!dst && bytes) || (!src && bytes))
    return bsa__fail(ctx, BSA_ERR_INVALID_ARG, "bsa_ctx_copy: %s is NULL",
                     !ctx   ? "ctx"
                     : !dst ? "dst"
                            : "src");
#ifdef BSA_HAVE_CUDA
  if (ctx->device == BSA_DEVICE_CUDA) return bsa__cuda_copy(ctx, dst, src, bytes, to_dev);
#endif
  (void)to_dev;
  if (bytes) memmove(dst, src, bytes);
  return BSA_OK;
}

bsa_status bsa_ctx_copy_to_device(bsa_ctx *ctx, void *dst, const void *src, size_t bytes) {
  return copy(ctx, dst, src, bytes, 1);
}

bsa_status bsa_ctx_copy_to_host(bsa_ctx *ctx, void *dst, const void *src, size_t bytes) {
  return copy(ctx, dst, src, bytes, 0);
}

bsa_status bsa_ctx_synchronize(bsa_ctx *ctx) {
  if (!ctx) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "bsa_ctx_synchronize: ctx is NULL");
#ifdef BSA_HAVE_CUDA
  if (ctx->device == BSA_DEVICE_CUDA) return bsa__cuda_synchronize(ctx);
#endif
  return BSA_OK;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

bsa_status bsa_plan_time(bsa_plan *plan, const void *q, const void *k, const void *v, void *o,
                         float *lse, int warmup, int reps, double *median_ms, double *min_ms) {
  if (!plan || !median_ms)
    return bsa__fail(plan ? plan->ctx : NULL, BSA_ERR_INVALID_ARG, "bsa_plan_time: %s is NULL",
                     !plan ? "plan" : "median_ms");
  if (reps < 1 || warmup < 0)
    return bsa__fail(plan->ctx, BSA_ERR_INVALID_ARG,
                     "bsa_plan_time: reps = %d must be >= 1 and warmup = %d >= 0", reps, warmup);
#ifdef BSA_HAVE_CUDA
  if (plan->ctx->device == BSA_DEVICE_CUDA)
    return bsa__cuda_time(plan, q, k, v, o, lse, warmup, reps, median_ms, min_ms);
#endif
  for (int i = 0; i < warmup; i++) {
    bsa_status st = bsa_plan_run(plan, q, k, v, o, lse);
    if (st != BSA_OK) return st;
  }
  double *t = malloc(sizeof(double) * (size_t)reps);
  if (!t) return bsa__fail(plan->ctx, BSA_ERR_NOMEM, "bsa_plan_time: out of memory");
  for (int i = 0; i < reps; i++) {
    double t0 = bsa__now_ms();
    bsa_status st = bsa_plan_run(plan, q, k, v, o, lse);
    if (st != BSA_OK) {
      free(t);
      return st;
    }
    t[i] = bsa__now_ms() - t0;
  }
  qsort(t, (size_t)reps, sizeof(double), cmp_double);
  *median_ms = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
  if (min_ms) *min_ms = t[0];
  free(t);
  return BSA_OK;
}
