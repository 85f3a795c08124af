/*
 * viz/logcharts.c - speedup and recall charts from the experiment log.
 *
 * Metrics are read with bsa_runlog_foreach_metric.  A point is a pair of
 * metrics of one successful run with the same record, head and labels:
 * ("speedup", "density") of `bench`, ("recall", "density") of `eval`.
 * Labels are JSON objects; the reader uses the keys it knows (device,
 * layout, kernel, block, blocks, method, dtype, seq, ...) and carries any
 * other key into the series name when its value differs between points, so
 * new labels never merge measurements that should stay apart.
 */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vizint.h"

typedef struct mpoint {
  int64_t run;
  char *record; /* NULL if none */
  int32_t head;
  char *labels;
  double y, density;
  int has_y, has_density;
} mpoint;

typedef struct collect {
  const char *yname;
  const bsa_viz_log_opts *o;
  mpoint *p;
  size_t n, cap;
  int nomem;
} collect;

static int streq_null(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int on_metric(const bsa_runlog_metric_row *r, void *user) {
  collect *c = user;
  int is_y = strcmp(r->name, c->yname) == 0, is_d = strcmp(r->name, "density") == 0;
  if ((!is_y && !is_d) || strcmp(r->run_status, "ok") != 0) return 0;
  if (c->o && c->o->run_ids) {
    int found = 0;
    for (int32_t i = 0; i < c->o->num_run_ids && !found; i++) found = c->o->run_ids[i] == r->run_id;
    if (!found) return 0;
  }
  const char *labels = r->labels_json ? r->labels_json : "{}";
  mpoint *m = NULL;
  /* Rows of one run arrive together: look back within this run only. */
  for (size_t i = c->n; i-- > 0 && c->p[i].run == r->run_id;) {
    mpoint *q = &c->p[i];
    if (q->head == r->head && streq_null(q->record, r->record) && strcmp(q->labels, labels) == 0 &&
        !(is_y ? q->has_y : q->has_density)) {
      m = q;
      break;
    }
  }
  if (!m) {
    if (c->n == c->cap) {
      size_t cap = c->cap ? 2 * c->cap : 256;
      mpoint *np = realloc(c->p, cap * sizeof *np);
      if (!np) {
        c->nomem = 1;
        return 1;
      }
      c->p = np;
      c->cap = cap;
    }
    m = &c->p[c->n];
    memset(m, 0, sizeof *m);
    m->run = r->run_id;
    m->head = r->head;
    m->record = r->record ? strdup(r->record) : NULL;
    m->labels = strdup(labels);
    if ((r->record && !m->record) || !m->labels) {
      free(m->record);
      free(m->labels);
      c->nomem = 1;
      return 1;
    }
    c->n++;
  }
  if (is_y) {
    m->y = r->value;
    m->has_y = 1;
  } else {
    m->density = r->value;
    m->has_density = 1;
  }
  return 0;
}

static void collect_free(collect *c) {
  for (size_t i = 0; i < c->n; i++) {
    free(c->p[i].record);
    free(c->p[i].labels);
  }
  free(c->p);
}

static bsa_status collect_run(bsa_runlog *log, const char *log_path, const char *verb, collect *c) {
  if (!log) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "experiment log is NULL");
  bsa_status st = bsa_runlog_foreach_metric(log, verb, NULL, on_metric, c);
  if (c->nomem) return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory reading the log");
  if (st != BSA_OK)
    return bsa__fail(NULL, st, "experiment log '%s': %s", log_path ? log_path : "",
                     bsa_runlog_last_error(log));
  return BSA_OK;
}

/* The basename of a run's "trace" parameter (the trace its metrics were
 * measured on), or "" when it has none. */
typedef struct param_find {
  const char *name;
  char value[256];
} param_find;

