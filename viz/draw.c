/*
 * viz/draw.c - the pieces every figure uses: the colour map, text, ticks,
 * area-averaged data areas, panel axes, colour bars and legends.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vizint.h"

const uint8_t bsa_viz_dropped_rgb[3] = {24, 24, 28};
const uint8_t bsa_viz_kept_rgb[3] = {240, 200, 40};

/* ---- colour map ------------------------------------------------------------
 * OKLab (Ottosson 2020): linear sRGB -> LMS -> cube root -> Lab, and back.
 * The map runs through five anchor colours with a uniform Catmull-Rom
 * spline in OKLab, whose lightness rises almost linearly (0.29 .. 0.92), so
 * equal steps of t look like equal steps of colour. */

static double srgb_to_linear(double c) {
  return c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}

static double linear_to_srgb(double c) {
  if (c <= 0) return 0;
  if (c >= 1) return 1;
  return c <= 0.0031308 ? 12.92 * c : 1.055 * pow(c, 1 / 2.4) - 0.055;
}

static void rgb_to_oklab(const double rgb[3], double lab[3]) {
  double r = srgb_to_linear(rgb[0]), g = srgb_to_linear(rgb[1]), b = srgb_to_linear(rgb[2]);
  double l = cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
  double m = cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
  double s = cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
  lab[0] = 0.2104542553 * l + 0.7936177850 * m - 0.0040720468 * s;
  lab[1] = 1.9779984951 * l - 2.4285922050 * m + 0.4505937099 * s;
  lab[2] = 0.0259040371 * l + 0.7827717662 * m - 0.8086757660 * s;
}

static void oklab_to_rgb(const double lab[3], double rgb[3]) {
  double l = lab[0] + 0.3963377774 * lab[1] + 0.2158037573 * lab[2];
  double m = lab[0] - 0.1055613458 * lab[1] - 0.0638541728 * lab[2];
  double s = lab[0] - 0.0894841775 * lab[1] - 1.2914855480 * lab[2];
  l = l * l * l;
  m = m * m * m;
  s = s * s * s;
  rgb[0] = linear_to_srgb(4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s);
  rgb[1] = linear_to_srgb(-1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s);
  rgb[2] = linear_to_srgb(-0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s);
}

#define CMAP_N 1024
static float cmap_table[CMAP_N][3];
static pthread_once_t cmap_once = PTHREAD_ONCE_INIT;

static void cmap_build(void) {
  static const uint8_t anchors[5][3] = {{0x44, 0x01, 0x54},
                                        {0x3b, 0x52, 0x8b},
                                        {0x21, 0x90, 0x8c},
                                        {0x5d, 0xc8, 0x63},
                                        {0xfd, 0xe7, 0x25}};
  double P[7][3]; /* anchors with one extrapolated point at each end */
  for (int i = 0; i < 5; i++) {
    double c[3] = {anchors[i][0] / 255.0, anchors[i][1] / 255.0, anchors[i][2] / 255.0};
    rgb_to_oklab(c, P[i + 1]);
  }
  for (int d = 0; d < 3; d++) {
    P[0][d] = 2 * P[1][d] - P[2][d];
    P[6][d] = 2 * P[5][d] - P[4][d];
  }
  for (int k = 0; k < CMAP_N; k++) {
    double t = (double)k / (CMAP_N - 1) * 4;
    int seg = k * 4 / CMAP_N; /* 0..3; t - seg in [0, 1] */
    double u = t - seg, u2 = u * u, u3 = u2 * u;
    const double *p0 = P[seg], *p1 = P[seg + 1], *p2 = P[seg + 2], *p3 = P[seg + 3];
    double lab[3], rgb[3];
    for (int d = 0; d < 3; d++)
      lab[d] = 0.5 * (2 * p1[d] + (-p0[d] + p2[d]) * u +
                      (2 * p0[d] - 5 * p1[d] + 4 * p2[d] - p3[d]) * u2 +
                      (-p0[d] + 3 * p1[d] - 3 * p2[d] + p3[d]) * u3);
    oklab_to_rgb(lab, rgb);
    for (int d = 0; d < 3; d++) cmap_table[k][d] = (float)(rgb[d] * 255.0);
  }
}

