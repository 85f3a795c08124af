/*
 * runlog/record.c - recording a run.  Every call is one short transaction
 * (BEGIN IMMEDIATE ... COMMIT), so a run is visible from its first moment,
 * concurrent writers interleave safely, and a killed process leaves
 * everything it had recorded so far.  Values are always bound, never
 * pasted into SQL text.  Files are hashed before the lock is taken.
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runlog_int.h"

typedef enum { V_NULL, V_TEXT, V_INT, V_REAL } vtype;
typedef struct bind_val {
  vtype type;
  const char *s;
  int64_t i;
  double d;
} bind_val;

static bind_val TEXT(const char *s) { return (bind_val){.type = s ? V_TEXT : V_NULL, .s = s}; }
static bind_val INT(int64_t i) { return (bind_val){.type = V_INT, .i = i}; }
static bind_val REAL(double d) { return (bind_val){.type = V_REAL, .d = d}; }

/* Runs one statement in its own transaction.  what names the write in the
 * error message.  When must_change is set, a statement that changed no row
 * is an error (the run is not running any more). */
static bsa_status write1(bsa_runlog *log, const char *what, const char *sql, const bind_val *v,
                         int n, int must_change, int64_t *rowid) {
  if (log->readonly)
    return bsa__runlog_fail(log, BSA_ERR_IO, "experiment log '%s' is open read-only: %s", log->path,
                            what);
  if (bsa__runlog_begin(log) != SQLITE_OK) return bsa__runlog_fail_db(log, what);
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(log->db, sql, -1, &st, NULL);
  for (int i = 0; rc == SQLITE_OK && i < n; i++) {
    switch (v[i].type) {
      case V_NULL:
        rc = sqlite3_bind_null(st, i + 1);
        break;
      case V_TEXT:
        rc = sqlite3_bind_text(st, i + 1, v[i].s, -1, SQLITE_TRANSIENT);
        break;
      case V_INT:
        rc = sqlite3_bind_int64(st, i + 1, v[i].i);
        break;
      case V_REAL:
        rc = sqlite3_bind_double(st, i + 1, v[i].d);
        break;
    }
  }
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    bsa_status s = bsa__runlog_fail_db(log, what);
    sqlite3_finalize(st);
    bsa__runlog_rollback(log);
    return s;
  }
  sqlite3_finalize(st);
  if (must_change && sqlite3_changes(log->db) != 1) {
    bsa__runlog_rollback(log);
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG,
                            "experiment log '%s': %s: the run is not running", log->path, what);
  }
  if (rowid) *rowid = sqlite3_last_insert_rowid(log->db);
  if (bsa__runlog_commit(log) != SQLITE_OK) return bsa__runlog_fail_db(log, what);
  return BSA_OK;
}

/* A run may be written only through a live handle by the process that began
 * it (a forked child inherits the pointer but not the right). */
static bsa_status check_run(const bsa_run *run, const char *fn) {
  if (!run) return bsa__runlog_fail(NULL, BSA_ERR_INVALID_ARG, "%s: run is NULL", fn);
  if (run->pid != getpid())
    return bsa__runlog_fail(run->log, BSA_ERR_INVALID_ARG,
                            "%s: run %lld was begun by process %lld; only that process "
                            "may record into it",
                            fn, (long long)run->id, (long long)run->pid);
  return BSA_OK;
}

static int empty(const char *s) { return !s || !*s; }

