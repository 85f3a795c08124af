/*
 * runlog/query.c - reading the log: runs by filter, a run's parameters,
 * files and metrics, and metrics across runs for charts.
 *
 * The status readers see comes from the SQL function bsa_status(), which
 * turns a stored "running" into "interrupted" when its process is gone (see
 * sysinfo.c); it is registered on each connection, so filters on status
 * work in SQL.  Only placeholders are ever put into SQL text.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runlog_int.h"

static const char *col_text(sqlite3_stmt *st, int i) {
  return (const char *)sqlite3_column_text(st, i);
}

static int64_t col_int_or(sqlite3_stmt *st, int i, int64_t none) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? none : sqlite3_column_int64(st, i);
}

static double col_real_or_nan(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* bsa_status(status, host, pid, boot_id, proc_start) */
static void status_fn(sqlite3_context *ctx, int argc, sqlite3_value **v) {
  (void)argc;
  const bsa_runlog *log = sqlite3_user_data(ctx);
  const char *s = bsa__runlog_effective_status(
      log, (const char *)sqlite3_value_text(v[0]), (const char *)sqlite3_value_text(v[1]),
      sqlite3_value_int64(v[2]), (const char *)sqlite3_value_text(v[3]),
      sqlite3_value_type(v[4]) == SQLITE_NULL ? -1 : sqlite3_value_int64(v[4]));
  sqlite3_result_text(ctx, s, -1, SQLITE_STATIC);
}

int bsa__runlog_register_functions(bsa_runlog *log) {
  return sqlite3_create_function_v2(log->db, "bsa_status", 5, SQLITE_UTF8 | SQLITE_DIRECTONLY, log,
                                    status_fn, NULL, NULL, NULL);
}

#define STATUS_EXPR "bsa_status(r.status, r.host, r.pid, r.boot_id, r.proc_start)"

static bsa_status prepare(bsa_runlog *log, const char *sql, sqlite3_stmt **st, const char *what) {
  if (sqlite3_prepare_v2(log->db, sql, -1, st, NULL) != SQLITE_OK) {
    sqlite3_finalize(*st);
    *st = NULL;
    return bsa__runlog_fail_db(log, what);
  }
  return BSA_OK;
}

/* Steps st to its end, calling row(st) for each row until it returns
 * non-zero.  Finalizes st. */
static bsa_status walk(bsa_runlog *log, sqlite3_stmt *st, const char *what,
                       int (*row)(sqlite3_stmt *st, void *ctx), void *ctx) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    if (row(st, ctx)) {
      rc = SQLITE_DONE;
      break;
    }
  bsa_status s = rc == SQLITE_DONE ? BSA_OK : bsa__runlog_fail_db(log, what);
  sqlite3_finalize(st);
  return s;
}

/* ---- runs ----------------------------------------------------------------- */

typedef struct run_walk {
  bsa_runlog_run_cb cb;
  void *user;
} run_walk;

static int run_row(sqlite3_stmt *st, void *ctx) {
  run_walk *w = ctx;
  bsa_runlog_run_row r = {
      .id = sqlite3_column_int64(st, 0),
      .verb = col_text(st, 1),
      .status = col_text(st, 2),
      .recorded_status = col_text(st, 3),
      .started_at = col_text(st, 4),
      .ended_at = col_text(st, 5),
      .duration_s = col_real_or_nan(st, 6),
      .command = col_text(st, 7),
      .argv_json = col_text(st, 8),
      .cwd = col_text(st, 9),
      .host = col_text(st, 10),
      .pid = sqlite3_column_int64(st, 11),
      .bsa_version = col_text(st, 12),
      .build_info = col_text(st, 13),
      .device_name = col_text(st, 14),
      .device_driver = col_text(st, 15),
      .error = col_text(st, 16),
      .num_params = sqlite3_column_int64(st, 17),
      .num_inputs = sqlite3_column_int64(st, 18),
      .num_outputs = sqlite3_column_int64(st, 19),
      .num_metrics = sqlite3_column_int64(st, 20),
  };
  return w->cb(&r, w->user);
}