static void cmap_float(double t, float out[3]) {
  pthread_once(&cmap_once, cmap_build);
  if (!(t > 0)) t = 0; /* also NaN */
  if (t > 1) t = 1;
  double f = t * (CMAP_N - 1);
  int i = (int)f;
  if (i >= CMAP_N - 1) i = CMAP_N - 2;
  double u = f - i;
  for (int d = 0; d < 3; d++)
    out[d] = (float)((1 - u) * cmap_table[i][d] + u * cmap_table[i + 1][d]);
}

void bsa_viz_colormap(double t, uint8_t rgb[3]) {
  float c[3];
  cmap_float(t, c);
  for (int d = 0; d < 3; d++) rgb[d] = (uint8_t)lrintf(c[d]);
}

void bsa_viz_series_rgb(int32_t i, uint8_t rgb[3]) {
  /* Okabe & Ito's colour-blind-safe set (black and yellow left out: black
   * is the reference line, yellow is unreadable on white). */
  static const uint8_t pal[6][3] = {{0, 114, 178},   {213, 94, 0},   {0, 158, 115},
                                    {204, 121, 167}, {86, 180, 233}, {230, 159, 0}};
  if (i < 0) i = -i;
  memcpy(rgb, pal[i % 6], 3);
}

double bsa__viz_scale_t(double v, double lo, double hi, int log_scale) {
  if (log_scale) {
    if (!(v > 0)) return 0;
    v = log10(v);
    lo = log10(lo);
    hi = log10(hi);
  }
  if (!(hi > lo)) return 1; /* one value: the top of the map */
  double t = (v - lo) / (hi - lo);
  return t < 0 ? 0 : t > 1 ? 1 : t;
}

void bsa_viz_score_rgb(const bsa_viz_layout *layout, double s, uint8_t rgb[3]) {
  if (!layout->has_scores) {
    memcpy(rgb, bsa_viz_kept_rgb, 3);
    return;
  }
  bsa_viz_colormap(bsa__viz_scale_t(s, layout->score_lo, layout->score_hi, layout->score_log), rgb);
}

/* ---- text ----------------------------------------------------------------- */

void bsa__viz_font(cairo_t *cr, double size, int bold) {
  cairo_select_font_face(cr, BSA__VIZ_FONT, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double bsa__viz_text_width(cairo_t *cr, const char *s) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s, &te);
  return te.x_advance;
}

void bsa__viz_text(cairo_t *cr, double x, double y, double ax, double ay, const char *s) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  double w = bsa__viz_text_width(cr, s);
  double base = y + fe.ascent - ay * (fe.ascent + fe.descent);
  cairo_move_to(cr, round(x - ax * w), round(base));
  cairo_show_text(cr, s);
}

void bsa__viz_text_up(cairo_t *cr, double x, double y, const char *s) {
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, -M_PI / 2);
  bsa__viz_text(cr, 0, 0, 0.5, 0.5, s);
  cairo_restore(cr);
}

void bsa__viz_text_fit(cairo_t *cr, const char *s, double width, char *buf, size_t n) {
  snprintf(buf, n, "%s", s);
  if (bsa__viz_text_width(cr, buf) <= width) return;
  size_t len = strlen(buf);
  static const char ell[] = "\xe2\x80\xa6"; /* U+2026 */
  while (len > 0) {
    len--;
    /* Cut on a UTF-8 character boundary. */
    while (len > 0 && ((unsigned char)buf[len] & 0xc0) == 0x80) len--;
    if (len + sizeof ell > n) continue;
    memcpy(buf + len, ell, sizeof ell);
    if (bsa__viz_text_width(cr, buf) <= width) return;
  }
  buf[0] = 0;
}

/* ---- ticks ---------------------------------------------------------------- */

int bsa__viz_ticks_linear(double lo, double hi, int max, double *ticks) {
  if (max < 2) max = 2;
  if (!(hi > lo)) {
    ticks[0] = lo;
    return 1;
  }
  double raw = (hi - lo) / (max - 1);
  double mag = pow(10, floor(log10(raw)));
  static const double steps[] = {1, 2, 5, 10};
  double step = 10 * mag;
  for (int i = 0; i < 4; i++)
    if (steps[i] * mag >= raw * (1 - 1e-9)) {
      step = steps[i] * mag;
      break;
    }
  int n = 0;
  for (double v = ceil(lo / step - 1e-9) * step; v <= hi * (1 + 1e-12) + 1e-12 && n < max + 1;
       v += step)
    ticks[n++] = fabs(v) < step * 1e-9 ? 0 : v;
  return n;
}

