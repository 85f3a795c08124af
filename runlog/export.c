/*
 * runlog/export.c - the log as one flat table (CSV or JSON) that pandas and
 * spreadsheets read without help, and one run as a line of JSON.
 *
 * Table columns, in this order (docs/runlog.md):
 *   run_id, verb, status, started_at, ended_at, host, device, device_driver,
 *   bsa_version, param.NAME... (sorted), metric, value, record, head,
 *   label.KEY... (sorted)
 * One row per metric; a run without (matching) metrics gets one row with an
 * empty metric so that failed runs are not lost from the table.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runlog_int.h"

/* ---- a sorted set of strings ------------------------------------------ */

typedef struct strset {
  char **v;
  size_t n, cap;
} strset;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Index of s, inserting it if new; -1 on ENOMEM. */
static long strset_add(strset *set, const char *s) {
  size_t lo = 0, hi = set->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(set->v[mid], s);
    if (c == 0) return (long)mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (set->n == set->cap) {
    size_t cap = set->cap ? 2 * set->cap : 16;
    char **v = realloc(set->v, cap * sizeof *v);
    if (!v) return -1;
    set->v = v;
    set->cap = cap;
  }
  char *copy = strdup(s);
  if (!copy) return -1;
  memmove(set->v + lo + 1, set->v + lo, (set->n - lo) * sizeof *set->v);
  set->v[lo] = copy;
  set->n++;
  return (long)lo;
}

static long strset_find(const strset *set, const char *s) {
  char *const *hit = set->n ? bsearch(&s, set->v, set->n, sizeof *set->v, cmp_str) : NULL;
  return hit ? (long)(hit - set->v) : -1;
}

static void strset_free(strset *set) {
  for (size_t i = 0; i < set->n; i++) free(set->v[i]);
  free(set->v);
}

/* ---- the selected runs, held in memory -------------------------------- */

typedef struct run_info {
  int64_t id;
  char *verb, *status, *started_at, *ended_at, *host, *device, *driver, *version;
  strset pnames; /* parameter names and values, pvalues[i] for pnames.v[i] */
  char **pvalues;
} run_info;

typedef struct export_ctx {
  bsa_runlog *log;
  run_info *runs;
  size_t n, cap;
  strset params; /* all parameter names */
  strset labels; /* all label keys */
  int nomem;
} export_ctx;

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* prefix + s, malloc'ed. */
static char *prefixed(const char *prefix, const char *s) {
  size_t n = strlen(prefix) + strlen(s) + 1;
  char *out = malloc(n);
  if (out) snprintf(out, n, "%s%s", prefix, s);
  return out;
}

static int collect_run(const bsa_runlog_run_row *row, void *user) {
  export_ctx *x = user;
  if (x->n == x->cap) {
    size_t cap = x->cap ? 2 * x->cap : 64;
    run_info *v = realloc(x->runs, cap * sizeof *v);
    if (!v) return x->nomem = 1;
    x->runs = v;
    x->cap = cap;
  }
  run_info *r = &x->runs[x->n++];
  memset(r, 0, sizeof *r);
  r->id = row->id;
  r->verb = dup_or_null(row->verb);
  r->status = dup_or_null(row->status);
  r->started_at = dup_or_null(row->started_at);
  r->ended_at = dup_or_null(row->ended_at);
  r->host = dup_or_null(row->host);
  r->device = dup_or_null(row->device_name);
  r->driver = dup_or_null(row->device_driver);
  r->version = dup_or_null(row->bsa_version);
  return 0;
}

typedef struct param_ctx {
  export_ctx *x;
  run_info *r;
} param_ctx;

static int collect_param(const char *name, const char *value, void *user) {
  param_ctx *p = user;
  long i = strset_add(&p->r->pnames, name);
  long g = strset_add(&p->x->params, name);
  if (i < 0 || g < 0) return p->x->nomem = 1;
  /* Parameters arrive sorted by name, so each lands at the end. */
  char **v = realloc(p->r->pvalues, p->r->pnames.n * sizeof *v);
  if (!v) return p->x->nomem = 1;
  p->r->pvalues = v;
  v[i] = strdup(value);
  return v[i] ? 0 : (p->x->nomem = 1);
}

