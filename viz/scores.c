/*
 * viz/scores.c - exact block-pooled attention mass of a trace record, the
 * recall of a mask on it, and the heat map of the mass.
 *
 * The softmax rows are computed exactly, tile by tile: S = sm_scale * Q K^T
 * for a tile of query rows ([T, Sk], CBLAS sgemm), then each row is
 * normalised (max subtracted, sum in double) and its probabilities summed
 * per column block.  Memory is O(T * Sk), never Sq * Sk.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vizint.h"

static bsa_status check_trace(const bsa_trace_record *rec, int32_t kv_head) {
  if (!rec) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "trace record is NULL");
  const char *nm = rec->name ? rec->name : "";
  if (rec->num_kv_heads < 1 || rec->num_qo_heads < 1 || rec->num_qo_heads % rec->num_kv_heads != 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "trace record '%s': num_qo_heads %d is not a positive "
                     "multiple of num_kv_heads %d",
                     nm, (int)rec->num_qo_heads, (int)rec->num_kv_heads);
  if (rec->head_dim < 1 || rec->qo_len < 1 || rec->kv_len < 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "trace record '%s': head_dim %d, qo_len %lld, kv_len %lld "
                     "must be at least 1",
                     nm, (int)rec->head_dim, (long long)rec->qo_len, (long long)rec->kv_len);
  if (rec->kv_len > INT32_MAX || rec->qo_len > INT32_MAX)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "trace record '%s': %lld x %lld tokens is past 2^31 - 1 a "
                     "side",
                     nm, (long long)rec->qo_len, (long long)rec->kv_len);
  if (!rec->q || !rec->k)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "trace record '%s': q and k are required", nm);
  if (kv_head < 0 || kv_head >= rec->num_kv_heads)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "kv head %d is out of range 0..%d of trace record '%s'", (int)kv_head,
                     (int)(rec->num_kv_heads - 1), nm);
  return BSA_OK;
}

/* R [MB, NB] += for every query head of kv_head's group and every query
 * row i: the softmax probabilities of row i summed per column block, added
 * to row block row_block[i].  Rows that see no key add nothing. */
static bsa_status mass_accumulate(const bsa_trace_record *rec, int32_t kv_head,
                                  const int32_t *row_block, const int32_t *col_block, int64_t NB,
                                  double *R) {
  const int64_t Sq = rec->qo_len, Sk = rec->kv_len, D = rec->head_dim;
  const int32_t G = rec->num_qo_heads / rec->num_kv_heads;
  const float scale = rec->sm_scale > 0 ? rec->sm_scale : 1.0f / sqrtf((float)D);
  int64_t T = ((int64_t)1 << 22) / Sk; /* 16 MB of logits per tile */
  if (T < 1) T = 1;
  if (T > 256) T = 256;
  if (T > Sq) T = Sq;
  float *S = malloc(sizeof(float) * (size_t)T * (size_t)Sk);
  double *acc = malloc(sizeof(double) * (size_t)NB);
  if (!S || !acc) {
    free(S);
    free(acc);
    return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory (%lld x %lld logits)", (long long)T,
                     (long long)Sk);
  }
  const float *K = rec->k + (size_t)kv_head * Sk * D;
  for (int32_t g = 0; g < G; g++) {
    const float *Q = rec->q + ((size_t)kv_head * G + g) * Sq * D;
    for (int64_t r0 = 0; r0 < Sq; r0 += T) {
      int64_t nr = Sq - r0 < T ? Sq - r0 : T;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)Sk, (int)D, scale,
                  Q + (size_t)r0 * D, (int)D, K, (int)D, 0.0f, S, (int)Sk);
      for (int64_t r = 0; r < nr; r++) {
        int64_t i = r0 + r;
        int64_t lim = Sk;
        if (rec->causal) {
          lim = i + (Sk - Sq) + 1;
          if (lim > Sk) lim = Sk;
        }
        if (lim <= 0) continue;
        float *s = S + (size_t)r * Sk;
        float mx = -INFINITY;
        for (int64_t j = 0; j < lim; j++) mx = s[j] > mx ? s[j] : mx;
        double sum = 0;
        for (int64_t j = 0; j < lim; j++) {
          s[j] = expf(s[j] - mx);
          sum += s[j];
        }
        memset(acc, 0, sizeof(double) * (size_t)NB);
        for (int64_t j = 0; j < lim; j++) acc[col_block[j]] += s[j];
        double *Rrow = R + (size_t)row_block[i] * NB;
        double inv = 1.0 / sum;
        for (int64_t b = 0; b < NB; b++) Rrow[b] += acc[b] * inv;
      }
    }
  }
  free(S);
  free(acc);
  return BSA_OK;
}

