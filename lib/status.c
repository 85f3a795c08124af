/*
 * lib/status.c - status codes, error messages, version.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Fallback message for calls without a context, and a copy of the last
 * context message, so bsa_last_error() always has the newest failure. */
static _Thread_local char tls_msg[BSA__MSG_LEN];

const char *bsa_status_string(bsa_status status) {
  switch (status) {
    case BSA_OK:
      return "ok";
    case BSA_ERR_INVALID_ARG:
      return "invalid argument";
    case BSA_ERR_UNSUPPORTED:
      return "unsupported by this backend";
    case BSA_ERR_NOMEM:
      return "out of memory";
    case BSA_ERR_NO_DEVICE:
      return "no usable CUDA device";
    case BSA_ERR_CUDA:
      return "CUDA error";
    case BSA_ERR_IO:
      return "input/output error";
    case BSA_ERR_FORMAT:
      return "bad file format";
    case BSA_ERR_INTERNAL:
      return "internal error";
  }
  return "unknown status";
}

const char *bsa_last_error(void) { return tls_msg; }

bsa_status bsa__fail(bsa_ctx *ctx, bsa_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
  va_end(ap);
  if (ctx) memcpy(ctx->msg, tls_msg, sizeof ctx->msg);
  return st;
}

void bsa__clear_error(bsa_ctx *ctx) {
  if (ctx) ctx->msg[0] = '\0';
}

const char *bsa_version(void) { return PACKAGE_VERSION; }

const char *bsa_build_info(void) {
#ifdef BSA_HAVE_CUDA
  return "cc: " BSA_CC_VERSION "; cuda: " BSA_CUDA_ARCH;
#else
  return "cc: " BSA_CC_VERSION "; cuda: none";
#endif
}