bsa_status bsa_runlog_foreach_run(bsa_runlog *log, const bsa_runlog_filter *filter,
                                  bsa_runlog_run_cb cb, void *user) {
  if (!log || !cb)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_foreach_run: %s is NULL",
                            log ? "cb" : "log");
  bsa_runlog_filter none = {0};
  const bsa_runlog_filter *f = filter ? filter : &none;
  static const char *const statuses[] = {"ok", "failed", "running", "interrupted"};
  if (f->status) {
    int known = 0;
    for (int i = 0; i < 4; i++) known |= strcmp(f->status, statuses[i]) == 0;
    if (!known)
      return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG,
                              "status '%s' is not one of ok, failed, running, interrupted",
                              f->status);
  }
  if (f->num_params < 0 || (f->num_params > 0 && (!f->param_names || !f->param_values)))
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG,
                            "bsa_runlog_foreach_run: num_params = %d without names/values",
                            f->num_params);

  /* The SQL text depends only on which conditions are set; values are bound
   * below in the same order. */
  char *sql = NULL;
  size_t len = 0;
  FILE *q = open_memstream(&sql, &len);
  if (!q) return bsa__runlog_fail(log, BSA_ERR_NOMEM, "out of memory");
  fputs("SELECT r.id, r.verb, " STATUS_EXPR
        ", r.status, r.started_at, r.ended_at,"
        " round((julianday(r.ended_at) - julianday(r.started_at)) * 86400.0, 3),"
        " r.command, r.argv_json, r.cwd, r.host, r.pid, r.bsa_version, r.build_info,"
        " r.device_name, r.device_driver, r.error,"
        " (SELECT count(*) FROM params p WHERE p.run_id = r.id),"
        " (SELECT count(*) FROM files f WHERE f.run_id = r.id AND f.direction = 'input'),"
        " (SELECT count(*) FROM files f WHERE f.run_id = r.id AND f.direction = 'output'),"
        " (SELECT count(*) FROM metrics m WHERE m.run_id = r.id)"
        " FROM runs r WHERE 1",
        q);
  if (f->run_id) fputs(" AND r.id = ?", q);
  if (f->verb) fputs(" AND r.verb = ?", q);
  if (f->status) fputs(" AND " STATUS_EXPR " = ?", q);
  if (f->since) fputs(" AND r.started_at >= ?", q);
  if (f->until) fputs(" AND r.started_at < ?", q);
  for (int i = 0; i < f->num_params; i++)
    fputs(
        " AND EXISTS (SELECT 1 FROM params p WHERE p.run_id = r.id"
        " AND p.name = ? AND p.value = ?)",
        q);
  fputs(f->newest_first ? " ORDER BY r.id DESC" : " ORDER BY r.id ASC", q);
  if (f->limit > 0) fputs(" LIMIT ?", q);
  if (fclose(q) != 0) {
    free(sql);
    return bsa__runlog_fail(log, BSA_ERR_NOMEM, "out of memory");
  }

  sqlite3_stmt *st = NULL;
  bsa_status s = prepare(log, sql, &st, "listing runs");
  free(sql);
  if (s != BSA_OK) return s;
  int k = 1;
  if (f->run_id) sqlite3_bind_int64(st, k++, f->run_id);
  if (f->verb) sqlite3_bind_text(st, k++, f->verb, -1, SQLITE_TRANSIENT);
  if (f->status) sqlite3_bind_text(st, k++, f->status, -1, SQLITE_TRANSIENT);
  if (f->since) sqlite3_bind_text(st, k++, f->since, -1, SQLITE_TRANSIENT);
  if (f->until) sqlite3_bind_text(st, k++, f->until, -1, SQLITE_TRANSIENT);
  for (int i = 0; i < f->num_params; i++) {
    sqlite3_bind_text(st, k++, f->param_names[i], -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, k++, f->param_values[i] ? f->param_values[i] : "", -1, SQLITE_TRANSIENT);
  }
  if (f->limit > 0) sqlite3_bind_int64(st, k++, f->limit);
  run_walk w = {cb, user};
  return walk(log, st, "listing runs", run_row, &w);
}

/* ---- parameters and files ----------------------------------------------- */

typedef struct param_walk {
  bsa_runlog_param_cb cb;
  void *user;
} param_walk;

static int param_row(sqlite3_stmt *st, void *ctx) {
  param_walk *w = ctx;
  return w->cb(col_text(st, 0), col_text(st, 1), w->user);
}