bsa_status bsa_viz_block_mass(const bsa_trace_record *rec, int32_t kv_head, int64_t block,
                              float *mass) {
  bsa_status st = check_trace(rec, kv_head);
  if (st != BSA_OK) return st;
  const int64_t longest = rec->qo_len > rec->kv_len ? rec->qo_len : rec->kv_len;
  if (block < 1 || block > longest)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "block = %lld tokens is outside 1..%lld (the longer sequence)",
                     (long long)block, (long long)longest);
  if (!mass) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "mass is NULL");
  const int64_t Sq = rec->qo_len, Sk = rec->kv_len;
  const int64_t MB = (Sq + block - 1) / block, NB = (Sk + block - 1) / block;
  int32_t *rb = malloc(sizeof(int32_t) * (size_t)Sq);
  int32_t *cb = malloc(sizeof(int32_t) * (size_t)Sk);
  double *R = calloc((size_t)MB * (size_t)NB, sizeof(double));
  if (!rb || !cb || !R) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory (%lld x %lld blocks)", (long long)MB,
                   (long long)NB);
    goto done;
  }
  for (int64_t i = 0; i < Sq; i++) rb[i] = (int32_t)(i / block);
  for (int64_t j = 0; j < Sk; j++) cb[j] = (int32_t)(j / block);
  st = mass_accumulate(rec, kv_head, rb, cb, NB, R);
  if (st != BSA_OK) goto done;
  const int32_t G = rec->num_qo_heads / rec->num_kv_heads;
  for (int64_t bi = 0; bi < MB; bi++) {
    int64_t rows = (bi + 1) * block > Sq ? Sq - bi * block : block;
    double d = 1.0 / ((double)rows * G);
    for (int64_t bj = 0; bj < NB; bj++) mass[bi * NB + bj] = (float)(R[bi * NB + bj] * d);
  }
done:
  free(rb);
  free(cb);
  free(R);
  return st;
}

