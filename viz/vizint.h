/*
 * viz/vizint.h - internals shared by the viz sources (not API).
 *
 * A figure is drawn on a canvas: a Cairo ARGB32 image surface painted
 * opaque white.  Data areas are written pixel by pixel (area averaging,
 * bsa__viz_fill_blocks); text, axes and frames are drawn with Cairo on top;
 * bsa__viz_png_write encodes the pixels with libpng.
 */
#ifndef BSA_VIZ_VIZINT_H
#define BSA_VIZ_VIZINT_H

#include <cairo.h>
#include <stdint.h>

#include "bsa/viz.h"
#include "internal.h" /* bsa__fail */

/* Font family of every text. */
#define BSA__VIZ_FONT "DejaVu Sans"

typedef struct bsa__viz_canvas {
  int32_t width, height;
  cairo_surface_t *surface;
  cairo_t *cr;
} bsa__viz_canvas;

/* Creates a width x height canvas painted white.  BSA_ERR_INVALID_ARG past
 * 32767 pixels a side (Cairo's limit), BSA_ERR_NOMEM. */
bsa_status bsa__viz_canvas_create(int32_t width, int32_t height, bsa__viz_canvas *cv);
void bsa__viz_canvas_destroy(bsa__viz_canvas *cv);

/* Encodes the canvas as an 8-bit RGB PNG with text chunks "Software",
 * "Title" (when title is non-NULL) and meta[0..n), into a temporary file
 * beside path renamed over path when complete.  BSA_ERR_IO naming path and
 * the reason; nothing is left behind on failure. */
bsa_status bsa__viz_png_write(bsa__viz_canvas *cv, const char *title, const bsa_viz_text *meta,
                              int32_t num_meta, const char *path);

/* Checks, before long work, that a file can be created beside path
 * (creates and removes a temporary file).  BSA_ERR_IO naming path. */
bsa_status bsa__viz_check_writable(const char *path);

/* ---- text ---------------------------------------------------------------
 * Anchor fractions: ax 0 = left, 0.5 = centre, 1 = right of the text's
 * advance; ay 0 = top, 0.5 = middle, 1 = bottom of the font's ascent +
 * descent box (so labels of one row line up whatever their letters). */
void bsa__viz_font(cairo_t *cr, double size, int bold);
double bsa__viz_text_width(cairo_t *cr, const char *s);
void bsa__viz_text(cairo_t *cr, double x, double y, double ax, double ay, const char *s);
/* Text turned 90 degrees counter-clockwise (reading upwards), centred on
 * (x, y). */
void bsa__viz_text_up(cairo_t *cr, double x, double y, const char *s);
/* Copies s into buf (size n), shortened with an ellipsis to fit width. */
void bsa__viz_text_fit(cairo_t *cr, const char *s, double width, char *buf, size_t n);

/* ---- ticks and numbers ---------------------------------------------------- */

/* Nice linear ticks (1, 2, 5 x 10^k steps) within [lo, hi], at most max;
 * returns the count (>= 2 unless lo == hi). */
int bsa__viz_ticks_linear(double lo, double hi, int max, double *ticks);
/* Log ticks within [lo, hi] (lo > 0): decades, or 1-2-5 steps when the
 * range spans under two decades, at most max.  *minor (size max_minor,
 * may be NULL) receives the unlabelled 2..9 x 10^k marks. */
int bsa__viz_ticks_log(double lo, double hi, int max, double *ticks, double *minor, int max_minor,
                       int *num_minor);
/* Token counts: 0, 512, 8192, 20k, 75.6k, 1.2M. */
void bsa__viz_fmt_tokens(double v, char *buf, size_t n);
/* A tick value with the fewest digits that tell neighbours apart.  Log
 * axes (log_axis 1) print powers of ten past 10^-2 .. 10^3 as 10^k with
 * superscripts; log_axis 2 prints every power of ten so. */
void bsa__viz_fmt_tick(double v, double step, int log_axis, char *buf, size_t n);

/* ---- data areas ------------------------------------------------------------
 * An axis of n pixels over S tokens cut into nb blocks, given either by
 * block sizes (sizes[nb], summing to S: blocks are consecutive intervals) or
 * by a block index per token (block_of[S]).  bsa__viz_axis_weights fills
 * W [n, nb] (float, row-major) with the token coverage of each pixel by
 * each block. */
bsa_status bsa__viz_axis_weights(int64_t S, int64_t nb, const int32_t *sizes,
                                 const int32_t *block_of, int32_t n, float **W);

/* Writes the area-averaged image of a block colour matrix into the data
 * area (x, y, w, h) of the canvas: pixel (px, py) = sum over blocks of
 * Wr[py, bi] * Wc[px, bj] * rgb(bi, bj) / (row coverage * col coverage).
 * rgb: three planes [3, MB, NB] of float sRGB 0..255. */
bsa_status bsa__viz_fill_blocks(bsa__viz_canvas *cv, int32_t x, int32_t y, int32_t w, int32_t h,
                                int64_t MB, int64_t NB, const float *Wr, const float *Wc,
                                const float *rgb);

/* Token axes of a panel: a frame around the data area, ticks in tokens on
 * the left (queries) and bottom (keys). */
void bsa__viz_panel_axes(cairo_t *cr, const bsa_viz_panel *p, double font_size);

/* A vertical colour bar at (x, y, w, h) for [lo, hi] (log10 scale when
 * log_scale), ticks and numbers on its right, label along it. */
void bsa__viz_colorbar(cairo_t *cr, double x, double y, double w, double h, double lo, double hi,
                       int log_scale, const char *label);

/* A legend swatch: a filled square with a frame and text to its right. */
void bsa__viz_swatch(cairo_t *cr, double x, double y, double size, const uint8_t rgb[3],
                     const char *text);

/* The colour-scale position t in [0, 1] of value v. */
double bsa__viz_scale_t(double v, double lo, double hi, int log_scale);

/* Grid of n panels each pw x ph: returns the number of columns that keeps
 * empty cells few and the figure about 1.6 times wider than high. */
int32_t bsa__viz_grid_cols(int32_t n, double pw, double ph);

#endif
