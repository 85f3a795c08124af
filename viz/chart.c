/*
 * viz/chart.c - scatter / line charts with linear or log axes, a legend
 * beside the plot and an optional reference curve.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vizint.h"

enum {
  C_LEFT = 84,
  C_RIGHT = 300, /* legend */
  C_BOTTOM = 64,
  C_DEFAULT_W = 960,
  C_DEFAULT_H = 640
};

static int chart_top(const bsa_viz_chart *c) { return 12 + 24 + (c->subtitle ? 18 : 0) + 18; }

static int usable(double v, int log_axis) { return isfinite(v) && (!log_axis || v > 0); }

/* Range of one axis with a little room around the data. */
static void axis_range(double mn, double mx, int log_axis, double *lo, double *hi) {
  if (log_axis) {
    double a = log10(mn), b = log10(mx);
    double pad = b > a ? fmax(0.06 * (b - a), 0.04) : 0.3;
    *lo = pow(10, a - pad);
    *hi = pow(10, b + pad);
  } else {
    double pad = mx > mn ? 0.06 * (mx - mn) : (mn != 0 ? 0.1 * fabs(mn) : 0.5);
    *lo = mn - pad;
    *hi = mx + pad;
  }
}

bsa_status bsa_viz_chart_layout(const bsa_viz_chart *c, bsa_viz_chart_geom *g) {
  if (!c || !g) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "chart or geometry is NULL");
  memset(g, 0, sizeof *g);
  if (c->num_series < 0 || (c->num_series > 0 && !c->series))
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "num_series = %d with series %s",
                     (int)c->num_series, c->series ? "set" : "NULL");
  int32_t W = c->width ? c->width : C_DEFAULT_W, H = c->height ? c->height : C_DEFAULT_H;
  if (W < 480 || H < 320 || W > 8192 || H > 8192)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "chart size %d x %d is outside 480..8192 x 320..8192", (int)W, (int)H);
  double xmn = INFINITY, xmx = -INFINITY, ymn = INFINITY, ymx = -INFINITY;
  int64_t n = 0;
  for (int32_t s = 0; s < c->num_series; s++) {
    const bsa_viz_series *se = &c->series[s];
    if (se->num_points < 0 || (se->num_points > 0 && (!se->x || !se->y)))
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                       "series %d ('%s'): %lld points with missing x or y", (int)s,
                       se->label ? se->label : "", (long long)se->num_points);
    for (int64_t i = 0; i < se->num_points; i++) {
      double x = se->x[i], y = se->y[i];
      if (!usable(x, c->log_x) || !usable(y, c->log_y))
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                         "series %d ('%s') point %lld = (%g, %g) is not finite%s", (int)s,
                         se->label ? se->label : "", (long long)i, x, y,
                         c->log_x || c->log_y ? " or not positive on a log axis" : "");
      xmn = fmin(xmn, x);
      xmx = fmax(xmx, x);
      ymn = fmin(ymn, y);
      ymx = fmax(ymx, y);
      n++;
    }
  }
  if (n == 0 && !(c->x_hi > c->x_lo && c->y_hi > c->y_lo))
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "chart '%s' has no points and no axis ranges",
                     c->title ? c->title : "");
  if (c->x_hi > c->x_lo) {
    g->x_lo = c->x_lo;
    g->x_hi = c->x_hi;
  } else {
    axis_range(xmn, xmx, c->log_x, &g->x_lo, &g->x_hi);
  }
  if (c->y_hi > c->y_lo) {
    g->y_lo = c->y_lo;
    g->y_hi = c->y_hi;
  } else {
    axis_range(ymn, ymx, c->log_y, &g->y_lo, &g->y_hi);
  }
  if ((c->log_x && !(g->x_lo > 0)) || (c->log_y && !(g->y_lo > 0)))
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "a log axis needs a positive range, got x %g..%g, y %g..%g", g->x_lo, g->x_hi,
                     g->y_lo, g->y_hi);
  g->width = W;
  g->height = H;
  g->log_x = c->log_x;
  g->log_y = c->log_y;
  g->x = C_LEFT;
  g->y = chart_top(c);
  g->w = W - C_LEFT - C_RIGHT;
  g->h = H - g->y - C_BOTTOM;
  return BSA_OK;
}