static void run_info_free(run_info *r) {
  free(r->verb);
  free(r->status);
  free(r->started_at);
  free(r->ended_at);
  free(r->host);
  free(r->device);
  free(r->driver);
  free(r->version);
  for (size_t i = 0; i < r->pnames.n; i++) free(r->pvalues[i]);
  free(r->pvalues);
  strset_free(&r->pnames);
}

/* ---- writing cells ------------------------------------------------------- */

typedef struct writer {
  FILE *f;
  bsa_runlog_format format;
  const strset *labels;
  int col;                  /* index of the next cell in the row */
  const char *const *names; /* column names (JSON keys) */
} writer;

static void cell_sep(writer *w) {
  if (w->format == BSA_RUNLOG_FORMAT_CSV) {
    if (w->col) fputc(',', w->f);
  } else {
    fputs(w->col ? "," : "{", w->f);
    bsa__json_string(w->f, w->names[w->col]);
    fputc(':', w->f);
  }
  w->col++;
}

static void cell_text(writer *w, const char *s) {
  cell_sep(w);
  if (w->format == BSA_RUNLOG_FORMAT_CSV)
    bsa__csv_field(w->f, s);
  else if (s)
    bsa__json_string(w->f, s);
  else
    fputs("null", w->f);
}

static void cell_int(writer *w, int64_t v, int present) {
  cell_sep(w);
  if (present)
    fprintf(w->f, "%" PRId64, v);
  else if (w->format == BSA_RUNLOG_FORMAT_JSON)
    fputs("null", w->f);
}

/* NaN and infinities: "nan"/"inf" in CSV (pandas reads them), null in JSON
 * (which has no such numbers). */
static void cell_real(writer *w, double v, int present) {
  cell_sep(w);
  char buf[40];
  if (present && (w->format == BSA_RUNLOG_FORMAT_CSV || isfinite(v))) {
    bsa__fmt_double(v, buf);
    fputs(buf, w->f);
  } else if (w->format == BSA_RUNLOG_FORMAT_JSON) {
    fputs("null", w->f);
  }
}

/* A label value: strings as text, numbers as numbers, anything nested as its
 * compact JSON text. */
static void cell_json(writer *w, json_t *v) {
  if (!v || json_is_null(v)) {
    cell_text(w, NULL);
  } else if (json_is_string(v)) {
    cell_text(w, json_string_value(v));
  } else if (json_is_integer(v)) {
    cell_int(w, (int64_t)json_integer_value(v), 1);
  } else if (json_is_real(v)) {
    cell_real(w, json_real_value(v), 1);
  } else if (json_is_boolean(v)) {
    cell_sep(w);
    fputs(json_is_true(v) ? "true" : "false", w->f);
  } else {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (w->format == BSA_RUNLOG_FORMAT_CSV) {
      cell_text(w, text ? text : "");
    } else {
      cell_sep(w);
      fputs(text ? text : "null", w->f);
    }
    free(text);
  }
}

/* The run's columns and its parameters: the left part of every row. */
static void write_run_cells(writer *w, const export_ctx *x, const run_info *r) {
  w->col = 0;
  cell_int(w, r->id, 1);
  cell_text(w, r->verb);
  cell_text(w, r->status);
  cell_text(w, r->started_at);
  cell_text(w, r->ended_at);
  cell_text(w, r->host);
  cell_text(w, r->device);
  cell_text(w, r->driver);
  cell_text(w, r->version);
  for (size_t i = 0; i < x->params.n; i++) {
    long k = strset_find(&r->pnames, x->params.v[i]);
    cell_text(w, k >= 0 ? r->pvalues[k] : NULL);
  }
}

static void end_row(writer *w) { fputs(w->format == BSA_RUNLOG_FORMAT_CSV ? "\r\n" : "}", w->f); }

/* ---- the two passes over metrics ----------------------------------------- */

