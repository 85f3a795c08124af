/*
 * viz/masks.c - block masks per kv head in a grid of panels.
 *
 * Each panel shows one head's Sq x Sk plane with blocks drawn to scale
 * (block_row_sz / block_col_sz), either as stored (permuted order) or in
 * token order through q_perm / k_perm.  Pixels are area averages of the
 * cells under them (bsa__viz_fill_blocks), so no block is lost when there
 * are more blocks than pixels.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vizint.h"

/* Figure margins (pixels). */
enum {
  CELL_LEFT = 50, /* y tick labels of a panel */
  CELL_RIGHT = 18,
  CELL_TOP = 36,       /* two title lines */
  CELL_BOTTOM = 26,    /* x tick labels */
  FIG_LEFT = 30,       /* "query token" */
  FIG_RIGHT_BAR = 130, /* colour bar or legend */
  FIG_BOTTOM = 34,     /* "key token" */
  FIG_MIN_WIDTH = 600
};

void bsa_viz_layout_free(bsa_viz_layout *layout) {
  if (!layout) return;
  free(layout->panels);
  layout->panels = NULL;
  layout->num_panels = 0;
}

void bsa_viz_panel_point(const bsa_viz_panel *p, double q, double k, double *px, double *py) {
  *px = p->x + k * (double)p->w / (double)p->cols;
  *py = p->y + q * (double)p->h / (double)p->rows;
}

double bsa_viz_mask_density(const bsa_mask_record *rec, int32_t h) {
  const int64_t MB = rec->num_block_rows, NB = rec->num_block_cols;
  const uint8_t *m = rec->block_mask_map + (size_t)h * MB * NB;
  const int32_t *rs = rec->block_row_sz + (size_t)h * MB;
  const int32_t *cs = rec->block_col_sz + (size_t)h * NB;
  double kept = 0;
  for (int64_t i = 0; i < MB; i++) {
    double row = 0;
    for (int64_t j = 0; j < NB; j++)
      if (m[i * NB + j]) row += cs[j];
    kept += row * rs[i];
  }
  return kept / ((double)rec->qo_len * (double)rec->kv_len);
}

/* Checks that perm [S] is a permutation of 0..S-1; fills inv. */
static bsa_status invert_perm(const char *name, int32_t h, const int32_t *perm, int64_t S,
                              int32_t *inv) {
  for (int64_t t = 0; t < S; t++) inv[t] = -1;
  for (int64_t p = 0; p < S; p++) {
    int32_t t = perm[p];
    if (t < 0 || t >= S)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s[%d, %lld] = %d is outside 0..%lld", name,
                       (int)h, (long long)p, (int)t, (long long)(S - 1));
    if (inv[t] >= 0)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                       "%s of head %d is not a permutation: token %d appears at "
                       "positions %d and %lld",
                       name, (int)h, (int)t, (int)inv[t], (long long)p);
    inv[t] = (int32_t)p;
  }
  return BSA_OK;
}

