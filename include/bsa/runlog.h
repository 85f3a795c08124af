/*
 * bsa/runlog.h - the experiment log: every bsa run recorded in SQLite.
 *
 * One file (default ./bsa-runs.db), WAL mode, versioned schema with
 * migrations, safe with concurrent writers (busy timeout, each write in a
 * transaction).  Finished runs are never rewritten or deleted.
 *
 * Recording a run:
 *     bsa_runlog *log; bsa_runlog_open("bsa-runs.db", &log);
 *     bsa_run *run;    bsa_runlog_run_begin(log, "bench", argc, argv, &run);
 *     bsa_run_param(run, "seq", "8192");
 *     bsa_run_input(run, "trace", "t.h5");          (size + SHA-256)
 *     bsa_run_metric(run, "time_ms", 1.5, NULL, -1, "{\"layout\":\"bsr\"}");
 *     bsa_run_output(run, "masks", "m.h5");         (SHA-256)
 *     bsa_run_end(run, BSA_OK, NULL);               (frees run)
 *     bsa_runlog_close(log);
 *
 * Thread safety: a bsa_runlog handle and its runs are used by one thread at
 * a time; several processes may write one file at once.
 */
#ifndef BSA_RUNLOG_H
#define BSA_RUNLOG_H

#include <stdint.h>
#include <stdio.h>

#include "bsa/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bsa_runlog bsa_runlog;
typedef struct bsa_run bsa_run;

/* Default path: $BSA_DB if set, else "bsa-runs.db".  Static storage. */
const char *bsa_runlog_default_path(void);

/* Opens (creating if needed, migrating an older schema) the log at path;
 * *out is owned by the caller (bsa_runlog_close).
 * BSA_ERR_INVALID_ARG: path NULL or empty.
 * BSA_ERR_IO: folder missing or not writable, path is a folder, file
 * unreadable or read-only, or a migration failed (rolled back whole).
 * BSA_ERR_FORMAT: not an SQLite file, another program's SQLite database, or
 * written by a newer schema version.
 * On failure *out is NULL, the message (naming the path) is in
 * bsa_last_error(), and the file is not modified.  See docs/runlog.md. */
bsa_status bsa_runlog_open(const char *path, bsa_runlog **out);
void bsa_runlog_close(bsa_runlog *log); /* accepts NULL */
/* The message of the last failure on log (bsa_last_error() when log is
 * NULL); owned by log, valid until its next failing call. */
const char *bsa_runlog_last_error(const bsa_runlog *log);
/* Schema version this library writes (PRAGMA user_version). */
int bsa_runlog_schema_version(void);

/* Opens a log for reading (`bsa runs`, charts): like bsa_runlog_open, but
 * the file must exist already (BSA_ERR_IO "no experiment log at PATH"
 * otherwise; nothing is created).  A log of the current schema that cannot
 * be written is opened read-only (recording into it then fails with
 * BSA_ERR_IO); an older log is migrated, which needs write access. */
bsa_status bsa_runlog_open_existing(const char *path, bsa_runlog **out);
/* The path the log was opened with; owned by log. */
const char *bsa_runlog_path(const bsa_runlog *log);

/* Starts a run with status "running": verb, full command line, host,
 * library version and build, start time, process id.  The run is committed
 * at once so that a killed process leaves it visible (shown "interrupted").
 * argv[0..argc-1] must be non-NULL.  *out is owned by the caller until
 * bsa_run_end; only this process may use it (calls from a forked child fail
 * with BSA_ERR_INVALID_ARG).  Every bsa_run_* call below is one transaction
 * and reports failures as BSA_ERR_INVALID_ARG (bad argument, message names
 * it), BSA_ERR_IO (the log could not be written) or BSA_ERR_NOMEM, with
 * the message on the log. */
bsa_status bsa_runlog_run_begin(bsa_runlog *log, const char *verb, int argc, char *const *argv,
                                bsa_run **out);
int64_t bsa_run_id(const bsa_run *run);

/* Parameters (name -> value text); a repeated name replaces the value. */
bsa_status bsa_run_param(bsa_run *run, const char *name, const char *value);
/* An input file: path, size and SHA-256 recorded under role.  BSA_ERR_IO
 * when the file cannot be read or is not a regular file (nothing recorded). */
bsa_status bsa_run_input(bsa_run *run, const char *role, const char *path);
/* An output artifact: path, size and SHA-256 recorded under role. */
bsa_status bsa_run_output(bsa_run *run, const char *role, const char *path);
/* The device used (e.g. "NVIDIA H100 80GB HBM3", "driver 580.65"). */
bsa_status bsa_run_device(bsa_run *run, const char *device_name, const char *driver);
/* A metric value.  record (may be NULL) and head (-1 for none) place it;
 * labels_json (may be NULL) is a JSON object of further labels such as
 * {"layout":"bsr","density":0.1,"device":"cuda"} (BSA_ERR_INVALID_ARG if it
 * is not one).  NaN is stored as NULL and read back as NaN. */
bsa_status bsa_run_metric(bsa_run *run, const char *name, double value, const char *record,
                          int32_t head, const char *labels_json);
/* Ends the run: status "ok" when status == BSA_OK, else "failed" with the
 * error text.  Frees run (also on failure to write). */
bsa_status bsa_run_end(bsa_run *run, bsa_status status, const char *error);

/* ---- queries --------------------------------------------------------- */