static int on_param(const char *name, const char *value, void *user) {
  param_find *f = user;
  if (strcmp(name, f->name) != 0) return 0;
  const char *slash = strrchr(value, '/');
  snprintf(f->value, sizeof f->value, "%s", slash ? slash + 1 : value);
  return 1;
}

static void run_trace(bsa_runlog *log, int64_t run, char *buf, size_t n) {
  param_find f;
  f.name = "trace";
  f.value[0] = 0;
  if (bsa_runlog_foreach_param(log, run, on_param, &f) != BSA_OK) f.value[0] = 0;
  snprintf(buf, n, "%s", f.value);
}

/* Value of a label as text ("" when absent). */
static void label_text(json_t *obj, const char *key, char *buf, size_t n) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  buf[0] = 0;
  if (!v) return;
  if (json_is_string(v)) {
    snprintf(buf, n, "%s", json_string_value(v));
  } else if (json_is_integer(v)) {
    snprintf(buf, n, "%lld", (long long)json_integer_value(v));
  } else if (json_is_real(v)) {
    snprintf(buf, n, "%g", json_real_value(v));
  } else if (json_is_true(v)) {
    snprintf(buf, n, "true");
  } else if (json_is_false(v)) {
    snprintf(buf, n, "false");
  } else {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, n, "%s", s ? s : "");
    free(s);
  }
}

/* Keys in the order series names show them; the first `always` are shown
 * whenever present, the rest only when their values differ. */
static const char *const known_keys[] = {"device", "layout",   "kernel",   "block",
                                         "blocks", "method",   "dtype",    "seq",
                                         "heads",  "kv_heads", "head_dim", "causal"};
enum { NUM_KNOWN = 12, NUM_ALWAYS = 6 };

static int excluded_key(const char *k) {
  return strcmp(k, "density") == 0 || strcmp(k, "density_target") == 0 ||
         strcmp(k, "record") == 0 || strcmp(k, "run_id") == 0 || strcmp(k, "head") == 0;
}

static void append(char *buf, size_t n, const char *s) {
  size_t k = strlen(buf);
  if (k + 1 < n) snprintf(buf + k, n - k, "%s%s", k ? " \xc2\xb7 " : "", s);
}

static void key_part(const char *key, const char *val, char *out, size_t n) {
  if (strcmp(key, "device") == 0 || strcmp(key, "layout") == 0 || strcmp(key, "dtype") == 0 ||
      strcmp(key, "method") == 0)
    snprintf(out, n, "%s", val);
  else if (strcmp(key, "kernel") == 0)
    snprintf(out, n, "kernel %s", val);
  else if (strcmp(key, "block") == 0)
    snprintf(out, n, "block %s", val);
  else if (strcmp(key, "blocks") == 0)
    snprintf(out, n, "%s blocks", val);
  else if (strcmp(key, "seq") == 0)
    snprintf(out, n, "S=%s", val);
  else if (strcmp(key, "heads") == 0)
    snprintf(out, n, "H=%s", val);
  else if (strcmp(key, "kv_heads") == 0)
    snprintf(out, n, "Hkv=%s", val);
  else if (strcmp(key, "head_dim") == 0)
    snprintf(out, n, "D=%s", val);
  else if (strcmp(key, "causal") == 0)
    snprintf(out, n, "%s",
             strcmp(val, "1") == 0 || strcmp(val, "true") == 0 ? "causal" : "non-causal");
  else
    snprintf(out, n, "%s=%s", key, val);
}

/* A chart's series being built: label and growing point arrays. */
typedef struct sbuild {
  char label[400];
  char key[1024];
  double *x, *y;
  int64_t n, cap;
} sbuild;

static int sb_add(sbuild *s, double x, double y) {
  if (s->n == s->cap) {
    int64_t cap = s->cap ? 2 * s->cap : 16;
    double *nx = realloc(s->x, sizeof(double) * (size_t)cap);
    if (!nx) return -1;
    s->x = nx;
    double *ny = realloc(s->y, sizeof(double) * (size_t)cap);
    if (!ny) return -1;
    s->y = ny;
    s->cap = cap;
  }
  s->x[s->n] = x;
  s->y[s->n] = y;
  s->n++;
  return 0;
}