int bsa__viz_ticks_log(double lo, double hi, int max, double *ticks, double *minor, int max_minor,
                       int *num_minor) {
  int n = 0, nm = 0;
  double l0 = log10(lo), l1 = log10(hi);
  if (l1 - l0 < 2.2) {
    /* Up to about two decades: 1, 2, 5 steps of each decade. */
    static const double m[] = {1, 2, 5};
    for (int e = (int)floor(l0) - 1; e <= (int)ceil(l1); e++)
      for (int i = 0; i < 3; i++) {
        double v = m[i] * pow(10, e);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9) && n < max) ticks[n++] = v;
      }
    if (n >= 2) {
      if (num_minor) *num_minor = 0;
      return n;
    }
    n = 0;
  }
  int e0 = (int)ceil(l0 - 1e-9), e1 = (int)floor(l1 + 1e-9);
  int every = 1;
  while ((e1 - e0) / every + 1 > max) every++;
  for (int e = e0; e <= e1; e += every) ticks[n++] = pow(10, e);
  if (minor && every == 1)
    for (int e = (int)floor(l0); e <= e1; e++)
      for (int k = 2; k <= 9; k++) {
        double v = k * pow(10, e);
        if (v >= lo && v <= hi && nm < max_minor) minor[nm++] = v;
      }
  if (num_minor) *num_minor = nm;
  return n;
}

void bsa__viz_fmt_tokens(double v, char *buf, size_t n) {
  double a = fabs(v);
  if (a < 10000) {
    snprintf(buf, n, "%.0f", v);
  } else if (a < 1e6) {
    double k = v / 1000;
    snprintf(buf, n, fabs(k - round(k)) < 0.05 ? "%.0fk" : "%.1fk", k);
  } else {
    double m = v / 1e6;
    snprintf(buf, n, fabs(m - round(m)) < 0.05 ? "%.0fM" : "%.1fM", m);
  }
}

void bsa__viz_fmt_tick(double v, double step, int log_axis, char *buf, size_t n) {
  if (log_axis && v > 0) {
    double e = log10(v);
    int ie = (int)lround(e);
    if (fabs(e - ie) < 1e-9 && (log_axis == 2 || ie < -2 || ie > 3)) {
      /* 10 with a superscript exponent. */
      static const char *sup[] = {"\xe2\x81\xb0", "\xc2\xb9",     "\xc2\xb2",     "\xc2\xb3",
                                  "\xe2\x81\xb4", "\xe2\x81\xb5", "\xe2\x81\xb6", "\xe2\x81\xb7",
                                  "\xe2\x81\xb8", "\xe2\x81\xb9"};
      char digits[16];
      snprintf(digits, sizeof digits, "%d", abs(ie));
      size_t k = (size_t)snprintf(buf, n, "10%s", ie < 0 ? "\xe2\x81\xbb" : "");
      for (const char *d = digits; *d && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s", sup[*d - '0']);
      return;
    }
    snprintf(buf, n, "%g", v);
    return;
  }
  if (v == 0) {
    snprintf(buf, n, "0");
    return;
  }
  int dec = step > 0 ? (int)ceil(-log10(step) - 1e-9) : 2;
  if (dec < 0) dec = 0;
  if (dec > 6) dec = 6;
  snprintf(buf, n, "%.*f", dec, v);
}

int32_t bsa__viz_grid_cols(int32_t n, double pw, double ph) {
  int32_t best = 1;
  double best_cost = INFINITY;
  for (int32_t c = 1; c <= n; c++) {
    int32_t r = (n + c - 1) / c;
    double cost = (double)(c * r - n) + 2 * fabs(log(c * pw / (r * ph)) - log(1.6));
    if (cost < best_cost - 1e-9) {
      best_cost = cost;
      best = c;
    }
  }
  return best;
}

/* ---- data areas ------------------------------------------------------------ */

bsa_status bsa__viz_axis_weights(int64_t S, int64_t nb, const int32_t *sizes,
                                 const int32_t *block_of, int32_t n, float **W) {
  *W = NULL;
  if ((double)n * (double)nb > (double)(1 << 28))
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "%lld blocks across %d pixels is too many to draw (limit "
                     "%d block-pixels)",
                     (long long)nb, (int)n, 1 << 28);
  float *w = calloc((size_t)n * (size_t)nb, sizeof(float));
  if (!w)
    return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory (%d x %lld weights)", (int)n,
                     (long long)nb);
  double scale = (double)n / (double)S; /* pixels per token */
  if (sizes) {
    int64_t start = 0;
    for (int64_t b = 0; b < nb; b++) {
      int64_t end = start + sizes[b];
      if (end > start) {
        int32_t p0 = (int32_t)floor(start * scale);
        int32_t p1 = (int32_t)ceil(end * scale);
        if (p1 > n) p1 = n;
        for (int32_t p = p0; p < p1; p++) {
          double lo = (double)p / scale, hi = (double)(p + 1) / scale;
          double ov = fmin(hi, (double)end) - fmax(lo, (double)start);
          if (ov > 0) w[(size_t)p * nb + b] += (float)ov;
        }
      }
      start = end;
    }
  } else {
    for (int64_t t = 0; t < S; t++) {
      int64_t b = block_of[t];
      int32_t p0 = (int32_t)floor(t * scale);
      int32_t p1 = (int32_t)ceil((t + 1) * scale);
      if (p1 > n) p1 = n;
      for (int32_t p = p0; p < p1; p++) {
        double lo = (double)p / scale, hi = (double)(p + 1) / scale;
        double ov = fmin(hi, (double)(t + 1)) - fmax(lo, (double)t);
        if (ov > 0) w[(size_t)p * nb + b] += (float)ov;
      }
    }
  }
  /* Normalise each pixel's weights to sum to one (its coverage). */
  for (int32_t p = 0; p < n; p++) {
    double sum = 0;
    for (int64_t b = 0; b < nb; b++) sum += w[(size_t)p * nb + b];
    if (sum > 0)
      for (int64_t b = 0; b < nb; b++) w[(size_t)p * nb + b] = (float)(w[(size_t)p * nb + b] / sum);
  }
  *W = w;
  return BSA_OK;
}

