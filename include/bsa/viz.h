/*
 * bsa/viz.h - PNG figures: block masks per head, block attention-mass maps,
 * and speedup / recall charts from the experiment log.
 *
 * Every render draws with Cairo (real text in DejaVu Sans) on an opaque
 * white background and encodes the PNG with libpng, adding tEXt chunks
 * (iTXt for text that is not Latin-1): "Software" (bsa version), "Title"
 * (the figure title) and whatever the caller passes in meta (the CLI adds
 * the command line, the run id and the inputs).  The file is written to a
 * temporary name in the destination folder and renamed over png_path only
 * when complete, so a failure never leaves a partial file and never
 * replaces an existing one.
 *
 * Token axes are drawn to scale and rendered by area averaging: each pixel
 * of a data area is the coverage-weighted mean (in sRGB) of the colours of
 * the (query token, key token) cells under it, so a 75k-token sequence with
 * 1000 blocks per axis loses no block, however small the panel.
 *
 * Errors: every call returns a bsa_status; the message, naming the argument,
 * the value and the limit (or the file and the system's reason), is in
 * bsa_last_error().  BSA_ERR_INVALID_ARG: bad options or inconsistent
 * records; BSA_ERR_IO: the PNG could not be written; BSA_ERR_NOMEM.
 * Nothing here prints.  Functions are thread-safe for distinct arguments.
 */
#ifndef BSA_VIZ_H
#define BSA_VIZ_H

#include <stdint.h>

#include "bsa/core.h"
#include "bsa/runlog.h"
#include "bsa/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One PNG text chunk; both strings UTF-8, key 1..79 bytes of printable
 * Latin-1 without leading, trailing or double spaces (the PNG rule). */
typedef struct bsa_viz_text {
  const char *key;
  const char *value;
} bsa_viz_text;

/* ---- colours ----------------------------------------------------------- */

/* The perceptual colour map used for scores: a viridis-like map computed in
 * the OKLab colour space through the published viridis anchor colours
 * (#440154, #3b528b, #21908c, #5dc863, #fde725 at t = 0, 1/4, ..., 1) with
 * lightness increasing monotonically.  t is clamped to [0, 1]; rgb gets
 * 8-bit sRGB. */
void bsa_viz_colormap(double t, uint8_t rgb[3]);

/* Fixed colours of mask figures (8-bit sRGB). */
extern const uint8_t bsa_viz_dropped_rgb[3]; /* dropped block: near black */
extern const uint8_t bsa_viz_kept_rgb[3];    /* kept block without scores */

/* Colour of series i of a chart (a colour-blind-safe palette, cycled). */
void bsa_viz_series_rgb(int32_t i, uint8_t rgb[3]);

/* ---- geometry ------------------------------------------------------------
 * A figure is a set of panels, each a data area of whole pixels
 * [x, x + w) x [y, y + h).  Token (query q, key k), real-valued, lies at
 * pixel coordinates (x + k * w / cols, y + q * h / rows): queries go down,
 * keys go right, and the pixel (px, py) covers key tokens
 * [(px - x) * cols / w, (px - x + 1) * cols / w) and likewise for rows. */
typedef struct bsa_viz_panel {
  int32_t head; /* the kv head shown */
  int32_t x, y, w, h;
  int64_t rows; /* query tokens (qo_len) */
  int64_t cols; /* key tokens (kv_len) */
} bsa_viz_panel;

typedef struct bsa_viz_layout {
  int32_t width, height; /* the image, pixels */
  int32_t num_panels;
  bsa_viz_panel *panels; /* [num_panels], owned: bsa_viz_layout_free */
  /* Colour scale of scores: a score s maps to bsa_viz_colormap(t) with
   * t = (s - lo) / (hi - lo), or on log10 values when score_log (clamped
   * to [0, 1]).  For masks, lo and hi are the least and greatest finite
   * score of the kept blocks of non-zero area of the shown heads; the scale
   * is logarithmic when they are positive and hi >= 10 lo, and then lo is
   * raised to at least hi * 1e-6.  has_scores = 0: kept blocks are
   * bsa_viz_kept_rgb. */
  int32_t has_scores;
  int32_t score_log;
  double score_lo, score_hi;
} bsa_viz_layout;

void bsa_viz_layout_free(bsa_viz_layout *layout); /* accepts NULL; keeps
                                                     the struct itself */