static bsa_status check_record(const bsa_mask_record *rec) {
  if (!rec) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "mask record is NULL");
  if (rec->num_kv_heads < 1 || rec->qo_len < 1 || rec->kv_len < 1 || rec->num_block_rows < 1 ||
      rec->num_block_cols < 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "mask record '%s': num_kv_heads %d, qo_len %lld, kv_len "
                     "%lld, blocks %lld x %lld must all be at least 1",
                     rec->name ? rec->name : "", (int)rec->num_kv_heads, (long long)rec->qo_len,
                     (long long)rec->kv_len, (long long)rec->num_block_rows,
                     (long long)rec->num_block_cols);
  if (rec->qo_len > INT32_MAX || rec->kv_len > INT32_MAX)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "mask record '%s': sequence of %lld x %lld tokens is past "
                     "the int32 token indices of the mask format",
                     rec->name ? rec->name : "", (long long)rec->qo_len, (long long)rec->kv_len);
  if (!rec->block_mask_map || !rec->block_row_sz || !rec->block_col_sz)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "mask record '%s': block_mask_map, block_row_sz and "
                     "block_col_sz are required",
                     rec->name ? rec->name : "");
  const int64_t MB = rec->num_block_rows, NB = rec->num_block_cols;
  for (int32_t h = 0; h < rec->num_kv_heads; h++) {
    for (int axis = 0; axis < 2; axis++) {
      const int32_t *sz =
          axis ? rec->block_col_sz + (size_t)h * NB : rec->block_row_sz + (size_t)h * MB;
      int64_t n = axis ? NB : MB, want = axis ? rec->kv_len : rec->qo_len, sum = 0;
      for (int64_t i = 0; i < n; i++) {
        if (sz[i] < 0)
          return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                           "mask record '%s': %s[%d, %lld] = %d is negative",
                           rec->name ? rec->name : "", axis ? "block_col_sz" : "block_row_sz",
                           (int)h, (long long)i, (int)sz[i]);
        sum += sz[i];
      }
      if (sum != want)
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                         "mask record '%s': %s of head %d sums to %lld, not %s "
                         "= %lld",
                         rec->name ? rec->name : "", axis ? "block_col_sz" : "block_row_sz", (int)h,
                         (long long)sum, axis ? "kv_len" : "qo_len", (long long)want);
    }
  }
  return BSA_OK;
}

/* The heads to draw: opts->heads validated, or all.  *heads malloc'ed. */
static bsa_status pick_heads(const bsa_mask_record *rec, const bsa_viz_masks_opts *o,
                             int32_t **heads, int32_t *n) {
  int32_t H = rec->num_kv_heads;
  int32_t k = o->heads ? o->num_heads : H;
  if (o->heads && k < 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "heads: an empty list (give at least one kv head of 0..%d)", (int)(H - 1));
  int32_t *hs = malloc(sizeof(int32_t) * (size_t)k);
  if (!hs) return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < k; i++) {
    hs[i] = o->heads ? o->heads[i] : i;
    if (hs[i] < 0 || hs[i] >= H) {
      int32_t bad = hs[i];
      free(hs);
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                       "heads: kv head %d is out of range 0..%d of record '%s'", (int)bad,
                       (int)(H - 1), rec->name ? rec->name : "");
    }
    for (int32_t j = 0; j < i; j++)
      if (hs[j] == hs[i]) {
        int32_t bad = hs[i];
        free(hs);
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "heads: kv head %d is listed twice", (int)bad);
      }
  }
  *heads = hs;
  *n = k;
  return BSA_OK;
}