bsa_status bsa__viz_fill_blocks(bsa__viz_canvas *cv, int32_t x, int32_t y, int32_t w, int32_t h,
                                int64_t MB, int64_t NB, const float *Wr, const float *Wc,
                                const float *rgb) {
  /* pixel = Wr [h, MB] . C [MB, NB] . Wc^T [NB, w], per channel, as two
   * matrix products (T = C Wc^T first: [MB, w]). */
  float *T = malloc(sizeof(float) * (size_t)MB * (size_t)w);
  float *P = malloc(sizeof(float) * 3 * (size_t)h * (size_t)w);
  if (!T || !P) {
    free(T);
    free(P);
    return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory (%lld x %d image planes)", (long long)MB,
                     (int)w);
  }
  for (int c = 0; c < 3; c++) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)MB, w, (int)NB, 1.0f,
                rgb + (size_t)c * MB * NB, (int)NB, Wc, (int)NB, 0.0f, T, w);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, h, w, (int)MB, 1.0f, Wr, (int)MB, T, w,
                0.0f, P + (size_t)c * h * w, w);
  }
  cairo_surface_flush(cv->surface);
  unsigned char *data = cairo_image_surface_get_data(cv->surface);
  int stride = cairo_image_surface_get_stride(cv->surface);
  for (int32_t py = 0; py < h; py++) {
    uint32_t *row = (uint32_t *)(data + (size_t)(y + py) * stride) + x;
    for (int32_t px = 0; px < w; px++) {
      uint32_t v = 0xff000000u;
      for (int c = 0; c < 3; c++) {
        float f = P[(size_t)c * h * w + (size_t)py * w + px];
        long q = lrintf(f);
        q = q < 0 ? 0 : q > 255 ? 255 : q;
        v |= (uint32_t)q << (16 - 8 * c);
      }
      row[px] = v;
    }
  }
  cairo_surface_mark_dirty(cv->surface);
  free(T);
  free(P);
  return BSA_OK;
}

/* ---- axes, colour bars, legends ------------------------------------------- */