bsa_status bsa_viz_mask_recall(const bsa_trace_record *trace, const bsa_mask_record *mask,
                               double *recall) {
  bsa_status st = check_trace(trace, 0);
  if (st != BSA_OK) return st;
  bsa_viz_layout lay; /* validates the mask record and its permutations */
  bsa_viz_masks_opts o;
  memset(&o, 0, sizeof o);
  o.order = BSA_VIZ_ORDER_ORIGINAL;
  st = bsa_viz_masks_layout(mask, &o, &lay);
  if (st != BSA_OK) return st;
  bsa_viz_layout_free(&lay);
  if (!recall) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "recall is NULL");
  if (mask->num_kv_heads != trace->num_kv_heads || mask->qo_len != trace->qo_len ||
      mask->kv_len != trace->kv_len)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "mask record '%s' (%d kv heads, %lld x %lld tokens) does not "
                     "match trace record '%s' (%d kv heads, %lld x %lld tokens)",
                     mask->name ? mask->name : "", (int)mask->num_kv_heads, (long long)mask->qo_len,
                     (long long)mask->kv_len, trace->name ? trace->name : "",
                     (int)trace->num_kv_heads, (long long)trace->qo_len, (long long)trace->kv_len);
  const int64_t Sq = trace->qo_len, Sk = trace->kv_len;
  const int64_t MB = mask->num_block_rows, NB = mask->num_block_cols;
  int32_t *rb = malloc(sizeof(int32_t) * (size_t)Sq);
  int32_t *cb = malloc(sizeof(int32_t) * (size_t)Sk);
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)(Sq > Sk ? Sq : Sk));
  double *R = malloc(sizeof(double) * (size_t)MB * (size_t)NB);
  double *out = malloc(sizeof(double) * (size_t)mask->num_kv_heads);
  if (!rb || !cb || !pos || !R || !out) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int32_t h = 0; h < mask->num_kv_heads; h++) {
    /* Token -> block of its permuted position (perm[p] = token). */
    for (int axis = 0; axis < 2; axis++) {
      int64_t S = axis ? Sk : Sq, nb = axis ? NB : MB;
      const int32_t *sz =
          axis ? mask->block_col_sz + (size_t)h * NB : mask->block_row_sz + (size_t)h * MB;
      const int32_t *perm = axis ? (mask->k_perm ? mask->k_perm + (size_t)h * Sk : NULL)
                                 : (mask->q_perm ? mask->q_perm + (size_t)h * Sq : NULL);
      int32_t *blk = axis ? cb : rb;
      int64_t p = 0;
      for (int64_t b = 0; b < nb; b++)
        for (int32_t k = 0; k < sz[b]; k++) pos[p++] = (int32_t)b;
      for (int64_t q = 0; q < S; q++) blk[perm ? perm[q] : q] = pos[q];
    }
    memset(R, 0, sizeof(double) * (size_t)MB * (size_t)NB);
    st = mass_accumulate(trace, h, rb, cb, NB, R);
    if (st != BSA_OK) goto done;
    const uint8_t *m = mask->block_mask_map + (size_t)h * MB * NB;
    double kept = 0, total = 0;
    for (int64_t b = 0; b < MB * NB; b++) {
      total += R[b];
      if (m[b]) kept += R[b];
    }
    out[h] = total > 0 ? kept / total : NAN;
  }
  memcpy(recall, out, sizeof(double) * (size_t)mask->num_kv_heads);
done:
  free(rb);
  free(cb);
  free(pos);
  free(R);
  free(out);
  return st;
}

/* ---- the heat map ----------------------------------------------------------- */

enum { S_LEFT = 84, S_RIGHT = 150, S_BOTTOM = 56, S_MIN_WIDTH = 640 };

static bsa_status scores_opts(const bsa_trace_record *rec, const bsa_viz_scores_opts *opts,
                              bsa_viz_scores_opts *o) {
  memset(o, 0, sizeof *o);
  if (opts) *o = *opts;
  if (!o->block) o->block = 64;
  if (!o->panel_px) o->panel_px = 560;
  bsa_status st = check_trace(rec, o->kv_head);
  if (st != BSA_OK) return st;
  if (o->block < 1 || o->block > (rec->qo_len > rec->kv_len ? rec->qo_len : rec->kv_len))
    return bsa__fail(
        NULL, BSA_ERR_INVALID_ARG, "block = %lld tokens is outside 1..%lld (the longer sequence)",
        (long long)o->block, (long long)(rec->qo_len > rec->kv_len ? rec->qo_len : rec->kv_len));
  if (o->panel_px < 16 || o->panel_px > 8192)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "panel_px = %d is outside 16..8192",
                     (int)o->panel_px);
  return BSA_OK;
}