static int cmp_sbuild(const void *a, const void *b) {
  return strcmp(((const sbuild *)a)->label, ((const sbuild *)b)->label);
}

typedef struct series_set {
  sbuild *s;
  int32_t n, cap;
} series_set;

static sbuild *series_get(series_set *ss, const char *key, const char *label) {
  for (int32_t i = 0; i < ss->n; i++)
    if (strcmp(ss->s[i].key, key) == 0) return &ss->s[i];
  if (ss->n == ss->cap) {
    int32_t cap = ss->cap ? 2 * ss->cap : 8;
    sbuild *ns = realloc(ss->s, sizeof(sbuild) * (size_t)cap);
    if (!ns) return NULL;
    ss->s = ns;
    ss->cap = cap;
  }
  sbuild *s = &ss->s[ss->n++];
  memset(s, 0, sizeof *s);
  snprintf(s->key, sizeof s->key, "%s", key);
  snprintf(s->label, sizeof s->label, "%s", label);
  return s;
}

static void series_free(series_set *ss) {
  for (int32_t i = 0; i < ss->n; i++) {
    free(ss->s[i].x);
    free(ss->s[i].y);
  }
  free(ss->s);
}

/* Renders the series set as a chart. */
static bsa_status render_set(series_set *ss, bsa_viz_chart *chart, const char *png_path,
                             bsa_viz_chart_geom *geom, int connect) {
  qsort(ss->s, (size_t)ss->n, sizeof(sbuild), cmp_sbuild);
  bsa_viz_series *se = calloc((size_t)ss->n, sizeof *se);
  if (!se) return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < ss->n; i++) {
    se[i].label = ss->s[i].label;
    se[i].num_points = ss->s[i].n;
    se[i].x = ss->s[i].x;
    se[i].y = ss->s[i].y;
    se[i].connect = connect;
  }
  chart->series = se;
  chart->num_series = ss->n;
  bsa_status st = BSA_OK;
  if (geom) st = bsa_viz_chart_layout(chart, geom);
  if (st == BSA_OK) st = bsa_viz_chart_render(chart, png_path);
  free(se);
  return st;
}

static void runs_note(const bsa_viz_log_opts *o, char *buf, size_t n) {
  buf[0] = 0;
  if (!o || !o->run_ids) return;
  size_t k = (size_t)snprintf(buf, n, " among runs ");
  for (int32_t i = 0; i < o->num_run_ids && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)o->run_ids[i]);
}

static void chart_from_opts(bsa_viz_chart *c, const bsa_viz_log_opts *o) {
  memset(c, 0, sizeof *c);
  if (o) {
    c->meta = o->meta;
    c->num_meta = o->num_meta;
    c->width = o->width;
    c->height = o->height;
  }
}

/* Counts distinct run ids among used points (they are grouped by run). */
static int64_t count_runs(const int64_t *runs, int64_t n) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) {
    int seen = 0;
    for (int64_t j = 0; j < i && !seen; j++) seen = runs[j] == runs[i];
    k += !seen;
  }
  return k;
}