typedef struct metric_pass {
  export_ctx *x;
  const char *metric; /* only this name, or NULL */
  writer *w;          /* NULL: first pass (collect label keys) */
  const run_info *run;
  int64_t rows;     /* rows written */
  int64_t run_rows; /* metric rows of the current run */
  int bad_labels;
} metric_pass;

static int metric_cb(const bsa_runlog_metric_row *m, void *user) {
  metric_pass *p = user;
  if (p->metric && strcmp(m->name, p->metric) != 0) return 0;
  json_t *labels = json_loads(m->labels_json ? m->labels_json : "{}", 0, NULL);
  if (!json_is_object(labels)) p->bad_labels = 1;
  const char *key;
  json_t *val;
  if (!p->w) {
    if (json_is_object(labels))
      json_object_foreach(labels, key, val) if (strset_add(&p->x->labels, key) < 0) p->x->nomem = 1;
    json_decref(labels);
    return p->x->nomem;
  }
  writer *w = p->w;
  if (w->format == BSA_RUNLOG_FORMAT_JSON) fputs(p->rows ? ",\n" : "\n", w->f);
  write_run_cells(w, p->x, p->run);
  cell_text(w, m->name);
  cell_real(w, m->value, 1);
  cell_text(w, m->record);
  cell_int(w, m->head, m->head >= 0);
  for (size_t i = 0; i < p->x->labels.n; i++)
    cell_json(w, json_is_object(labels) ? json_object_get(labels, p->x->labels.v[i]) : NULL);
  end_row(w);
  json_decref(labels);
  p->rows++;
  p->run_rows++;
  return 0;
}

bsa_status bsa_runlog_export(bsa_runlog *log, const bsa_runlog_filter *filter, const char *metric,
                             bsa_runlog_format format, FILE *out) {
  if (!log || !out)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_export: %s is NULL",
                            log ? "out" : "log");
  if (format != BSA_RUNLOG_FORMAT_CSV && format != BSA_RUNLOG_FORMAT_JSON)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG,
                            "bsa_runlog_export: format = %d (0 = CSV, 1 = JSON)", (int)format);
  export_ctx x = {.log = log};
  bsa_status s = bsa_runlog_foreach_run(log, filter, collect_run, &x);
  /* Rows go out in run order whatever order selected them. */
  if (s == BSA_OK && filter && filter->newest_first)
    for (size_t i = 0; i < x.n / 2; i++) {
      run_info t = x.runs[i];
      x.runs[i] = x.runs[x.n - 1 - i];
      x.runs[x.n - 1 - i] = t;
    }
  for (size_t i = 0; s == BSA_OK && !x.nomem && i < x.n; i++) {
    param_ctx pc = {&x, &x.runs[i]};
    s = bsa_runlog_foreach_param(log, x.runs[i].id, collect_param, &pc);
  }
  metric_pass pass = {.x = &x, .metric = metric};
  for (size_t i = 0; s == BSA_OK && !x.nomem && i < x.n; i++)
    s = bsa_runlog_foreach_run_metric(log, x.runs[i].id, metric_cb, &pass);
  if (s == BSA_OK && x.nomem) s = bsa__runlog_fail(log, BSA_ERR_NOMEM, "out of memory");

  /* Column names: fixed ones, then param.NAME, then the metric's, label.KEY. */
  size_t ncols = 9 + x.params.n + 4 + x.labels.n;
  char **names = s == BSA_OK ? calloc(ncols, sizeof *names) : NULL;
  if (s == BSA_OK && !names) s = bsa__runlog_fail(log, BSA_ERR_NOMEM, "out of memory");
  if (s == BSA_OK) {
    static const char *const fixed1[] = {"run_id",     "verb",          "status",
                                         "started_at", "ended_at",      "host",
                                         "device",     "device_driver", "bsa_version"};
    static const char *const fixed2[] = {"metric", "value", "record", "head"};
    size_t c = 0;
    for (size_t i = 0; i < 9; i++) names[c++] = strdup(fixed1[i]);
    for (size_t i = 0; i < x.params.n; i++) names[c++] = prefixed("param.", x.params.v[i]);
    for (size_t i = 0; i < 4; i++) names[c++] = strdup(fixed2[i]);
    for (size_t i = 0; i < x.labels.n; i++) names[c++] = prefixed("label.", x.labels.v[i]);
    for (size_t i = 0; i < ncols; i++)
      if (!names[i]) s = bsa__runlog_fail(log, BSA_ERR_NOMEM, "out of memory");
  }

  if (s == BSA_OK) {
    writer w = {
        .f = out, .format = format, .labels = &x.labels, .names = (const char *const *)names};
    if (format == BSA_RUNLOG_FORMAT_CSV) {
      for (size_t i = 0; i < ncols; i++) {
        if (i) fputc(',', out);
        bsa__csv_field(out, names[i]);
      }
      fputs("\r\n", out);
    } else {
      fputc('[', out);
    }
    pass.w = &w;
    for (size_t i = 0; s == BSA_OK && i < x.n; i++) {
      pass.run = &x.runs[i];
      pass.run_rows = 0;
      s = bsa_runlog_foreach_run_metric(log, x.runs[i].id, metric_cb, &pass);
      if (s == BSA_OK && pass.run_rows == 0 && !metric) {
        if (format == BSA_RUNLOG_FORMAT_JSON) fputs(pass.rows ? ",\n" : "\n", out);
        write_run_cells(&w, &x, &x.runs[i]);
        cell_text(&w, NULL);
        cell_real(&w, NAN, 0);
        cell_text(&w, NULL);
        cell_int(&w, 0, 0);
        for (size_t k = 0; k < x.labels.n; k++) cell_text(&w, NULL);
        end_row(&w);
        pass.rows++;
      }
    }
    if (format == BSA_RUNLOG_FORMAT_JSON) fputs("\n]\n", out);
    if (s == BSA_OK && (fflush(out) != 0 || ferror(out)))
      s = bsa__runlog_fail(log, BSA_ERR_IO, "cannot write the export: output error");
  }

  if (names)
    for (size_t i = 0; i < ncols; i++) free(names[i]);
  free(names);
  for (size_t i = 0; i < x.n; i++) run_info_free(&x.runs[i]);
  free(x.runs);
  strset_free(&x.params);
  strset_free(&x.labels);
  return s;
}