void bsa__viz_panel_axes(cairo_t *cr, const bsa_viz_panel *p, double font_size) {
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_rectangle(cr, p->x - 0.5, p->y - 0.5, p->w + 1, p->h + 1);
  cairo_stroke(cr);
  bsa__viz_font(cr, font_size, 0);
  double ticks[16];
  char buf[32];
  /* Keys along the bottom: room for about one label per 55 pixels. */
  int maxx = p->w / 45 + 1;
  if (maxx > 8) maxx = 8;
  int n = bsa__viz_ticks_linear(0, (double)p->cols, maxx < 2 ? 2 : maxx, ticks);
  for (int i = 0; i < n; i++) {
    double px = p->x + ticks[i] * p->w / (double)p->cols;
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_move_to(cr, round(px) + 0.5, p->y + p->h + 0.5);
    cairo_line_to(cr, round(px) + 0.5, p->y + p->h + 4.5);
    cairo_stroke(cr);
    bsa__viz_fmt_tokens(ticks[i], buf, sizeof buf);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    bsa__viz_text(cr, px, p->y + p->h + 6, 0.5, 0, buf);
  }
  int maxy = p->h / 36 + 1;
  if (maxy > 8) maxy = 8;
  n = bsa__viz_ticks_linear(0, (double)p->rows, maxy < 2 ? 2 : maxy, ticks);
  for (int i = 0; i < n; i++) {
    double py = p->y + ticks[i] * p->h / (double)p->rows;
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_move_to(cr, p->x - 4.5, round(py) + 0.5);
    cairo_line_to(cr, p->x - 0.5, round(py) + 0.5);
    cairo_stroke(cr);
    bsa__viz_fmt_tokens(ticks[i], buf, sizeof buf);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    bsa__viz_text(cr, p->x - 6, py, 1, 0.5, buf);
  }
}

void bsa__viz_colorbar(cairo_t *cr, double x, double y, double w, double h, double lo, double hi,
                       int log_scale, const char *label) {
  int ih = (int)h;
  for (int i = 0; i < ih; i++) {
    float c[3];
    cmap_float(1.0 - (i + 0.5) / ih, c);
    cairo_set_source_rgb(cr, c[0] / 255, c[1] / 255, c[2] / 255);
    cairo_rectangle(cr, x, y + i, w, 1);
    cairo_fill(cr);
  }
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_rectangle(cr, x - 0.5, y - 0.5, w + 1, ih + 1);
  cairo_stroke(cr);

  bsa__viz_font(cr, 11, 0);
  double ticks[32], minor[64];
  int nm = 0, n;
  int max = ih / 28 + 1;
  if (max > 10) max = 10;
  if (max < 2) max = 2;
  if (log_scale)
    n = bsa__viz_ticks_log(lo, hi, max, ticks, minor, 64, &nm);
  else
    n = bsa__viz_ticks_linear(lo, hi, max, ticks);
  if (!(hi > lo)) { /* a single value: one tick in the middle of the bar */
    n = 1;
    ticks[0] = lo;
  }
  double step = n > 1 ? fabs(ticks[1] - ticks[0]) : fabs(lo) / 10;
  double label_w = 0;
  char buf[48];
  for (int i = 0; i < n; i++) {
    double t = hi > lo ? bsa__viz_scale_t(ticks[i], lo, hi, log_scale) : 0.5;
    double ty = y + (1 - t) * ih;
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_move_to(cr, x + w, round(ty) + 0.5);
    cairo_line_to(cr, x + w + 4, round(ty) + 0.5);
    cairo_stroke(cr);
    bsa__viz_fmt_tick(ticks[i], step, log_scale && hi / lo >= 1000 ? 2 : log_scale, buf,
                      sizeof buf);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    bsa__viz_text(cr, x + w + 6, ty, 0, 0.5, buf);
    double tw = bsa__viz_text_width(cr, buf);
    if (tw > label_w) label_w = tw;
  }
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  for (int i = 0; i < nm; i++) {
    double ty = y + (1 - bsa__viz_scale_t(minor[i], lo, hi, log_scale)) * ih;
    cairo_move_to(cr, x + w, round(ty) + 0.5);
    cairo_line_to(cr, x + w + 2, round(ty) + 0.5);
    cairo_stroke(cr);
  }
  if (label) {
    bsa__viz_font(cr, 12, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    bsa__viz_text_up(cr, x + w + 6 + label_w + 12, y + ih / 2.0, label);
  }
}

void bsa__viz_swatch(cairo_t *cr, double x, double y, double size, const uint8_t rgb[3],
                     const char *text) {
  cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
  cairo_rectangle(cr, x, y, size, size);
  cairo_fill(cr);
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_rectangle(cr, x - 0.5, y - 0.5, size + 1, size + 1);
  cairo_stroke(cr);
  bsa__viz_font(cr, 11, 0);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  bsa__viz_text(cr, x + size + 6, y + size / 2, 0, 0.5, text);
}
