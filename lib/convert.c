/*
 * lib/convert.c - float16 / bfloat16 conversions on the host.
 */
#include "config.h"

#include <string.h>

#include "internal.h"

size_t bsa_dtype_size(bsa_dtype dtype) { return dtype == BSA_DTYPE_F32 ? 4 : 2; }

const char *bsa_dtype_name(bsa_dtype dtype) {
  switch (dtype) {
    case BSA_DTYPE_F32:
      return "f32";
    case BSA_DTYPE_F16:
      return "f16";
    case BSA_DTYPE_BF16:
      return "bf16";
  }
  return "?";
}

bsa_status bsa_dtype_parse(const char *name, bsa_dtype *out) {
  if (!name || !out)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "dtype: name and out must not be NULL");
  if (!strcmp(name, "f32") || !strcmp(name, "float32"))
    *out = BSA_DTYPE_F32;
  else if (!strcmp(name, "f16") || !strcmp(name, "float16"))
    *out = BSA_DTYPE_F16;
  else if (!strcmp(name, "bf16") || !strcmp(name, "bfloat16"))
    *out = BSA_DTYPE_BF16;
  else
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "dtype = '%s' is not one of f32, f16, bf16", name);
  return BSA_OK;
}

static inline uint32_t f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static inline float bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/* IEEE binary16 with round to nearest even, subnormals, inf and NaN.
 * The 24-bit significand is shifted right by 13 (normal halves) or more
 * (subnormal halves) and rounded on the bits shifted out. */
uint16_t bsa_f32_to_f16(float x) {
  uint32_t u = f32_bits(x);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t absu = u & 0x7fffffffu;
  if (absu >= 0x7f800000u) /* inf or NaN (NaN stays quiet NaN) */
    return (uint16_t)(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0));
  if (absu == 0) return sign;
  int32_t e = (int32_t)(absu >> 23) - 127 + 15; /* biased half exponent */
  uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
  if ((absu >> 23) == 0) { /* f32 subnormal: far below half's range */
    return sign;
  }
  if (e >= 31) return (uint16_t)(sign | 0x7c00u);
  int shift = e > 0 ? 13 : 13 + (1 - e);
  if (shift > 24) return sign;
  uint32_t r = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u))) r++;
  if (e > 0) return (uint16_t)(sign | (uint16_t)((((uint32_t)e - 1u) << 10) + r));
  return (uint16_t)(sign | r);
}

float bsa_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    float f = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24 */
    return sign ? -f : f;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t bsa_f32_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float bsa_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* One loop per (source, destination) pair: the dtype tests stay out of the
 * element loop (the CPU backend converts every row through here). */
void bsa_convert(void *dst, bsa_dtype dst_t, const void *src, bsa_dtype src_t, size_t n) {
  if (dst_t == src_t) {
    memmove(dst, src, n * bsa_dtype_size(src_t));
    return;
  }
  const uint16_t *sh = src;
  uint16_t *dh = dst;
  if (dst_t == BSA_DTYPE_F32) {
    float *d = dst;
    if (src_t == BSA_DTYPE_F16)
      for (size_t i = 0; i < n; i++) d[i] = bsa_f16_to_f32(sh[i]);
    else
      for (size_t i = 0; i < n; i++) d[i] = bsa_bf16_to_f32(sh[i]);
  } else if (src_t == BSA_DTYPE_F32) {
    const float *s = src;
    if (dst_t == BSA_DTYPE_F16)
      for (size_t i = 0; i < n; i++) dh[i] = bsa_f32_to_f16(s[i]);
    else
      for (size_t i = 0; i < n; i++) dh[i] = bsa_f32_to_bf16(s[i]);
  } else if (src_t == BSA_DTYPE_F16) { /* to bf16 */
    for (size_t i = 0; i < n; i++) dh[i] = bsa_f32_to_bf16(bsa_f16_to_f32(sh[i]));
  } else { /* bf16 to f16 */
    for (size_t i = 0; i < n; i++) dh[i] = bsa_f32_to_f16(bsa_bf16_to_f32(sh[i]));
  }
}