/* Pixel coordinates (real-valued) of the token position (q, k) of panel p:
 * (x + k * w / cols, y + q * h / rows).  The cell of integer tokens (i, j)
 * is centred on position (i + 0.5, j + 0.5); the pixel holding that centre
 * is (floor(*px), floor(*py)). */
void bsa_viz_panel_point(const bsa_viz_panel *p, double q, double k, double *px, double *py);

/* The colour of a kept block with score s under layout's colour scale. */
void bsa_viz_score_rgb(const bsa_viz_layout *layout, double s, uint8_t rgb[3]);

/* ---- masks ---------------------------------------------------------------
 * One panel per kv head in a grid; variable block sizes to scale; kept
 * blocks coloured by block_scores (with a colour bar) or solid without
 * scores; dropped blocks dark.  Each panel is titled with its head, its
 * size-weighted density (kept area / Sq x Sk) and its recall when
 * head_recall gives it; the figure title names the record and method. */

typedef enum bsa_viz_order {
  BSA_VIZ_ORDER_PERMUTED = 0, /* as stored: rows/cols in permuted order */
  BSA_VIZ_ORDER_ORIGINAL = 1  /* token order: cell (i, j) is kept iff the
                                 block holding permuted positions
                                 (q_inv[i], k_inv[j]) is kept */
} bsa_viz_order;

typedef struct bsa_viz_masks_opts {
  bsa_viz_order order;
  const int32_t *heads; /* kv heads to draw, in this order; NULL = all */
  int32_t num_heads;
  /* [num_kv_heads of the record] recall per kv head, NaN = unknown; NULL
   * when none is known. */
  const double *head_recall;
  const char *method;       /* shown in the title; NULL = not shown */
  const char *subtitle;     /* a second title line (e.g. parameters); NULL */
  int32_t panel_px;         /* longer side of a panel's data area; 0 = chosen
                               from the number of panels (150..480) */
  const bsa_viz_text *meta; /* extra PNG text chunks, may be NULL */
  int32_t num_meta;
} bsa_viz_masks_opts;

/* The layout bsa_viz_masks draws for rec and opts (opts may be NULL).
 * Validates rec: heads in range and not repeated, sizes non-negative and
 * summing to qo_len / kv_len for every head, permutations that are
 * permutations (when order is ORIGINAL).  On failure *out is zeroed. */
bsa_status bsa_viz_masks_layout(const bsa_mask_record *rec, const bsa_viz_masks_opts *opts,
                                bsa_viz_layout *out);

/* Renders the masks figure of rec to png_path.  rec is borrowed. */
bsa_status bsa_viz_masks(const bsa_mask_record *rec, const bsa_viz_masks_opts *opts,
                         const char *png_path);

/* Size-weighted density of kv head h of rec (kept area / Sq x Sk). */
double bsa_viz_mask_density(const bsa_mask_record *rec, int32_t h);

/* ---- block attention mass ------------------------------------------------
 * mass[bi, bj] (float [MB, NB], MB = ceil(Sq / block), NB = ceil(Sk /
 * block)) is the exact softmax attention mass that a query of row block bi
 * gives to the keys of column block bj, averaged over the rows of bi and
 * over the query heads of kv head h's group: each row of mass sums to 1
 * (0 for rows whose queries see no key).  Logits are sm_scale * q.k
 * (sm_scale 0 means 1/sqrt(D)), causal as in bsa/core.h when rec->causal.
 * block: 1 .. max(Sq, Sk).  Computed in row tiles with CBLAS sgemm (the
 * BLAS's own threads); memory O(tile * Sk), never Sq * Sk.
 * mass is written only on success. */
bsa_status bsa_viz_block_mass(const bsa_trace_record *rec, int32_t kv_head, int64_t block,
                              float *mass);

/* Per-kv-head exact recall of a mask record on a trace record: the share of
 * the softmax attention mass (averaged over all query rows that see a key
 * and over the group's query heads) that falls in kept blocks, with the
 * permutation applied.  recall [Hkv], written only on success.  The
 * records must agree in Hkv, Sq and Sk. */
bsa_status bsa_viz_mask_recall(const bsa_trace_record *trace, const bsa_mask_record *mask,
                               double *recall);