bsa_status bsa_viz_masks_layout(const bsa_mask_record *rec, const bsa_viz_masks_opts *opts,
                                bsa_viz_layout *out) {
  if (!out) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "layout out is NULL");
  memset(out, 0, sizeof *out);
  bsa_viz_masks_opts dflt;
  memset(&dflt, 0, sizeof dflt);
  const bsa_viz_masks_opts *o = opts ? opts : &dflt;
  bsa_status st = check_record(rec);
  if (st != BSA_OK) return st;
  if (o->order != BSA_VIZ_ORDER_PERMUTED && o->order != BSA_VIZ_ORDER_ORIGINAL)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "order = %d is neither PERMUTED (0) nor ORIGINAL (1)", (int)o->order);
  if (o->panel_px != 0 && (o->panel_px < 16 || o->panel_px > 4096))
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "panel_px = %d is outside 16..4096",
                     (int)o->panel_px);
  int32_t *heads = NULL, n = 0;
  st = pick_heads(rec, o, &heads, &n);
  if (st != BSA_OK) return st;

  /* Data areas keep the Sq : Sk aspect, the longer side panel_px. */
  double ratio = (double)rec->kv_len / (double)rec->qo_len; /* w / h */
  int32_t c = bsa__viz_grid_cols(n, ratio >= 1 ? 1 : ratio, ratio >= 1 ? 1 / ratio : 1);
  int32_t P = o->panel_px;
  if (!P) {
    if (n == 1) {
      P = 480;
    } else {
      P = 1400 / c - CELL_LEFT - CELL_RIGHT;
      P = P < 180 ? 180 : P > 400 ? 400 : P;
    }
  }
  int32_t pw = ratio >= 1 ? P : (int32_t)lround(P * ratio);
  int32_t ph = ratio >= 1 ? (int32_t)lround(P / ratio) : P;
  if (pw < 24) pw = 24;
  if (ph < 24) ph = 24;
  int32_t r = (n + c - 1) / c;
  int32_t cell_w = CELL_LEFT + pw + CELL_RIGHT, cell_h = CELL_TOP + ph + CELL_BOTTOM;
  int32_t top = 12 + 24 + 18 + (o->subtitle ? 18 : 0) + 8;
  int32_t grid_w = c * cell_w;
  int32_t width = FIG_LEFT + grid_w + FIG_RIGHT_BAR;
  if (width < FIG_MIN_WIDTH) width = FIG_MIN_WIDTH;
  int32_t height = top + r * cell_h + FIG_BOTTOM;
  /* The colour bar wants some height even beside a single short row. */
  if (height < top + 220 + FIG_BOTTOM) height = top + 220 + FIG_BOTTOM;

  out->panels = calloc((size_t)n, sizeof *out->panels);
  if (!out->panels) {
    free(heads);
    return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
  }
  out->width = width;
  out->height = height;
  out->num_panels = n;
  for (int32_t i = 0; i < n; i++) {
    bsa_viz_panel *p = &out->panels[i];
    p->head = heads[i];
    p->x = FIG_LEFT + (i % c) * cell_w + CELL_LEFT;
    p->y = top + (i / c) * cell_h + CELL_TOP;
    p->w = pw;
    p->h = ph;
    p->rows = rec->qo_len;
    p->cols = rec->kv_len;
  }
  free(heads);

  if (o->order == BSA_VIZ_ORDER_ORIGINAL && (rec->q_perm || rec->k_perm)) {
    int64_t S = rec->qo_len > rec->kv_len ? rec->qo_len : rec->kv_len;
    int32_t *inv = malloc(sizeof(int32_t) * (size_t)S);
    if (!inv) st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < n && st == BSA_OK; i++) {
      int32_t h = out->panels[i].head;
      if (rec->q_perm)
        st = invert_perm("q_perm", h, rec->q_perm + (size_t)h * rec->qo_len, rec->qo_len, inv);
      if (st == BSA_OK && rec->k_perm)
        st = invert_perm("k_perm", h, rec->k_perm + (size_t)h * rec->kv_len, rec->kv_len, inv);
    }
    free(inv);
    if (st != BSA_OK) {
      bsa_viz_layout_free(out);
      memset(out, 0, sizeof *out);
      return st;
    }
  }

  /* Colour scale over the kept blocks (of non-zero area) of the shown heads. */
  if (rec->block_scores) {
    const int64_t MB = rec->num_block_rows, NB = rec->num_block_cols;
    double lo = INFINITY, hi = -INFINITY, lo_pos = INFINITY;
    for (int32_t i = 0; i < n; i++) {
      int32_t h = out->panels[i].head;
      const uint8_t *m = rec->block_mask_map + (size_t)h * MB * NB;
      const float *s = rec->block_scores + (size_t)h * MB * NB;
      const int32_t *rs = rec->block_row_sz + (size_t)h * MB;
      const int32_t *cs = rec->block_col_sz + (size_t)h * NB;
      for (int64_t bi = 0; bi < MB; bi++) {
        if (!rs[bi]) continue;
        for (int64_t bj = 0; bj < NB; bj++) {
          if (!m[bi * NB + bj] || !cs[bj] || !isfinite(s[bi * NB + bj])) continue;
          double v = s[bi * NB + bj];
          lo = fmin(lo, v);
          hi = fmax(hi, v);
          if (v > 0) lo_pos = fmin(lo_pos, v);
        }
      }
    }
    out->has_scores = 1;
    if (!(hi >= lo)) { /* no kept block with a finite score */
      lo = 0;
      hi = 1;
    }
    if (lo > 0 && hi / lo >= 10) {
      out->score_log = 1;
      lo = fmax(lo_pos, hi * 1e-6);
    }
    out->score_lo = lo;
    out->score_hi = hi;
  }
  return BSA_OK;
}

