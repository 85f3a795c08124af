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

#include "bsa/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bsa_runlog bsa_runlog;
typedef struct bsa_run bsa_run;

/* Default path: $BSA_DB if set, else "bsa-runs.db".  Static storage. */
const char *bsa_runlog_default_path(void);

/* Opens (creating if needed, migrating an older schema) the log at path.
 * BSA_ERR_IO: folder missing or not writable, file unreadable.
 * BSA_ERR_FORMAT: not an SQLite file, or written by a newer schema version.
 * On failure *out is NULL, the message is in bsa_last_error(), and the file
 * is not modified. */
bsa_status bsa_runlog_open(const char *path, bsa_runlog **out);
void bsa_runlog_close(bsa_runlog *log); /* accepts NULL */
const char *bsa_runlog_last_error(const bsa_runlog *log);
/* Schema version this library writes (PRAGMA user_version). */
int bsa_runlog_schema_version(void);

/* Starts a run with status "running": verb, full command line, host,
 * library version and build, start time, process id.  The run is committed
 * at once so that a killed process leaves it visible (shown "interrupted"). */
bsa_status bsa_runlog_run_begin(bsa_runlog *log, const char *verb, int argc,
                                char *const *argv, bsa_run **out);
int64_t bsa_run_id(const bsa_run *run);

/* Parameters (name -> value text); a repeated name replaces the value. */
bsa_status bsa_run_param(bsa_run *run, const char *name, const char *value);
/* An input file: path, size and SHA-256 recorded under role. */
bsa_status bsa_run_input(bsa_run *run, const char *role, const char *path);
/* An output artifact: path, size and SHA-256 recorded under role. */
bsa_status bsa_run_output(bsa_run *run, const char *role, const char *path);
/* The device used (e.g. "NVIDIA H100 80GB HBM3", "driver 580.65"). */
bsa_status bsa_run_device(bsa_run *run, const char *device_name,
                          const char *driver);
/* A metric value.  record (may be NULL) and head (-1 for none) place it;
 * labels_json (may be NULL) is a JSON object of further labels such as
 * {"layout":"bsr","density":0.1,"device":"cuda"}. */
bsa_status bsa_run_metric(bsa_run *run, const char *name, double value,
                          const char *record, int32_t head,
                          const char *labels_json);
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
  const char *record; /* NULL if none */
  int32_t head;       /* -1 if none */
  const char *labels_json; /* "{}" if none */
} bsa_runlog_metric_row;

/* Calls cb for each metric of runs with the given verb (NULL = any) and
 * metric name (NULL = any), oldest run first.  Strings are valid during the
 * callback only.  A non-zero return from cb stops the walk. */
typedef int (*bsa_runlog_metric_cb)(const bsa_runlog_metric_row *row,
                                    void *user);
bsa_status bsa_runlog_foreach_metric(bsa_runlog *log, const char *verb,
                                     const char *name, bsa_runlog_metric_cb cb,
                                     void *user);

#ifdef __cplusplus
}
#endif
#endif /* BSA_RUNLOG_H */