typedef struct bsa_viz_scores_opts {
  int32_t kv_head;  /* default 0 */
  int64_t block;    /* tokens per block; 0 = 64 */
  int32_t panel_px; /* longer side of the data area; 0 = 560 */
  const bsa_viz_text *meta;
  int32_t num_meta;
} bsa_viz_scores_opts;

/* Layout of the score map of rec (one panel; has_scores and the colour
 * scale are set by bsa_viz_scores, which knows the masses: the layout
 * alone reports has_scores = 0). */
bsa_status bsa_viz_scores_layout(const bsa_trace_record *rec, const bsa_viz_scores_opts *opts,
                                 bsa_viz_layout *out);

/* Computes the block mass of opts->kv_head and renders it as a heat map on
 * a log colour scale with axes in tokens.  layout_out (may be NULL)
 * receives the layout with the colour scale used (free it with
 * bsa_viz_layout_free). */
bsa_status bsa_viz_scores(const bsa_trace_record *rec, const bsa_viz_scores_opts *opts,
                          const char *png_path, bsa_viz_layout *layout_out);

/* ---- charts ----------------------------------------------------------- */

typedef struct bsa_viz_series {
  const char *label;
  int64_t num_points;
  const double *x; /* [num_points] */
  const double *y; /* [num_points] */
  int32_t connect; /* 1: a line through the points in order of x */
} bsa_viz_series;

typedef struct bsa_viz_chart {
  const char *title;
  const char *subtitle; /* may be NULL */
  const char *x_label;
  const char *y_label;
  int32_t log_x, log_y;
  const bsa_viz_series *series;
  int32_t num_series;
  /* Reference curve y = ref_coef * x^ref_pow (dashed), drawn when
   * ref_label is non-NULL. */
  const char *ref_label;
  double ref_coef, ref_pow;
  /* Axis range; when lo >= hi it is chosen from the data. */
  double x_lo, x_hi, y_lo, y_hi;
  int32_t width, height; /* 0 = 960 x 640 */
  const bsa_viz_text *meta;
  int32_t num_meta;
} bsa_viz_chart;

/* Where the chart's data rectangle lies and the axis ranges in effect. */
typedef struct bsa_viz_chart_geom {
  int32_t width, height;
  double x, y, w, h; /* plot rectangle, pixels */
  double x_lo, x_hi, y_lo, y_hi;
  int32_t log_x, log_y;
} bsa_viz_chart_geom;

/* Validates the chart (points finite, and positive on log axes) and
 * computes its geometry. */
bsa_status bsa_viz_chart_layout(const bsa_viz_chart *chart, bsa_viz_chart_geom *geom);
/* Pixel coordinates of data point (x, y). */
void bsa_viz_chart_point(const bsa_viz_chart_geom *geom, double x, double y, double *px,
                         double *py);
bsa_status bsa_viz_chart_render(const bsa_viz_chart *chart, const char *png_path);

/* ---- charts from the experiment log ----------------------------------- */

typedef struct bsa_viz_log_opts {
  const int64_t *run_ids; /* only these runs; NULL = every finished run */
  int32_t num_run_ids;
  const bsa_viz_text *meta;
  int32_t num_meta;
  int32_t width, height; /* 0 = 960 x 640 */
} bsa_viz_log_opts;

/* Speedup over dense against density, one series per device / layout /
 * kernel / dtype (and sequence length when it varies), from the "speedup"
 * and "density" metrics of successful `bench` runs, with the ideal
 * 1/density line; log-log axes.  geom (may be NULL) receives the chart
 * geometry.  BSA_ERR_INVALID_ARG when the log holds no such metrics (the
 * message says so and names the log). */
bsa_status bsa_viz_speedup(bsa_runlog *log, const char *log_path, const bsa_viz_log_opts *opts,
                           const char *png_path, bsa_viz_chart_geom *geom);

/* Recall against density, one series per mask-generation method, from the
 * per-record "recall" and "density" metrics of successful `eval` runs
 * (records' summary values, head = -1; per-head values are averaged when a
 * run has no summary), with the line recall = density of random
 * selection. */
bsa_status bsa_viz_recall(bsa_runlog *log, const char *log_path, const bsa_viz_log_opts *opts,
                          const char *png_path, bsa_viz_chart_geom *geom);

#ifdef __cplusplus
}
#endif
#endif /* BSA_VIZ_H */