bsa_status bsa_runlog_foreach_param(bsa_runlog *log, int64_t run_id, bsa_runlog_param_cb cb,
                                    void *user) {
  if (!log || !cb)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_foreach_param: %s is NULL",
                            log ? "cb" : "log");
  sqlite3_stmt *st = NULL;
  bsa_status s = prepare(log, "SELECT name, value FROM params WHERE run_id = ? ORDER BY name", &st,
                         "reading parameters");
  if (s != BSA_OK) return s;
  sqlite3_bind_int64(st, 1, run_id);
  param_walk w = {cb, user};
  return walk(log, st, "reading parameters", param_row, &w);
}

typedef struct file_walk {
  bsa_runlog_file_cb cb;
  void *user;
} file_walk;

static int file_row(sqlite3_stmt *st, void *ctx) {
  file_walk *w = ctx;
  bsa_runlog_file_row r = {.direction = col_text(st, 0),
                           .role = col_text(st, 1),
                           .path = col_text(st, 2),
                           .abs_path = col_text(st, 3),
                           .size = sqlite3_column_int64(st, 4),
                           .sha256 = col_text(st, 5)};
  return w->cb(&r, w->user);
}

bsa_status bsa_runlog_foreach_file(bsa_runlog *log, int64_t run_id, bsa_runlog_file_cb cb,
                                   void *user) {
  if (!log || !cb)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_foreach_file: %s is NULL",
                            log ? "cb" : "log");
  sqlite3_stmt *st = NULL;
  bsa_status s = prepare(log,
                         "SELECT direction, role, path, abs_path, size, sha256 FROM files"
                         " WHERE run_id = ? ORDER BY direction = 'output', id",
                         &st, "reading files");
  if (s != BSA_OK) return s;
  sqlite3_bind_int64(st, 1, run_id);
  file_walk w = {cb, user};
  return walk(log, st, "reading files", file_row, &w);
}

/* ---- metrics -------------------------------------------------------------- */

typedef struct metric_walk {
  bsa_runlog_metric_cb cb;
  void *user;
} metric_walk;

static int metric_row(sqlite3_stmt *st, void *ctx) {
  metric_walk *w = ctx;
  bsa_runlog_metric_row r = {.run_id = sqlite3_column_int64(st, 0),
                             .verb = col_text(st, 1),
                             .run_status = col_text(st, 2),
                             .started_at = col_text(st, 3),
                             .name = col_text(st, 4),
                             .value = col_real_or_nan(st, 5),
                             .record = col_text(st, 6),
                             .head = (int32_t)col_int_or(st, 7, -1),
                             .labels_json = col_text(st, 8)};
  return w->cb(&r, w->user);
}

#define METRIC_SELECT                          \
  "SELECT m.run_id, r.verb, " STATUS_EXPR      \
  ", r.started_at, m.name, m.value, m.record," \
  " m.head, m.labels FROM metrics m JOIN runs r ON r.id = m.run_id"

bsa_status bsa_runlog_foreach_metric(bsa_runlog *log, const char *verb, const char *name,
                                     bsa_runlog_metric_cb cb, void *user) {
  if (!log || !cb)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_foreach_metric: %s is NULL",
                            log ? "cb" : "log");
  sqlite3_stmt *st = NULL;
  bsa_status s = prepare(log,
                         METRIC_SELECT
                         " WHERE (?1 IS NULL OR r.verb = ?1)"
                         " AND (?2 IS NULL OR m.name = ?2)"
                         " ORDER BY m.run_id, m.id",
                         &st, "reading metrics");
  if (s != BSA_OK) return s;
  if (verb) sqlite3_bind_text(st, 1, verb, -1, SQLITE_TRANSIENT);
  if (name) sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
  metric_walk w = {cb, user};
  return walk(log, st, "reading metrics", metric_row, &w);
}

bsa_status bsa_runlog_foreach_run_metric(bsa_runlog *log, int64_t run_id, bsa_runlog_metric_cb cb,
                                         void *user) {
  if (!log || !cb)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_foreach_run_metric: %s is NULL",
                            log ? "cb" : "log");
  sqlite3_stmt *st = NULL;
  bsa_status s =
      prepare(log, METRIC_SELECT " WHERE m.run_id = ? ORDER BY m.id", &st, "reading metrics");
  if (s != BSA_OK) return s;
  sqlite3_bind_int64(st, 1, run_id);
  metric_walk w = {cb, user};
  return walk(log, st, "reading metrics", metric_row, &w);
}