typedef struct bsa_runlog_metric_row {
  int64_t run_id;
  const char *verb;
  const char *run_status; /* ok, failed, running, interrupted */
  const char *started_at; /* ISO 8601 UTC */
  const char *name;
  double value;
  const char *record;      /* NULL if none */
  int32_t head;            /* -1 if none */
  const char *labels_json; /* "{}" if none */
} bsa_runlog_metric_row;

/* Calls cb for each metric of runs with the given verb (NULL = any) and
 * metric name (NULL = any), oldest run first.  Strings are valid during the
 * callback only.  A non-zero return from cb stops the walk. */
typedef int (*bsa_runlog_metric_cb)(const bsa_runlog_metric_row *row, void *user);
bsa_status bsa_runlog_foreach_metric(bsa_runlog *log, const char *verb, const char *name,
                                     bsa_runlog_metric_cb cb, void *user);

/* ---- queries for `bsa runs` ----------------------------------------- */

/* Which runs a query selects.  Zero-initialise and set what is wanted; every
 * condition set must hold.  Strings are compared exactly, as text. */
typedef struct bsa_runlog_filter {
  int64_t run_id;     /* this run only (0 = any) */
  const char *verb;   /* "bench", "trace synth", ... (NULL = any) */
  const char *status; /* ok, failed, running, interrupted (NULL = any) */
  const char *since;  /* started_at >= since, ISO 8601 UTC text (NULL = none) */
  const char *until;  /* started_at < until (NULL = none) */
  int num_params;     /* parameter param_names[i] has value param_values[i] */
  const char *const *param_names;
  const char *const *param_values;
  int64_t limit;    /* at most this many runs, counted in the order below (0 = all) */
  int newest_first; /* 1: newest run first; 0: oldest first */
} bsa_runlog_filter;

/* One run.  Strings are valid during the callback only; NULL when absent. */
typedef struct bsa_runlog_run_row {
  int64_t id;
  const char *verb;
  const char *status;          /* ok, failed, running or interrupted */
  const char *recorded_status; /* as stored: ok, failed or running */
  const char *started_at;      /* ISO 8601 UTC with milliseconds */
  const char *ended_at;        /* NULL while running */
  double duration_s;           /* NaN while running */
  const char *command;         /* shell-quoted command line */
  const char *argv_json;       /* the same as a JSON array of strings */
  const char *cwd;
  const char *host;
  int64_t pid;
  const char *bsa_version;
  const char *build_info;
  const char *device_name;
  const char *device_driver;
  const char *error; /* failed runs */
  int64_t num_params, num_inputs, num_outputs, num_metrics;
} bsa_runlog_run_row;
typedef int (*bsa_runlog_run_cb)(const bsa_runlog_run_row *row, void *user);

/* Calls cb for each run the filter selects (NULL = all, oldest first).  A
 * non-zero return from cb stops the walk (and is not an error).  cb may run
 * other queries on the same log.  BSA_ERR_INVALID_ARG for an unknown
 * status; BSA_ERR_IO when the log cannot be read (message on the log). */
bsa_status bsa_runlog_foreach_run(bsa_runlog *log, const bsa_runlog_filter *filter,
                                  bsa_runlog_run_cb cb, void *user);

/* Parameters of one run, by name. */
typedef int (*bsa_runlog_param_cb)(const char *name, const char *value, void *user);
bsa_status bsa_runlog_foreach_param(bsa_runlog *log, int64_t run_id, bsa_runlog_param_cb cb,
                                    void *user);

/* Files of one run, inputs first, in the order recorded. */
typedef struct bsa_runlog_file_row {
  const char *direction; /* "input" or "output" */
  const char *role;
  const char *path;     /* as given */
  const char *abs_path; /* resolved when recorded; NULL in logs of schema 1 */
  int64_t size;
  const char *sha256; /* 64 hex digits */
} bsa_runlog_file_row;
typedef int (*bsa_runlog_file_cb)(const bsa_runlog_file_row *row, void *user);
bsa_status bsa_runlog_foreach_file(bsa_runlog *log, int64_t run_id, bsa_runlog_file_cb cb,
                                   void *user);

/* Metrics of one run in the order recorded (rows as for
 * bsa_runlog_foreach_metric). */
bsa_status bsa_runlog_foreach_run_metric(bsa_runlog *log, int64_t run_id, bsa_runlog_metric_cb cb,
                                         void *user);

/* ---- export ------------------------------------------------------------ */

typedef enum bsa_runlog_format {
  BSA_RUNLOG_FORMAT_CSV = 0, /* RFC 4180, CRLF line ends, header row */
  BSA_RUNLOG_FORMAT_JSON = 1 /* one JSON array of flat objects */
} bsa_runlog_format;

/* Writes the selected runs (filter may be NULL) as one flat table to out:
 * one row per metric (only metric `metric` unless NULL), with the run's
 * columns, a `param.NAME` column per parameter name and a `label.KEY` column
 * per label key found; a run without metrics gets one row with an empty
 * metric.  Runs in id order.  docs/runlog.md lists the columns.
 * BSA_ERR_IO when the log cannot be read or out cannot be written. */
bsa_status bsa_runlog_export(bsa_runlog *log, const bsa_runlog_filter *filter, const char *metric,
                             bsa_runlog_format format, FILE *out);

/* Writes one run as one line of JSON to out.  with_details adds its
 * params (object), inputs and outputs (arrays) and metrics (array).
 * BSA_ERR_INVALID_ARG when there is no run run_id. */
bsa_status bsa_runlog_write_run_json(bsa_runlog *log, int64_t run_id, int with_details, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* BSA_RUNLOG_H */