bsa_status bsa_viz_speedup(bsa_runlog *log, const char *log_path, const bsa_viz_log_opts *opts,
                           const char *png_path, bsa_viz_chart_geom *geom) {
  collect c;
  memset(&c, 0, sizeof c);
  c.yname = "speedup";
  c.o = opts;
  bsa_status st = collect_run(log, log_path, "bench", &c);
  if (st != BSA_OK) {
    collect_free(&c);
    return st;
  }
  json_t **lab = calloc(c.n ? c.n : 1, sizeof *lab);
  int64_t *runs = malloc(sizeof(int64_t) * (c.n ? c.n : 1));
  double *xs = malloc(sizeof(double) * (c.n ? c.n : 1));
  series_set ss;
  memset(&ss, 0, sizeof ss);
  if (!lab || !runs || !xs) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
    goto done;
  }
  /* Usable points: a speedup and a density (measured, else the target),
   * both positive, not the dense baseline itself. */
  int64_t used = 0;
  char lab_trace[256] = "";
  int lab_trace_valid = 0;
  for (size_t i = 0; i < c.n; i++) {
    mpoint *m = &c.p[i];
    if (i > 0 && c.p[i - 1].run != m->run) lab_trace_valid = 0;
    json_t *o = json_loads(m->labels, 0, NULL);
    if (!json_is_object(o)) {
      json_decref(o);
      continue;
    }
    char layout[64];
    label_text(o, "layout", layout, sizeof layout);
    double x = m->has_density ? m->density : NAN;
    if (!(x > 0)) {
      json_t *t = json_object_get(o, "density_target");
      x = json_is_number(t) ? json_number_value(t) : NAN;
    }
    if (!m->has_y || strcmp(layout, "dense") == 0 || !(x > 0) || !(m->y > 0) || !isfinite(x) ||
        !isfinite(m->y)) {
      json_decref(o);
      continue;
    }
    /* Measurements on a trace (bench --masks) name it: a series never
     * mixes traces. */
    if (!json_object_get(o, "trace")) {
      char tr[256];
      if (!lab_trace_valid) {
        run_trace(log, m->run, lab_trace, sizeof lab_trace);
        lab_trace_valid = 1;
      }
      snprintf(tr, sizeof tr, "%s", lab_trace);
      if (tr[0]) json_object_set_new(o, "trace", json_string(tr));
    }
    lab[used] = o;
    xs[used] = x;
    runs[used] = m->run;
    c.p[used].y = m->y; /* compact: point `used` keeps its y */
    used++;
  }
  if (used == 0) {
    char note[256];
    runs_note(opts, note, sizeof note);
    st = bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                   "experiment log '%s' has no successful bench runs with "
                   "speedup and density metrics%s (run `bsa bench` first)",
                   log_path ? log_path : "", note);
    goto done;
  }

  /* Which of the other keys vary between points. */
  const char *extra[64] = {0};
  int nextra = 0;
  for (int64_t i = 0; i < used; i++) {
    const char *k;
    json_t *v;
    json_object_foreach(lab[i], k, v) {
      int known = 0;
      for (int j = 0; j < NUM_KNOWN && !known; j++) known = strcmp(k, known_keys[j]) == 0;
      int have = 0;
      for (int j = 0; j < nextra && !have; j++) have = strcmp(extra[j], k) == 0;
      if (!known && !have && !excluded_key(k) && nextra < 64) extra[nextra++] = k;
    }
  }
  int varies[NUM_KNOWN + 64];
  for (int j = 0; j < NUM_KNOWN + nextra; j++) {
    const char *k = j < NUM_KNOWN ? known_keys[j] : extra[j - NUM_KNOWN];
    char first[256], cur[256];
    label_text(lab[0], k, first, sizeof first);
    varies[j] = 0;
    for (int64_t i = 1; i < used && !varies[j]; i++) {
      label_text(lab[i], k, cur, sizeof cur);
      varies[j] = strcmp(first, cur) != 0;
    }
  }
  for (int64_t i = 0; i < used; i++) {
    char key[1024] = "", label[400] = "", val[256], part[300];
    for (int j = 0; j < NUM_KNOWN + nextra; j++) {
      const char *k = j < NUM_KNOWN ? known_keys[j] : extra[j - NUM_KNOWN];
      label_text(lab[i], k, val, sizeof val);
      size_t kl = strlen(key);
      snprintf(key + kl, sizeof key - kl, "%s=%s;", k, val);
      if (val[0] && (j < NUM_ALWAYS || varies[j])) {
        key_part(k, val, part, sizeof part);
        append(label, sizeof label, part);
      }
    }
    sbuild *s = series_get(&ss, key, label[0] ? label : "(no labels)");
    if (!s || sb_add(s, xs[i], c.p[i].y) != 0) {
      st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
      goto done;
    }
  }

  bsa_viz_chart chart;
  chart_from_opts(&chart, opts);
  char sub[512];
  int64_t nruns = count_runs(runs, used);
  snprintf(sub, sizeof sub,
           "%lld measurement%s from %lld bench run%s in %s \xc2\xb7 lines join the "
           "median of each density",
           (long long)used, used == 1 ? "" : "s", (long long)nruns, nruns == 1 ? "" : "s",
           log_path ? log_path : "the experiment log");
  chart.title = "Speedup over dense attention against density";
  chart.subtitle = sub;
  chart.x_label = "density (share of query-key pairs computed)";
  chart.y_label = "speedup over dense";
  chart.log_x = 1;
  chart.log_y = 1;
  chart.ref_label = "ideal: 1 / density";
  chart.ref_coef = 1;
  chart.ref_pow = -1;
  st = render_set(&ss, &chart, png_path, geom, 1);