void bsa_viz_chart_point(const bsa_viz_chart_geom *g, double x, double y, double *px, double *py) {
  double tx = g->log_x ? (log10(x) - log10(g->x_lo)) / (log10(g->x_hi) - log10(g->x_lo))
                       : (x - g->x_lo) / (g->x_hi - g->x_lo);
  double ty = g->log_y ? (log10(y) - log10(g->y_lo)) / (log10(g->y_hi) - log10(g->y_lo))
                       : (y - g->y_lo) / (g->y_hi - g->y_lo);
  *px = g->x + tx * g->w;
  *py = g->y + (1 - ty) * g->h;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct xy {
  double x, y;
} xy;

static int cmp_xy(const void *a, const void *b) {
  const xy *p = a, *q = b;
  return p->x < q->x ? -1 : p->x > q->x ? 1 : (p->y < q->y ? -1 : p->y > q->y);
}

/* A line through the median y of each distinct x, in order of x. */
static void draw_series_line(cairo_t *cr, const bsa_viz_chart_geom *g, const bsa_viz_series *s) {
  int64_t n = s->num_points;
  xy *p = malloc(sizeof(xy) * (size_t)n);
  double *ys = malloc(sizeof(double) * (size_t)n);
  if (!p || !ys) {
    free(p);
    free(ys);
    return; /* no line; the markers still show every point */
  }
  for (int64_t i = 0; i < n; i++) {
    p[i].x = s->x[i];
    p[i].y = s->y[i];
  }
  qsort(p, (size_t)n, sizeof *p, cmp_xy);
  int started = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j < n && fabs(p[j].x - p[i].x) <= 1e-9 * fabs(p[i].x)) {
      ys[j - i] = p[j].y;
      j++;
    }
    qsort(ys, (size_t)(j - i), sizeof(double), cmp_double);
    int64_t k = j - i;
    double med = k % 2 ? ys[k / 2] : 0.5 * (ys[k / 2 - 1] + ys[k / 2]);
    double px, py;
    bsa_viz_chart_point(g, p[i].x, med, &px, &py);
    if (!started)
      cairo_move_to(cr, px, py);
    else
      cairo_line_to(cr, px, py);
    started = 1;
    i = j;
  }
  cairo_stroke(cr);
  free(p);
  free(ys);
}

static void draw_marker(cairo_t *cr, double px, double py, const uint8_t rgb[3]) {
  /* cairo_arc joins the current point (text drawing leaves one behind) to
   * the arc's start with a line, which the white outline would then draw
   * across the chart: start a new sub-path first. */
  cairo_new_sub_path(cr);
  cairo_arc(cr, px, py, 4.5, 0, 2 * M_PI);
  cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
  cairo_fill_preserve(cr);
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_stroke(cr);
}

static void draw_axis_ticks(cairo_t *cr, const bsa_viz_chart_geom *g, int vertical) {
  double lo = vertical ? g->y_lo : g->x_lo, hi = vertical ? g->y_hi : g->x_hi;
  int log_axis = vertical ? g->log_y : g->log_x;
  double len = vertical ? g->h : g->w;
  int max = (int)(len / (vertical ? 50 : 80)) + 1;
  if (max > 12) max = 12;
  if (max < 2) max = 2;
  double ticks[32], minor[128];
  int nm = 0;
  int n = log_axis ? bsa__viz_ticks_log(lo, hi, max, ticks, minor, 128, &nm)
                   : bsa__viz_ticks_linear(lo, hi, max, ticks);
  double step = n > 1 ? ticks[1] - ticks[0] : 1;
  char buf[48];
  bsa__viz_font(cr, 12, 0);
  for (int i = 0; i < n + nm; i++) {
    int major = i < n;
    double v = major ? ticks[i] : minor[i - n];
    double px, py;
    bsa_viz_chart_point(g, vertical ? g->x_lo : v, vertical ? v : g->y_lo, &px, &py);
    /* Grid line across the plot. */
    cairo_set_line_width(cr, 1);
    cairo_set_source_rgb(cr, major ? 0.88 : 0.94, major ? 0.88 : 0.94, major ? 0.88 : 0.94);
    if (vertical) {
      cairo_move_to(cr, g->x, round(py) + 0.5);
      cairo_line_to(cr, g->x + g->w, round(py) + 0.5);
    } else {
      cairo_move_to(cr, round(px) + 0.5, g->y);
      cairo_line_to(cr, round(px) + 0.5, g->y + g->h);
    }
    cairo_stroke(cr);
    if (!major) continue;
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    if (vertical) {
      cairo_move_to(cr, g->x - 5, round(py) + 0.5);
      cairo_line_to(cr, g->x, round(py) + 0.5);
    } else {
      cairo_move_to(cr, round(px) + 0.5, g->y + g->h);
      cairo_line_to(cr, round(px) + 0.5, g->y + g->h + 5);
    }
    cairo_stroke(cr);
    bsa__viz_fmt_tick(v, step, log_axis, buf, sizeof buf);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    if (vertical)
      bsa__viz_text(cr, g->x - 8, py, 1, 0.5, buf);
    else
      bsa__viz_text(cr, px, g->y + g->h + 8, 0.5, 0, buf);
  }
}