/* ---- one run as JSON ----------------------------------------------------- */

static void kv_text(FILE *f, const char *key, const char *v) {
  fputc(',', f);
  bsa__json_string(f, key);
  fputc(':', f);
  if (v)
    bsa__json_string(f, v);
  else
    fputs("null", f);
}

static void kv_real(FILE *f, const char *key, double v) {
  char buf[40];
  fputc(',', f);
  bsa__json_string(f, key);
  fputc(':', f);
  if (isfinite(v)) {
    bsa__fmt_double(v, buf);
    fputs(buf, f);
  } else {
    fputs("null", f);
  }
}

typedef struct json_run_ctx {
  FILE *f;
  bsa_runlog *log;
  int with_details;
  int found;
  int first;             /* no element written yet in the current array/object */
  const char *direction; /* files wanted: "input" or "output" */
  bsa_status status;
} json_run_ctx;

static int json_param(const char *name, const char *value, void *user) {
  json_run_ctx *c = user;
  if (!c->first) fputc(',', c->f);
  c->first = 0;
  bsa__json_string(c->f, name);
  fputc(':', c->f);
  bsa__json_string(c->f, value);
  return 0;
}

static int json_file(const bsa_runlog_file_row *r, void *user) {
  json_run_ctx *c = user;
  if (strcmp(r->direction, c->direction) != 0) return 0;
  fputs(c->first ? "{" : ",{", c->f);
  c->first = 0;
  fputs("\"role\":", c->f);
  bsa__json_string(c->f, r->role);
  kv_text(c->f, "path", r->path);
  kv_text(c->f, "abs_path", r->abs_path);
  fprintf(c->f, ",\"size\":%" PRId64, r->size);
  kv_text(c->f, "sha256", r->sha256);
  fputc('}', c->f);
  return 0;
}