bsa_status bsa_runlog_run_begin(bsa_runlog *log, const char *verb, int argc, char *const *argv,
                                bsa_run **out) {
  if (out) *out = NULL;
  if (!log || !out)
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_run_begin: %s is NULL",
                            log ? "out" : "log");
  if (empty(verb))
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG, "bsa_runlog_run_begin: verb is empty");
  if (argc < 0 || (argc > 0 && !argv))
    return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG,
                            "bsa_runlog_run_begin: argc = %d with argv %s", argc,
                            argv ? "given" : "NULL");
  for (int i = 0; i < argc; i++)
    if (!argv[i])
      return bsa__runlog_fail(log, BSA_ERR_INVALID_ARG,
                              "bsa_runlog_run_begin: argv[%d] is NULL (argc = %d)", i, argc);

  bsa_run *run = calloc(1, sizeof *run);
  char *argv_json = bsa__runlog_argv_json(argc, argv);
  char *command = bsa__runlog_argv_shell(argc, argv);
  char *cwd = getcwd(NULL, 0); /* NULL when unknown (removed folder) */
  if (!run || !argv_json || !command) {
    free(run);
    free(argv_json);
    free(command);
    free(cwd);
    return bsa__runlog_fail(log, BSA_ERR_NOMEM, "out of memory");
  }
  char started[32];
  bsa__runlog_now(started);
  pid_t pid = getpid();
  int64_t proc_start = bsa__runlog_proc_start(pid, NULL);
  bind_val v[] = {TEXT(verb),
                  TEXT(argv_json),
                  TEXT(command),
                  TEXT(cwd),
                  TEXT(log->host),
                  INT(pid),
                  TEXT(bsa_version()),
                  TEXT(bsa_build_info()),
                  TEXT(started),
                  TEXT(log->boot_id[0] ? log->boot_id : NULL),
                  proc_start >= 0 ? INT(proc_start) : TEXT(NULL)};
  bsa_status s = write1(log, "starting a run",
                        "INSERT INTO runs (verb, argv_json, command, cwd, host, pid,"
                        " bsa_version, build_info, started_at, boot_id, proc_start, status)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')",
                        v, (int)(sizeof v / sizeof v[0]), 0, &run->id);
  free(argv_json);
  free(command);
  free(cwd);
  if (s != BSA_OK) {
    free(run);
    return s;
  }
  run->log = log;
  run->pid = pid;
  *out = run;
  return BSA_OK;
}

int64_t bsa_run_id(const bsa_run *run) { return run ? run->id : 0; }

bsa_status bsa_run_param(bsa_run *run, const char *name, const char *value) {
  bsa_status s = check_run(run, "bsa_run_param");
  if (s != BSA_OK) return s;
  if (empty(name) || !value)
    return bsa__runlog_fail(run->log, BSA_ERR_INVALID_ARG, "bsa_run_param: %s is %s",
                            empty(name) ? "name" : "value", empty(name) ? "empty" : "NULL");
  char what[300];
  snprintf(what, sizeof what, "recording parameter '%.200s' of run %lld", name, (long long)run->id);
  bind_val v[] = {INT(run->id), TEXT(name), TEXT(value)};
  return write1(run->log, what,
                "INSERT INTO params (run_id, name, value) VALUES (?, ?, ?)"
                " ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value",
                v, 3, 0, NULL);
}

static bsa_status record_file(bsa_run *run, const char *fn, const char *direction, const char *role,
                              const char *path) {
  bsa_status s = check_run(run, fn);
  if (s != BSA_OK) return s;
  if (empty(role) || empty(path))
    return bsa__runlog_fail(run->log, BSA_ERR_INVALID_ARG, "%s: %s is empty", fn,
                            empty(role) ? "role" : "path");
  char hex[65], err[600];
  int64_t size = 0;
  s = bsa__runlog_sha256_file(path, hex, &size, err, sizeof err);
  if (s != BSA_OK)
    return bsa__runlog_fail(run->log, s, "%s '%s' of run %lld: %s", direction, role,
                            (long long)run->id, err);
  char *abs = realpath(path, NULL);
  char what[300];
  snprintf(what, sizeof what, "recording %s '%.200s' of run %lld", direction, role,
           (long long)run->id);
  bind_val v[] = {INT(run->id), TEXT(direction), TEXT(role), TEXT(path),
                  TEXT(abs),    INT(size),       TEXT(hex)};
  s = write1(run->log, what,
             "INSERT INTO files (run_id, direction, role, path, abs_path, size, sha256)"
             " VALUES (?, ?, ?, ?, ?, ?, ?)",
             v, 7, 0, NULL);
  free(abs);
  return s;
}