/* Splits label into at most three lines of the given width at its " · "
 * separators (the last line cut with an ellipsis if need be). */
static int wrap_label(cairo_t *cr, const char *label, double width, char lines[3][256]) {
  static const char sep[] = " \xc2\xb7 ";
  int n = 0;
  const char *p = label;
  while (*p && n < 3) {
    if (n == 2 || bsa__viz_text_width(cr, p) <= width - (n ? 10 : 0)) {
      bsa__viz_text_fit(cr, p, width - (n ? 10 : 0), lines[n], sizeof lines[n]);
      n++;
      break;
    }
    /* The longest prefix ending before a separator that fits. */
    const char *cut = NULL;
    for (const char *q = strstr(p, sep); q; q = strstr(q + 1, sep)) {
      char tmp[256];
      snprintf(tmp, sizeof tmp, "%.*s", (int)(q - p), p);
      if (bsa__viz_text_width(cr, tmp) > width - (n ? 10 : 0)) break;
      cut = q;
    }
    if (!cut) {
      bsa__viz_text_fit(cr, p, width - (n ? 10 : 0), lines[n], sizeof lines[n]);
      n++;
      break;
    }
    snprintf(lines[n], sizeof lines[n], "%.*s", (int)(cut - p), p);
    n++;
    p = cut + strlen(sep);
  }
  if (n == 0) lines[n++][0] = 0;
  return n;
}