bsa_status bsa_viz_scores_layout(const bsa_trace_record *rec, const bsa_viz_scores_opts *opts,
                                 bsa_viz_layout *out) {
  if (!out) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "layout out is NULL");
  memset(out, 0, sizeof *out);
  bsa_viz_scores_opts o;
  bsa_status st = scores_opts(rec, opts, &o);
  if (st != BSA_OK) return st;
  double ratio = (double)rec->kv_len / (double)rec->qo_len;
  int32_t P = o.panel_px;
  int32_t pw = ratio >= 1 ? P : (int32_t)lround(P * ratio);
  int32_t ph = ratio >= 1 ? (int32_t)lround(P / ratio) : P;
  if (pw < 24) pw = 24;
  if (ph < 24) ph = 24;
  out->panels = calloc(1, sizeof *out->panels);
  if (!out->panels) return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
  int32_t top = 12 + 24 + 18 + 18 + 10;
  out->num_panels = 1;
  bsa_viz_panel *p = &out->panels[0];
  p->head = o.kv_head;
  p->x = S_LEFT;
  p->y = top;
  p->w = pw;
  p->h = ph;
  p->rows = rec->qo_len;
  p->cols = rec->kv_len;
  out->width = S_LEFT + pw + S_RIGHT;
  if (out->width < S_MIN_WIDTH) out->width = S_MIN_WIDTH;
  out->height = top + (ph > 240 ? ph : 240) + S_BOTTOM;
  return BSA_OK;
}