done:
  if (lab)
    for (size_t i = 0; i < c.n; i++) json_decref(lab[i]);
  free(lab);
  free(runs);
  free(xs);
  series_free(&ss);
  collect_free(&c);
  return st;
}

bsa_status bsa_viz_recall(bsa_runlog *log, const char *log_path, const bsa_viz_log_opts *opts,
                          const char *png_path, bsa_viz_chart_geom *geom) {
  collect c;
  memset(&c, 0, sizeof c);
  c.yname = "recall";
  c.o = opts;
  bsa_status st = collect_run(log, log_path, "eval", &c);
  if (st != BSA_OK) {
    collect_free(&c);
    return st;
  }
  series_set ss;
  memset(&ss, 0, sizeof ss);
  int64_t *runs = malloc(sizeof(int64_t) * (c.n ? c.n : 1));
  int64_t nused = 0;
  if (!runs) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
    goto done;
  }
  /* For each run: each record's value (its summary, head -1, or else the
   * mean of its heads), then per method the mean over its records. */
  typedef struct rpt {
    char method[200];
    const char *record;
    int summary;
    double x, y;
    int done;
  } rpt;
  rpt *rp = malloc(sizeof(rpt) * (c.n ? c.n : 1));
  if (!rp) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < c.n;) {
    size_t j = i, n = 0;
    while (j < c.n && c.p[j].run == c.p[i].run) j++;
    char trace[256];
    run_trace(log, c.p[i].run, trace, sizeof trace);
    for (size_t a = i; a < j; a++) {
      mpoint *m = &c.p[a];
      if (!m->has_y || !m->has_density || !isfinite(m->y) || !isfinite(m->density)) continue;
      json_t *o = json_loads(m->labels, 0, NULL);
      label_text(json_is_object(o) ? o : NULL, "method", rp[n].method, sizeof rp[n].method);
      json_decref(o);
      if (!rp[n].method[0]) snprintf(rp[n].method, sizeof rp[n].method, "(method not recorded)");
      rp[n].record = m->record;
      rp[n].summary = m->head < 0;
      rp[n].x = m->density;
      rp[n].y = m->y;
      rp[n].done = 0;
      n++;
    }
    for (size_t a = 0; a < n; a++) {
      if (rp[a].done) continue;
      /* All records of this method in this run. */
      double sx = 0, sy = 0;
      int64_t nrec = 0;
      for (size_t b = a; b < n; b++) {
        if (rp[b].done || strcmp(rp[b].method, rp[a].method) != 0) continue;
        int has_summary = 0;
        for (size_t d = b; d < n; d++)
          has_summary |= !rp[d].done && rp[d].summary && strcmp(rp[d].method, rp[a].method) == 0 &&
                         streq_null(rp[d].record, rp[b].record);
        double hx = 0, hy = 0;
        int64_t nh = 0;
        for (size_t d = b; d < n; d++) {
          if (rp[d].done || strcmp(rp[d].method, rp[a].method) != 0 ||
              !streq_null(rp[d].record, rp[b].record))
            continue;
          if (rp[d].summary == has_summary) {
            hx += rp[d].x;
            hy += rp[d].y;
            nh++;
          }
          rp[d].done = 1;
        }
        if (nh) {
          sx += hx / nh;
          sy += hy / nh;
          nrec++;
        }
      }
      if (nrec == 0) continue;
      double x = sx / nrec, y = sy / nrec;
      if (!(x > 0)) continue;
      char key[600];
      snprintf(key, sizeof key, "%s\x1f%s", rp[a].method, trace);
      sbuild *s = series_get(&ss, key, rp[a].method);
      if (!s || sb_add(s, x, y) != 0) {
        free(rp);
        st = bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
        goto done;
      }
      runs[nused++] = c.p[i].run;
    }
    i = j;
  }
  free(rp);
  if (nused == 0) {
    char note[256];
    runs_note(opts, note, sizeof note);
    st = bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                   "experiment log '%s' has no successful eval runs with recall "
                   "and density metrics%s (run `bsa eval` first)",
                   log_path ? log_path : "", note);
    goto done;
  }
  /* Name the trace in the series names when the runs used several. */
  int traces_vary = 0;
  for (int32_t k = 1; k < ss.n && !traces_vary; k++)
    traces_vary = strcmp(strchr(ss.s[k].key, '\x1f'), strchr(ss.s[0].key, '\x1f')) != 0;
  if (traces_vary)
    for (int32_t k = 0; k < ss.n; k++) {
      const char *tr = strchr(ss.s[k].key, '\x1f') + 1;
      size_t len = strlen(ss.s[k].label);
      snprintf(ss.s[k].label + len, sizeof ss.s[k].label - len, " \xc2\xb7 %s",
               tr[0] ? tr : "(trace not recorded)");
    }
  bsa_viz_chart chart;
  chart_from_opts(&chart, opts);
  double xmn = INFINITY, xmx = 0, ymn = INFINITY, ymx = -INFINITY;
  for (int32_t s = 0; s < ss.n; s++)
    for (int64_t k = 0; k < ss.s[s].n; k++) {
      xmn = fmin(xmn, ss.s[s].x[k]);
      xmx = fmax(xmx, ss.s[s].x[k]);
      ymn = fmin(ymn, ss.s[s].y[k]);
      ymx = fmax(ymx, ss.s[s].y[k]);
    }
  chart.log_x = xmx / xmn >= 8;
  /* Recall lives in [0, 1]: keep the axis there, with room around the data. */
  double pad = fmax(0.05 * (ymx - ymn), 0.02);
  chart.y_lo = fmax(0, ymn - pad);
  chart.y_hi = fmin(1.02, ymx + pad);
  if (!(chart.y_hi > chart.y_lo)) {
    chart.y_lo = 0;
    chart.y_hi = 1.02;
  }
  char sub[512];
  int64_t nruns = count_runs(runs, nused);
  snprintf(sub, sizeof sub,
           "%lld eval run%s in %s \xc2\xb7 a point per run and method: mean over "
           "its records",
           (long long)nruns, nruns == 1 ? "" : "s", log_path ? log_path : "the experiment log");
  chart.title = "Attention recall against density";
  chart.subtitle = sub;
  chart.x_label = "density (share of query-key pairs kept)";
  chart.y_label = "recall (share of attention mass kept)";
  chart.ref_label = "random blocks: recall = density";
  chart.ref_coef = 1;
  chart.ref_pow = 1;
  st = render_set(&ss, &chart, png_path, geom, 1);
done:
  free(runs);
  series_free(&ss);
  collect_free(&c);
  return st;
}