/* Token -> block index map of one axis in token order: token t sits at
 * permuted position inv[t] (identity without a permutation). */
static bsa_status token_blocks(const int32_t *sizes, int64_t nb, int64_t S, const int32_t *perm,
                               const char *perm_name, int32_t h, int32_t *block_of) {
  int32_t *pos_block = malloc(sizeof(int32_t) * (size_t)S);
  int32_t *inv = perm ? malloc(sizeof(int32_t) * (size_t)S) : NULL;
  if (!pos_block || (perm && !inv)) {
    free(pos_block);
    free(inv);
    return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
  }
  int64_t p = 0;
  for (int64_t b = 0; b < nb; b++)
    for (int32_t k = 0; k < sizes[b]; k++) pos_block[p++] = (int32_t)b;
  bsa_status st = BSA_OK;
  if (perm) {
    st = invert_perm(perm_name, h, perm, S, inv);
    if (st == BSA_OK)
      for (int64_t t = 0; t < S; t++) block_of[t] = pos_block[inv[t]];
  } else {
    memcpy(block_of, pos_block, sizeof(int32_t) * (size_t)S);
  }
  free(pos_block);
  free(inv);
  return st;
}

static void fmt_num(double v, char *buf, size_t n) {
  if (!isfinite(v))
    snprintf(buf, n, "n/a");
  else if (v >= 0.1 || v == 0)
    snprintf(buf, n, "%.3f", v);
  else
    snprintf(buf, n, "%.2g", v);
}

/* Draws text centred on cx within width, shrinking the font from size to
 * 9 pixels, then cutting with an ellipsis. */
static void text_centred_fit(cairo_t *cr, double cx, double y, double width, double size, int bold,
                             const char *s) {
  char buf[512];
  for (double fs = size; fs >= 9; fs -= 0.5) {
    bsa__viz_font(cr, fs, bold);
    if (bsa__viz_text_width(cr, s) <= width || fs - 0.5 < 9) break;
  }
  bsa__viz_text_fit(cr, s, width, buf, sizeof buf);
  bsa__viz_text(cr, cx, y, 0.5, 0, buf);
}