bsa_status bsa_viz_chart_render(const bsa_viz_chart *c, const char *png_path) {
  bsa_viz_chart_geom g;
  bsa_status st = bsa_viz_chart_layout(c, &g);
  if (st != BSA_OK) return st;
  bsa__viz_canvas cv;
  st = bsa__viz_canvas_create(g.width, g.height, &cv);
  if (st != BSA_OK) return st;
  cairo_t *cr = cv.cr;

  draw_axis_ticks(cr, &g, 0);
  draw_axis_ticks(cr, &g, 1);

  cairo_save(cr);
  cairo_rectangle(cr, g.x, g.y, g.w, g.h);
  cairo_clip(cr);
  int ref_shown = 0; /* the legend lists the curve only where it shows */
  if (c->ref_label) {
    /* y = coef * x^pow, sampled along the x axis in pixel steps. */
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_set_line_width(cr, 1.5);
    double dash[] = {6, 4};
    cairo_set_dash(cr, dash, 2, 0);
    int started = 0;
    for (int i = 0; i <= (int)g.w; i += 2) {
      double t = i / g.w;
      double x = g.log_x ? pow(10, log10(g.x_lo) + t * (log10(g.x_hi) - log10(g.x_lo)))
                         : g.x_lo + t * (g.x_hi - g.x_lo);
      double y = c->ref_coef * pow(x, c->ref_pow);
      if (!isfinite(y) || (g.log_y && y <= 0)) {
        started = 0;
        continue;
      }
      double px, py;
      bsa_viz_chart_point(&g, x, y, &px, &py);
      if (py < g.y - 4 * g.h || py > g.y + 5 * g.h) { /* far off: restart */
        started = 0;
        continue;
      }
      if (!started)
        cairo_move_to(cr, px, py);
      else
        cairo_line_to(cr, px, py);
      started = 1;
      if (py >= g.y && py <= g.y + g.h) ref_shown = 1;
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
  }
  for (int32_t s = 0; s < c->num_series; s++) {
    const bsa_viz_series *se = &c->series[s];
    uint8_t rgb[3];
    bsa_viz_series_rgb(s, rgb);
    if (se->connect && se->num_points > 1) {
      cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
      cairo_set_line_width(cr, 2);
      draw_series_line(cr, &g, se);
    }
  }
  for (int32_t s = 0; s < c->num_series; s++) {
    const bsa_viz_series *se = &c->series[s];
    uint8_t rgb[3];
    bsa_viz_series_rgb(s, rgb);
    for (int64_t i = 0; i < se->num_points; i++) {
      double px, py;
      bsa_viz_chart_point(&g, se->x[i], se->y[i], &px, &py);
      draw_marker(cr, px, py, rgb);
    }
  }
  cairo_restore(cr);

  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_rectangle(cr, g.x - 0.5, g.y - 0.5, g.w + 1, g.h + 1);
  cairo_stroke(cr);

  /* Axis names. */
  bsa__viz_font(cr, 13, 0);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  char buf[512];
  if (c->x_label) {
    char lab[256];
    snprintf(lab, sizeof lab, "%s%s", c->x_label, g.log_x ? " (log scale)" : "");
    bsa__viz_text(cr, g.x + g.w / 2, g.y + g.h + 32, 0.5, 0, lab);
  }
  if (c->y_label) {
    char lab[256];
    snprintf(lab, sizeof lab, "%s%s", c->y_label, g.log_y ? " (log scale)" : "");
    bsa__viz_text_up(cr, 20, g.y + g.h / 2, lab);
  }

  /* Legend beside the plot: line sample, marker, label (wrapped at its
   * " · " separators onto up to three lines). */
  double lx = g.x + g.w + 20, ly = g.y + 4, lw = g.width - lx - 12;
  int entries = c->num_series + (ref_shown ? 1 : 0);
  bsa__viz_font(cr, 12, 0);
  for (int e = 0; e < entries; e++) {
    const char *label =
        e < c->num_series ? (c->series[e].label ? c->series[e].label : "(unnamed)") : c->ref_label;
    char lines[3][256];
    int nl = wrap_label(cr, label, lw - 32, lines);
    if (ly + 15 * (nl - 1) + 22 > g.y + g.h && e + 1 < entries) {
      snprintf(buf, sizeof buf, "\xe2\x80\xa6 and %d more", entries - e);
      cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      bsa__viz_text(cr, lx, ly, 0, 0.5, buf);
      break;
    }
    if (e < c->num_series) {
      const bsa_viz_series *se = &c->series[e];
      uint8_t rgb[3];
      bsa_viz_series_rgb(e, rgb);
      cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
      if (se->connect) {
        cairo_set_line_width(cr, 2);
        cairo_move_to(cr, lx, ly + 0.5);
        cairo_line_to(cr, lx + 24, ly + 0.5);
        cairo_stroke(cr);
      }
      draw_marker(cr, lx + 12, ly + 0.5, rgb);
    } else {
      cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
      cairo_set_line_width(cr, 1.5);
      double dash[] = {6, 4};
      cairo_set_dash(cr, dash, 2, 0);
      cairo_move_to(cr, lx, ly + 0.5);
      cairo_line_to(cr, lx + 24, ly + 0.5);
      cairo_stroke(cr);
      cairo_set_dash(cr, NULL, 0, 0);
    }
    bsa__viz_font(cr, 12, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    for (int k = 0; k < nl; k++)
      bsa__viz_text(cr, lx + 32 + (k ? 10 : 0), ly + 15 * k, 0, 0.5, lines[k]);
    ly += 22 + 15 * (nl - 1);
  }

  /* Title and subtitle. */
  double text_w = g.width - 24;
  cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
  bsa__viz_font(cr, 16, 1);
  bsa__viz_text_fit(cr, c->title ? c->title : "", text_w, buf, sizeof buf);
  bsa__viz_text(cr, 12, 12, 0, 0, buf);
  if (c->subtitle) {
    bsa__viz_font(cr, 12, 0);
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    bsa__viz_text_fit(cr, c->subtitle, text_w, buf, sizeof buf);
    bsa__viz_text(cr, 12, 36, 0, 0, buf);
  }

  st = bsa__viz_png_write(&cv, c->title, c->meta, c->num_meta, png_path);
  bsa__viz_canvas_destroy(&cv);
  return st;
}