bsa_status bsa_run_input(bsa_run *run, const char *role, const char *path) {
  return record_file(run, "bsa_run_input", "input", role, path);
}

bsa_status bsa_run_output(bsa_run *run, const char *role, const char *path) {
  return record_file(run, "bsa_run_output", "output", role, path);
}

bsa_status bsa_run_device(bsa_run *run, const char *device_name, const char *driver) {
  bsa_status s = check_run(run, "bsa_run_device");
  if (s != BSA_OK) return s;
  if (empty(device_name))
    return bsa__runlog_fail(run->log, BSA_ERR_INVALID_ARG, "bsa_run_device: device_name is empty");
  char what[64];
  snprintf(what, sizeof what, "recording the device of run %lld", (long long)run->id);
  bind_val v[] = {TEXT(device_name), TEXT(driver), INT(run->id)};
  return write1(run->log, what,
                "UPDATE runs SET device_name = ?, device_driver = ?"
                " WHERE id = ? AND status = 'running'",
                v, 3, 1, NULL);
}

bsa_status bsa_run_metric(bsa_run *run, const char *name, double value, const char *record,
                          int32_t head, const char *labels_json) {
  bsa_status s = check_run(run, "bsa_run_metric");
  if (s != BSA_OK) return s;
  if (empty(name))
    return bsa__runlog_fail(run->log, BSA_ERR_INVALID_ARG, "bsa_run_metric: name is empty");
  if (head < -1)
    return bsa__runlog_fail(run->log, BSA_ERR_INVALID_ARG,
                            "bsa_run_metric '%s': head = %d (must be >= 0, or -1 for none)", name,
                            (int)head);
  if (empty(labels_json)) labels_json = "{}";
  json_error_t jerr;
  json_t *labels = json_loads(labels_json, JSON_REJECT_DUPLICATES, &jerr);
  int is_object = labels && json_is_object(labels);
  json_decref(labels);
  if (!is_object)
    return bsa__runlog_fail(run->log, BSA_ERR_INVALID_ARG,
                            "bsa_run_metric '%s': labels_json must be a JSON object, got "
                            "'%.200s'%s%s",
                            name, labels_json, labels ? "" : ": ", labels ? "" : jerr.text);
  char what[300];
  snprintf(what, sizeof what, "recording metric '%.200s' of run %lld", name, (long long)run->id);
  /* json() stores the labels minified, numbers kept as written.  A NaN value
   * is stored as NULL (SQLite has no NaN) and read back as NaN. */
  bind_val v[] = {
      INT(run->id),     TEXT(name), REAL(value), TEXT(record), head >= 0 ? INT(head) : TEXT(NULL),
      TEXT(labels_json)};
  return write1(run->log, what,
                "INSERT INTO metrics (run_id, name, value, record, head, labels)"
                " VALUES (?, ?, ?, ?, ?, json(?))",
                v, 6, 0, NULL);
}

bsa_status bsa_run_end(bsa_run *run, bsa_status status, const char *error) {
  bsa_status s = check_run(run, "bsa_run_end");
  if (s != BSA_OK) {
    /* Another process's pointer: freeing memory is still right here. */
    free(run);
    return s;
  }
  char ended[32];
  bsa__runlog_now(ended);
  const char *text = status == BSA_OK ? NULL : !empty(error) ? error : bsa_status_string(status);
  char what[64];
  snprintf(what, sizeof what, "ending run %lld", (long long)run->id);
  bind_val v[] = {TEXT(status == BSA_OK ? "ok" : "failed"), TEXT(ended), TEXT(text), INT(run->id)};
  s = write1(run->log, what,
             "UPDATE runs SET status = ?, ended_at = ?, error = ?"
             " WHERE id = ? AND status = 'running'",
             v, 4, 1, NULL);
  free(run);
  return s;
}