static bsa_status draw_panel(bsa__viz_canvas *cv, const bsa_mask_record *rec,
                             const bsa_viz_masks_opts *o, const bsa_viz_layout *lay,
                             const bsa_viz_panel *p) {
  const int64_t MB = rec->num_block_rows, NB = rec->num_block_cols;
  const int32_t h = p->head;
  const int32_t *rs = rec->block_row_sz + (size_t)h * MB;
  const int32_t *cs = rec->block_col_sz + (size_t)h * NB;
  float *Wr = NULL, *Wc = NULL, *rgb = NULL;
  int32_t *qb = NULL, *kb = NULL;
  bsa_status st = BSA_OK;
  if (o->order == BSA_VIZ_ORDER_ORIGINAL && (rec->q_perm || rec->k_perm)) {
    qb = malloc(sizeof(int32_t) * (size_t)rec->qo_len);
    kb = malloc(sizeof(int32_t) * (size_t)rec->kv_len);
    if (!qb || !kb) {
      st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
      goto done;
    }
    st = token_blocks(rs, MB, rec->qo_len,
                      rec->q_perm ? rec->q_perm + (size_t)h * rec->qo_len : NULL, "q_perm", h, qb);
    if (st == BSA_OK)
      st =
          token_blocks(cs, NB, rec->kv_len,
                       rec->k_perm ? rec->k_perm + (size_t)h * rec->kv_len : NULL, "k_perm", h, kb);
    if (st != BSA_OK) goto done;
    st = bsa__viz_axis_weights(rec->qo_len, MB, NULL, qb, p->h, &Wr);
    if (st == BSA_OK) st = bsa__viz_axis_weights(rec->kv_len, NB, NULL, kb, p->w, &Wc);
  } else {
    st = bsa__viz_axis_weights(rec->qo_len, MB, rs, NULL, p->h, &Wr);
    if (st == BSA_OK) st = bsa__viz_axis_weights(rec->kv_len, NB, cs, NULL, p->w, &Wc);
  }
  if (st != BSA_OK) goto done;

  rgb = malloc(sizeof(float) * 3 * (size_t)MB * (size_t)NB);
  if (!rgb) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory (%lld x %lld blocks)", (long long)MB,
                   (long long)NB);
    goto done;
  }
  const uint8_t *m = rec->block_mask_map + (size_t)h * MB * NB;
  const float *sc = rec->block_scores ? rec->block_scores + (size_t)h * MB * NB : NULL;
  const size_t plane = (size_t)MB * NB;
  for (size_t b = 0; b < plane; b++) {
    uint8_t c[3];
    if (!m[b])
      memcpy(c, bsa_viz_dropped_rgb, 3);
    else
      bsa_viz_score_rgb(lay, sc ? sc[b] : 0, c);
    rgb[b] = c[0];
    rgb[plane + b] = c[1];
    rgb[2 * plane + b] = c[2];
  }
  st = bsa__viz_fill_blocks(cv, p->x, p->y, p->w, p->h, MB, NB, Wr, Wc, rgb);
  if (st != BSA_OK) goto done;

  cairo_t *cr = cv->cr;
  bsa__viz_panel_axes(cr, p, 11);
  char line[256], d[32], r[32];
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  snprintf(line, sizeof line, "head %d", (int)h);
  text_centred_fit(cr, p->x + p->w / 2.0, p->y - CELL_TOP + 2, p->w + CELL_RIGHT, 12, 1, line);
  fmt_num(bsa_viz_mask_density(rec, h), d, sizeof d);
  double rc = o->head_recall ? o->head_recall[h] : NAN;
  if (isfinite(rc)) {
    fmt_num(rc, r, sizeof r);
    snprintf(line, sizeof line, "density %s \xc2\xb7 recall %s", d, r);
  } else {
    snprintf(line, sizeof line, "density %s", d);
  }
  cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
  text_centred_fit(cr, p->x + p->w / 2.0, p->y - CELL_TOP + 18, p->w + CELL_RIGHT, 11, 0, line);
done:
  free(Wr);
  free(Wc);
  free(rgb);
  free(qb);
  free(kb);
  return st;
}