static int json_metric(const bsa_runlog_metric_row *m, void *user) {
  json_run_ctx *c = user;
  fputs(c->first ? "{" : ",{", c->f);
  c->first = 0;
  fputs("\"name\":", c->f);
  bsa__json_string(c->f, m->name);
  kv_real(c->f, "value", m->value);
  kv_text(c->f, "record", m->record);
  if (m->head >= 0)
    fprintf(c->f, ",\"head\":%d", (int)m->head);
  else
    fputs(",\"head\":null", c->f);
  /* Stored minified by SQLite's json(): already valid JSON text. */
  fprintf(c->f, ",\"labels\":%s}", m->labels_json ? m->labels_json : "{}");
  return 0;
}

static int json_run(const bsa_runlog_run_row *r, void *user) {
  json_run_ctx *c = user;
  FILE *f = c->f;
  c->found = 1;
  fprintf(f, "{\"id\":%" PRId64, r->id);
  kv_text(f, "verb", r->verb);
  kv_text(f, "status", r->status);
  kv_text(f, "recorded_status", r->recorded_status);
  kv_text(f, "started_at", r->started_at);
  kv_text(f, "ended_at", r->ended_at);
  kv_real(f, "duration_s", r->duration_s);
  kv_text(f, "host", r->host);
  fprintf(f, ",\"pid\":%" PRId64, r->pid);
  kv_text(f, "cwd", r->cwd);
  kv_text(f, "command", r->command);
  fprintf(f, ",\"argv\":%s", r->argv_json ? r->argv_json : "[]");
  kv_text(f, "bsa_version", r->bsa_version);
  kv_text(f, "build_info", r->build_info);
  kv_text(f, "device", r->device_name);
  kv_text(f, "device_driver", r->device_driver);
  kv_text(f, "error", r->error);
  fprintf(f,
          ",\"num_params\":%" PRId64 ",\"num_inputs\":%" PRId64 ",\"num_outputs\":%" PRId64
          ",\"num_metrics\":%" PRId64,
          r->num_params, r->num_inputs, r->num_outputs, r->num_metrics);
  if (c->with_details) {
    fputs(",\"params\":{", f);
    c->first = 1;
    bsa_status s = bsa_runlog_foreach_param(c->log, r->id, json_param, c);
    fputc('}', f);
    static const char *const dirs[2] = {"input", "output"};
    for (int d = 0; d < 2 && s == BSA_OK; d++) {
      fprintf(f, ",\"%ss\":[", dirs[d]);
      c->first = 1;
      c->direction = dirs[d];
      s = bsa_runlog_foreach_file(c->log, r->id, json_file, c);
      fputc(']', f);
    }
    if (s == BSA_OK) {
      fputs(",\"metrics\":[", f);
      c->first = 1;
      s = bsa_runlog_foreach_run_metric(c->log, r->id, json_metric, c);
      fputc(']', f);
    }
    c->status = s;
  }
  fputs("}\n", f);
  return 1;
}

bsa_status bsa_runlog_write_run_json(bsa_runlog *log, int64_t run_id, int with_details, FILE *out) {
  if (!log || !out)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_write_run_json: %s is NULL",
                            log ? "out" : "log");
  if (run_id <= 0)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG,
                            "run id %lld is not a run id (ids start at 1)", (long long)run_id);
  bsa_runlog_filter f = {.run_id = run_id};
  json_run_ctx c = {.f = out, .with_details = with_details, .log = log};
  bsa_status s = bsa_runlog_foreach_run(log, &f, json_run, &c);
  if (s == BSA_OK) s = c.status;
  if (s == BSA_OK && (fflush(out) != 0 || ferror(out)))
    s = bsa__runlog_fail(log, BSA_ERR_IO, "cannot write run %lld as JSON: output error",
                         (long long)run_id);
  if (s == BSA_OK && !c.found)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "no run %lld in the experiment log '%s'",
                            (long long)run_id, log->path);
  return s;
}