bsa_status bsa_viz_scores(const bsa_trace_record *rec, const bsa_viz_scores_opts *opts,
                          const char *png_path, bsa_viz_layout *layout_out) {
  if (layout_out) memset(layout_out, 0, sizeof *layout_out);
  bsa_viz_scores_opts o;
  bsa_status st = scores_opts(rec, opts, &o);
  if (st != BSA_OK) return st;
  bsa_viz_layout lay;
  st = bsa_viz_scores_layout(rec, &o, &lay);
  if (st != BSA_OK) return st;
  /* Fail on an unwritable destination before the long computation. */
  st = bsa__viz_check_writable(png_path);
  if (st != BSA_OK) {
    bsa_viz_layout_free(&lay);
    return st;
  }
  const int64_t B = o.block, Sq = rec->qo_len, Sk = rec->kv_len;
  const int64_t MB = (Sq + B - 1) / B, NB = (Sk + B - 1) / B;
  const size_t plane = (size_t)MB * (size_t)NB;
  float *mass = malloc(sizeof(float) * plane);
  float *rgb = malloc(sizeof(float) * 3 * plane);
  int32_t *rs = malloc(sizeof(int32_t) * (size_t)MB);
  int32_t *cs = malloc(sizeof(int32_t) * (size_t)NB);
  float *Wr = NULL, *Wc = NULL;
  bsa__viz_canvas cv;
  memset(&cv, 0, sizeof cv);
  if (!mass || !rgb || !rs || !cs) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory (%lld x %lld blocks)", (long long)MB,
                   (long long)NB);
    goto done;
  }
  st = bsa_viz_block_mass(rec, o.kv_head, B, mass);
  if (st != BSA_OK) goto done;

  double hi = 0, lo = INFINITY;
  int any_zero = 0;
  for (size_t b = 0; b < plane; b++) {
    if (mass[b] > 0) {
      hi = fmax(hi, mass[b]);
      lo = fmin(lo, mass[b]);
    } else {
      any_zero = 1;
    }
  }
  if (!(hi > 0)) {
    hi = 1;
    lo = 1e-6;
  }
  lo = fmax(lo, hi * 1e-6);
  lay.has_scores = 1;
  lay.score_log = 1;
  lay.score_lo = lo;
  lay.score_hi = hi;
  for (size_t b = 0; b < plane; b++) {
    uint8_t c[3];
    if (mass[b] > 0)
      bsa_viz_score_rgb(&lay, mass[b], c);
    else
      memcpy(c, bsa_viz_dropped_rgb, 3);
    rgb[b] = c[0];
    rgb[plane + b] = c[1];
    rgb[2 * plane + b] = c[2];
  }
  for (int64_t i = 0; i < MB; i++) rs[i] = (int32_t)((i + 1) * B > Sq ? Sq - i * B : B);
  for (int64_t j = 0; j < NB; j++) cs[j] = (int32_t)((j + 1) * B > Sk ? Sk - j * B : B);
  const bsa_viz_panel *p = &lay.panels[0];
  st = bsa__viz_axis_weights(Sq, MB, rs, NULL, p->h, &Wr);
  if (st == BSA_OK) st = bsa__viz_axis_weights(Sk, NB, cs, NULL, p->w, &Wc);
  if (st == BSA_OK) st = bsa__viz_canvas_create(lay.width, lay.height, &cv);
  if (st == BSA_OK) st = bsa__viz_fill_blocks(&cv, p->x, p->y, p->w, p->h, MB, NB, Wr, Wc, rgb);
  if (st != BSA_OK) goto done;

  cairo_t *cr = cv.cr;
  bsa__viz_panel_axes(cr, p, 11);
  const int32_t G = rec->num_qo_heads / rec->num_kv_heads;
  char heads[64], title[512], buf[512];
  if (G == 1)
    snprintf(heads, sizeof heads, "head %d", (int)o.kv_head);
  else
    snprintf(heads, sizeof heads, "kv head %d (query heads %d\xe2\x80\x93%d)", (int)o.kv_head,
             (int)(o.kv_head * G), (int)(o.kv_head * G + G - 1));
  snprintf(title, sizeof title, "Block attention mass \xe2\x80\x94 record %s \xc2\xb7 %s",
           rec->name ? rec->name : "(unnamed)", heads);
  double text_w = lay.width - 24;
  cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
  bsa__viz_font(cr, 16, 1);
  bsa__viz_text_fit(cr, title, text_w, buf, sizeof buf);
  bsa__viz_text(cr, 12, 12, 0, 0, buf);
  char facts[512];
  snprintf(facts, sizeof facts,
           "%lld query \xc3\x97 %lld key tokens \xc2\xb7 head dim %d \xc2\xb7 "
           "%lld-token blocks (%lld \xc3\x97 %lld) \xc2\xb7 %s",
           (long long)Sq, (long long)Sk, (int)rec->head_dim, (long long)B, (long long)MB,
           (long long)NB, rec->causal ? "causal" : "not causal");
  bsa__viz_font(cr, 12, 0);
  cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
  bsa__viz_text_fit(cr, facts, text_w, buf, sizeof buf);
  bsa__viz_text(cr, 12, 12 + 24, 0, 0, buf);
  bsa__viz_text_fit(cr,
                    "colour: mean softmax mass from a query of the row block "
                    "to the column block (rows sum to 1)",
                    text_w, buf, sizeof buf);
  bsa__viz_text(cr, 12, 12 + 24 + 18, 0, 0, buf);

  bsa__viz_font(cr, 12, 0);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  bsa__viz_text_up(cr, 22, p->y + p->h / 2.0, "query token");
  bsa__viz_text(cr, p->x + p->w / 2.0, p->y + p->h + 26, 0.5, 0, "key token");

  double bx = p->x + p->w + 24;
  double bh = p->h - (any_zero ? 40 : 0);
  if (bh > 360) bh = 360;
  if (bh < 120) bh = 120;
  bsa__viz_colorbar(cr, bx, p->y, 16, bh, lo, hi, 1, "attention mass (log scale)");
  if (any_zero)
    bsa__viz_swatch(cr, bx, p->y + bh + 18, 16, bsa_viz_dropped_rgb,
                    rec->causal ? "none (causal)" : "none");

  st = bsa__viz_png_write(&cv, title, o.meta, o.num_meta, png_path);
done:
  bsa__viz_canvas_destroy(&cv);
  free(mass);
  free(rgb);
  free(rs);
  free(cs);
  free(Wr);
  free(Wc);
  if (st == BSA_OK && layout_out)
    *layout_out = lay;
  else
    bsa_viz_layout_free(&lay);
  return st;
}