bsa_status bsa_viz_masks(const bsa_mask_record *rec, const bsa_viz_masks_opts *opts,
                         const char *png_path) {
  bsa_viz_masks_opts dflt;
  memset(&dflt, 0, sizeof dflt);
  const bsa_viz_masks_opts *o = opts ? opts : &dflt;
  bsa_viz_layout lay;
  bsa_status st = bsa_viz_masks_layout(rec, o, &lay);
  if (st != BSA_OK) return st;
  bsa__viz_canvas cv;
  st = bsa__viz_canvas_create(lay.width, lay.height, &cv);
  if (st != BSA_OK) {
    bsa_viz_layout_free(&lay);
    return st;
  }
  for (int32_t i = 0; i < lay.num_panels && st == BSA_OK; i++)
    st = draw_panel(&cv, rec, o, &lay, &lay.panels[i]);
  if (st != BSA_OK) goto done;

  cairo_t *cr = cv.cr;
  const bsa_viz_panel *p0 = &lay.panels[0];
  int32_t cols = 1;
  while (cols < lay.num_panels && lay.panels[cols].y == p0->y) cols++;
  int32_t rows = (lay.num_panels + cols - 1) / cols;
  double grid_right = p0->x + cols * (double)(p0->w + CELL_LEFT + CELL_RIGHT) - CELL_LEFT;
  double grid_bottom = p0->y + rows * (double)(p0->h + CELL_TOP + CELL_BOTTOM) - CELL_TOP;
  double grid_top = p0->y - CELL_TOP;

  /* Title, subtitle and a line of facts. */
  const int perm = rec->q_perm || rec->k_perm;
  const char *order = o->order == BSA_VIZ_ORDER_ORIGINAL
                          ? (perm ? "token order" : "token order (no permutation stored)")
                          : (perm ? "permuted order" : "token order (no permutation)");
  char title[512], buf[512];
  snprintf(title, sizeof title, "Block masks \xe2\x80\x94 record %s%s%s \xc2\xb7 %s",
           rec->name ? rec->name : "(unnamed)", o->method ? " \xc2\xb7 method " : "",
           o->method ? o->method : "", order);
  double text_w = lay.width - 24;
  cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
  bsa__viz_font(cr, 16, 1);
  bsa__viz_text_fit(cr, title, text_w, buf, sizeof buf);
  bsa__viz_text(cr, 12, 12, 0, 0, buf);
  double ty = 12 + 24;
  if (o->subtitle) {
    bsa__viz_font(cr, 12, 0);
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    bsa__viz_text_fit(cr, o->subtitle, text_w, buf, sizeof buf);
    bsa__viz_text(cr, 12, ty, 0, 0, buf);
    ty += 18;
  }
  {
    double dsum = 0;
    for (int32_t h = 0; h < rec->num_kv_heads; h++) dsum += bsa_viz_mask_density(rec, h);
    char d[32], rc[32], facts[512];
    fmt_num(isfinite(rec->density) ? rec->density : dsum / rec->num_kv_heads, d, sizeof d);
    int k = snprintf(facts, sizeof facts,
                     "%lld query \xc3\x97 %lld key tokens \xc2\xb7 %d kv heads "
                     "(%d shown) \xc2\xb7 %lld \xc3\x97 %lld blocks \xc2\xb7 density %s",
                     (long long)rec->qo_len, (long long)rec->kv_len, (int)rec->num_kv_heads,
                     (int)lay.num_panels, (long long)rec->num_block_rows,
                     (long long)rec->num_block_cols, d);
    if (isfinite(rec->recall)) {
      fmt_num(rec->recall, rc, sizeof rc);
      snprintf(facts + k, sizeof facts - (size_t)k, " \xc2\xb7 recall %s", rc);
    }
    bsa__viz_font(cr, 12, 0);
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    bsa__viz_text_fit(cr, facts, text_w, buf, sizeof buf);
    bsa__viz_text(cr, 12, ty, 0, 0, buf);
  }

  /* Axis names, once for the grid. */
  bsa__viz_font(cr, 12, 0);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  double gx0 = p0->x, gy0 = p0->y;
  bsa__viz_text_up(
      cr, 14, (gy0 + grid_bottom - CELL_BOTTOM) / 2,
      perm && o->order == BSA_VIZ_ORDER_PERMUTED ? "query position (permuted)" : "query token");
  bsa__viz_text(
      cr, (gx0 + grid_right) / 2, grid_bottom + 4, 0.5, 0,
      perm && o->order == BSA_VIZ_ORDER_PERMUTED ? "key position (permuted)" : "key token");

  /* Colour bar (scores) or legend (solid), with the dropped swatch. */
  double bx = grid_right + 22;
  double bar_top = grid_top + 8;
  if (lay.has_scores) {
    double bh = fmin(grid_bottom - bar_top - 60, 320);
    if (bh < 100) bh = 100;
    bsa__viz_colorbar(cr, bx, bar_top, 16, bh, lay.score_lo, lay.score_hi, lay.score_log,
                      lay.score_log ? "block score (log scale)" : "block score");
    bsa__viz_swatch(cr, bx, bar_top + bh + 18, 16, bsa_viz_dropped_rgb, "dropped");
  } else {
    bsa__viz_swatch(cr, bx, bar_top, 16, bsa_viz_kept_rgb, "kept");
    bsa__viz_swatch(cr, bx, bar_top + 26, 16, bsa_viz_dropped_rgb, "dropped");
  }

  st = bsa__viz_png_write(&cv, title, o->meta, o->num_meta, png_path);
done:
  bsa__viz_canvas_destroy(&cv);
  bsa_viz_layout_free(&lay);
  return st;
}
