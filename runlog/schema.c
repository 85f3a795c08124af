/*
 * runlog/schema.c - opening a log: checks that leave foreign files alone,
 * WAL mode, the busy timeout, and the versioned schema with its migrations.
 *
 * The schema version is PRAGMA user_version; PRAGMA application_id marks the
 * file as a bsa log.  migrations[] is the whole history: entry i moves a log
 * from version i to version i + 1 by an ordered list of SQL statements, run
 * in one transaction together with the new user_version, so a log is either
 * migrated completely or not at all.  A new log is made by running every
 * migration from version 0, which keeps the upgrade path exercised on every
 * new file.  To change the schema, append a migration; never edit one that
 * has shipped (logs in the field were made by it).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h" /* libbsa: bsa__fail for bsa_last_error() */
#include "runlog_int.h"

/* ---- the schema history ------------------------------------------------ */

/* Version 1: runs, their parameters, files and metrics. */
static const char *const v1_steps[] = {
    "PRAGMA application_id = 1112752433", /* BSA__RUNLOG_APP_ID */
    "CREATE TABLE runs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " verb TEXT NOT NULL,"
    " argv_json TEXT NOT NULL,"
    " command TEXT NOT NULL,"
    " cwd TEXT,"
    " host TEXT NOT NULL,"
    " pid INTEGER NOT NULL,"
    " bsa_version TEXT NOT NULL,"
    " build_info TEXT NOT NULL,"
    " device_name TEXT,"
    " device_driver TEXT,"
    " started_at TEXT NOT NULL,"
    " ended_at TEXT,"
    " status TEXT NOT NULL DEFAULT 'running'"
    "  CHECK (status IN ('running', 'ok', 'failed')),"
    " error TEXT)",
    "CREATE TABLE params ("
    " run_id INTEGER NOT NULL REFERENCES runs(id),"
    " name TEXT NOT NULL,"
    " value TEXT NOT NULL,"
    " PRIMARY KEY (run_id, name))",
    "CREATE TABLE files ("
    " id INTEGER PRIMARY KEY,"
    " run_id INTEGER NOT NULL REFERENCES runs(id),"
    " direction TEXT NOT NULL CHECK (direction IN ('input', 'output')),"
    " role TEXT NOT NULL,"
    " path TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL)",
    "CREATE TABLE metrics ("
    " id INTEGER PRIMARY KEY,"
    " run_id INTEGER NOT NULL REFERENCES runs(id),"
    " name TEXT NOT NULL,"
    " value REAL,"
    " record TEXT,"
    " head INTEGER,"
    " labels TEXT NOT NULL DEFAULT '{}')",
    "CREATE INDEX metrics_run ON metrics(run_id)",
    "CREATE INDEX files_run ON files(run_id)",
    NULL};

/* A finished run is frozen: these abort any statement that would change it
 * or anything recorded under it.  Nothing is ever deleted. */
#define FROZEN_MSG "'the experiment log never rewrites a finished run'"
#define NO_DELETE_MSG "'the experiment log never deletes anything'"
#define RUN_FINISHED(ID) "(SELECT status FROM runs WHERE id = " ID ") IS NOT 'running'"

/* Version 2: process identity for telling interrupted runs (boot_id,
 * proc_start), absolute file paths, indexes for the `bsa runs` filters, and
 * the place-of-record rules enforced by the database itself. */
static const char *const v2_steps[] = {
    "ALTER TABLE runs ADD COLUMN boot_id TEXT",
    "ALTER TABLE runs ADD COLUMN proc_start INTEGER",
    "ALTER TABLE files ADD COLUMN abs_path TEXT",
    "CREATE INDEX runs_started ON runs(started_at)",
    "CREATE INDEX runs_verb ON runs(verb)",
    "CREATE INDEX params_name_value ON params(name, value)",
    "CREATE INDEX metrics_name ON metrics(name)",
    "CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs"
    " BEGIN SELECT RAISE(ABORT, " NO_DELETE_MSG "); END",
    "CREATE TRIGGER runs_finished_frozen BEFORE UPDATE ON runs"
    " WHEN OLD.status IS NOT 'running'"
    " BEGIN SELECT RAISE(ABORT, " FROZEN_MSG "); END",
    "CREATE TRIGGER runs_identity_frozen BEFORE UPDATE ON runs"
    " WHEN NEW.id IS NOT OLD.id OR NEW.verb IS NOT OLD.verb"
    " OR NEW.argv_json IS NOT OLD.argv_json OR NEW.command IS NOT OLD.command"
    " OR NEW.cwd IS NOT OLD.cwd OR NEW.host IS NOT OLD.host"
    " OR NEW.pid IS NOT OLD.pid OR NEW.bsa_version IS NOT OLD.bsa_version"
    " OR NEW.build_info IS NOT OLD.build_info"
    " OR NEW.started_at IS NOT OLD.started_at"
    " OR NEW.boot_id IS NOT OLD.boot_id OR NEW.proc_start IS NOT OLD.proc_start"
    " BEGIN SELECT RAISE(ABORT, 'the experiment log never rewrites what"
    " identifies a run'); END",
    "CREATE TRIGGER params_frozen_insert BEFORE INSERT ON params"
    " WHEN " RUN_FINISHED("NEW.run_id") " BEGIN SELECT RAISE(ABORT, " FROZEN_MSG "); END",
    "CREATE TRIGGER params_frozen_update BEFORE UPDATE ON params"
    " WHEN " RUN_FINISHED("OLD.run_id") " OR " RUN_FINISHED(
        "NEW.run_id") " BEGIN SELECT RAISE(ABORT, " FROZEN_MSG "); END",
    "CREATE TRIGGER params_no_delete BEFORE DELETE ON params"
    " BEGIN SELECT RAISE(ABORT, " NO_DELETE_MSG "); END",
    "CREATE TRIGGER files_frozen_insert BEFORE INSERT ON files"
    " WHEN " RUN_FINISHED("NEW.run_id") " BEGIN SELECT RAISE(ABORT, " FROZEN_MSG "); END",
    "CREATE TRIGGER files_frozen_update BEFORE UPDATE ON files"
    " BEGIN SELECT RAISE(ABORT, " FROZEN_MSG "); END",
    "CREATE TRIGGER files_no_delete BEFORE DELETE ON files"
    " BEGIN SELECT RAISE(ABORT, " NO_DELETE_MSG "); END",
    "CREATE TRIGGER metrics_frozen_insert BEFORE INSERT ON metrics"
    " WHEN " RUN_FINISHED("NEW.run_id") " BEGIN SELECT RAISE(ABORT, " FROZEN_MSG "); END",
    "CREATE TRIGGER metrics_frozen_update BEFORE UPDATE ON metrics"
    " BEGIN SELECT RAISE(ABORT, " FROZEN_MSG "); END",
    "CREATE TRIGGER metrics_no_delete BEFORE DELETE ON metrics"
    " BEGIN SELECT RAISE(ABORT, " NO_DELETE_MSG "); END",
    NULL};

typedef struct migration {
  const char *what;
  const char *const *steps;
} migration;

/* migrations[i] moves a log from version i to version i + 1. */
static const migration migrations[] = {
    {"runs, params, files, metrics", v1_steps},
    {"process identity, absolute paths, indexes, frozen finished runs", v2_steps},
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

int bsa_runlog_schema_version(void) { return SCHEMA_VERSION; }

/* ---- errors ------------------------------------------------------------- */

bsa_status bsa__runlog_fail(bsa_runlog *log, bsa_status st, const char *fmt, ...) {
  char buf[BSA__RUNLOG_MSG_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (log) snprintf(log->msg, sizeof log->msg, "%s", buf);
  return bsa__fail(NULL, st, "%s", buf);
}

bsa_status bsa__runlog_fail_db(bsa_runlog *log, const char *what) {
  int code = sqlite3_extended_errcode(log->db);
  bsa_status st = (code & 0xff) == SQLITE_NOMEM ? BSA_ERR_NOMEM : BSA_ERR_IO;
  return bsa__runlog_fail(log, st, "experiment log '%s': %s: %s", log->path, what,
                          sqlite3_errmsg(log->db));
}

const char *bsa_runlog_last_error(const bsa_runlog *log) {
  return log ? log->msg : bsa_last_error();
}

const char *bsa_runlog_default_path(void) {
  const char *env = getenv("BSA_DB");
  return env && *env ? env : "bsa-runs.db";
}

const char *bsa_runlog_path(const bsa_runlog *log) { return log ? log->path : NULL; }

/* ---- waiting for the lock ----------------------------------------------- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* A short random pause, so that writers that collided do not collide again
 * in lock step. */
static void backoff(void) {
  /* Seeded by the pid each time: forked writers must not share a sequence. */
  static unsigned counter;
  unsigned x = (unsigned)getpid() * 2654435761u + ++counter * 40503u;
  x ^= x >> 15;
  struct timespec ts = {0, (long)(1 + x % 8) * 1000000L};
  nanosleep(&ts, NULL);
}

static int is_busy(int rc) {
  rc &= 0xff;
  return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/* sqlite3_exec retried on SQLITE_BUSY until the deadline. */
static int exec_retry(bsa_runlog *log, const char *sql) {
  double deadline = now_ms() + BSA__RUNLOG_BUSY_MS;
  int rc;
  while (is_busy(rc = sqlite3_exec(log->db, sql, NULL, NULL, NULL)) && now_ms() < deadline)
    backoff();
  return rc;
}

int bsa__runlog_begin(bsa_runlog *log) { return exec_retry(log, "BEGIN IMMEDIATE"); }

int bsa__runlog_commit(bsa_runlog *log) {
  int rc = exec_retry(log, "COMMIT");
  if (rc != SQLITE_OK) bsa__runlog_rollback(log);
  return rc;
}

void bsa__runlog_rollback(bsa_runlog *log) {
  if (!sqlite3_get_autocommit(log->db)) sqlite3_exec(log->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Schema version, application id and number of schema objects, read in one
 * statement so that they come from one snapshot (another process may be
 * creating the schema at this moment). */
static int read_header(bsa_runlog *log, int64_t *version, int64_t *app_id, int64_t *tables) {
  double deadline = now_ms() + BSA__RUNLOG_BUSY_MS;
  for (;;) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(log->db,
                                "SELECT (SELECT user_version FROM pragma_user_version),"
                                " (SELECT application_id FROM pragma_application_id),"
                                " (SELECT count(*) FROM sqlite_master)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(st);
      if (rc == SQLITE_ROW) {
        *version = sqlite3_column_int64(st, 0);
        *app_id = sqlite3_column_int64(st, 1);
        *tables = sqlite3_column_int64(st, 2);
        rc = SQLITE_OK;
      }
    }
    sqlite3_finalize(st);
    if (!is_busy(rc) || now_ms() >= deadline) return rc;
    backoff();
  }
}

/* ---- checks before SQLite touches a file -------------------------------- */

/* Explains why a log cannot be made at path (its folder), or creates it.
 * *created tells whether this call made the (empty) file. */
static bsa_status create_file(const char *path, int *created) {
  *created = 0;
  char *copy = strdup(path);
  if (!copy) return bsa__runlog_fail(NULL, BSA_ERR_NOMEM, "out of memory");
  const char *dir = dirname(copy);
  struct stat st;
  bsa_status status = BSA_OK;
  if (stat(dir, &st) != 0) {
    status =
        bsa__runlog_fail(NULL, BSA_ERR_IO, "cannot create the experiment log '%s': folder '%s': %s",
                         path, dir, strerror(errno));
  } else if (!S_ISDIR(st.st_mode)) {
    status = bsa__runlog_fail(
        NULL, BSA_ERR_IO, "cannot create the experiment log '%s': '%s' is not a folder", path, dir);
  } else {
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      close(fd);
      *created = 1;
    } else if (errno != EEXIST) {
      status = bsa__runlog_fail(NULL, BSA_ERR_IO,
                                "cannot create the experiment log '%s' in folder '%s': %s", path,
                                dir, strerror(errno));
    }
  }
  free(copy);
  return status;
}

/* The file must be empty (a log being made) or start with SQLite's magic
 * text; anything else is left alone.  A page of zeros can be seen for a
 * moment while another process writes the first page of a new log, so that
 * case is looked at again a few times before it counts as foreign. */
static bsa_status check_header(const char *path) {
  static const char magic[16] = "SQLite format 3";
  for (int attempt = 0;; attempt++) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return bsa__runlog_fail(NULL, BSA_ERR_IO, "cannot read the experiment log '%s': %s", path,
                              strerror(errno));
    unsigned char head[16];
    ssize_t n = read(fd, head, sizeof head);
    int err = errno;
    close(fd);
    if (n < 0)
      return bsa__runlog_fail(NULL, BSA_ERR_IO, "cannot read the experiment log '%s': %s", path,
                              strerror(err));
    if (n == 0) return BSA_OK;
    if (n == (ssize_t)sizeof head && memcmp(head, magic, sizeof magic) == 0) return BSA_OK;
    int zeros = 1;
    for (ssize_t i = 0; i < n; i++) zeros &= head[i] == 0;
    if (!zeros || attempt >= 20)
      return bsa__runlog_fail(NULL, BSA_ERR_FORMAT,
                              "'%s' is not an SQLite database, so not a bsa experiment "
                              "log; it was left untouched",
                              path);
    backoff();
  }
}

/* ---- migrations --------------------------------------------------------- */

/* Brings the schema from its version to SCHEMA_VERSION in one transaction.
 * The version is read again under the write lock: another process may have
 * migrated (or created) the log meanwhile. */
static bsa_status migrate(bsa_runlog *log) {
  int rc = bsa__runlog_begin(log);
  if (rc != SQLITE_OK) return bsa__runlog_fail_db(log, "cannot lock the log to set it up");
  int64_t version = 0, app_id = 0, tables = 0;
  if (read_header(log, &version, &app_id, &tables) != SQLITE_OK) {
    bsa_status st = bsa__runlog_fail_db(log, "cannot read the schema version");
    bsa__runlog_rollback(log);
    return st;
  }
  if (version == 0 && (app_id != 0 || tables != 0)) {
    bsa__runlog_rollback(log);
    return bsa__runlog_fail(log, BSA_ERR_FORMAT,
                            "'%s' is an SQLite database but not a bsa experiment log; it "
                            "was left untouched",
                            log->path);
  }
  if (version >= SCHEMA_VERSION) {
    /* Another process set the log up first. */
    bsa__runlog_rollback(log);
    if (version == SCHEMA_VERSION) return BSA_OK;
    return bsa__runlog_fail(log, BSA_ERR_FORMAT,
                            "experiment log '%s' was written by a newer bsa (schema version "
                            "%lld; this bsa reads versions up to %d); it was left untouched",
                            log->path, (long long)version, SCHEMA_VERSION);
  }
  for (int v = (int)version; v < SCHEMA_VERSION; v++) {
    const migration *m = &migrations[v];
    for (int s = 0; m->steps[s]; s++) {
      if (sqlite3_exec(log->db, m->steps[s], NULL, NULL, NULL) != SQLITE_OK) {
        char what[160];
        snprintf(what, sizeof what,
                 "migrating the schema from version %d to %d (%s) failed at step %d", v, v + 1,
                 m->what, s + 1);
        bsa_status st = bsa__runlog_fail_db(log, what);
        bsa__runlog_rollback(log);
        return st;
      }
    }
  }
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
  if (sqlite3_exec(log->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
    bsa_status st = bsa__runlog_fail_db(log, "cannot set the schema version");
    bsa__runlog_rollback(log);
    return st;
  }
  if (bsa__runlog_commit(log) != SQLITE_OK)
    return bsa__runlog_fail_db(log, "cannot commit the schema");
  return BSA_OK;
}

/* ---- open / close ------------------------------------------------------- */

/* must_exist: the reader's open (`bsa runs`): never creates a file, and
 * opens read-only when the file cannot be written. */
static bsa_status open_log(const char *path, int must_exist, bsa_runlog **out) {
  if (!out) return bsa__runlog_fail(NULL, BSA_ERR_INVALID_ARG, "bsa_runlog_open: out is NULL");
  *out = NULL;
  if (!path || !*path)
    return bsa__runlog_fail(NULL, BSA_ERR_INVALID_ARG,
                            "experiment log path is empty (give --db PATH or set BSA_DB)");

  struct stat st;
  if (stat(path, &st) != 0) {
    if ((errno != ENOENT && errno != ENOTDIR) || must_exist)
      return bsa__runlog_fail(NULL, BSA_ERR_IO, "no experiment log at '%s': %s", path,
                              strerror(errno));
    int created;
    bsa_status s = create_file(path, &created);
    if (s != BSA_OK) return s;
  } else if (S_ISDIR(st.st_mode)) {
    return bsa__runlog_fail(NULL, BSA_ERR_IO, "experiment log '%s' is a folder; give a file path",
                            path);
  } else if (!S_ISREG(st.st_mode)) {
    return bsa__runlog_fail(NULL, BSA_ERR_IO, "experiment log '%s' is not a regular file", path);
  }
  bsa_status s = check_header(path);
  if (s != BSA_OK) return s;

  bsa_runlog *log = calloc(1, sizeof *log);
  if (!log || !(log->path = strdup(path))) {
    free(log);
    return bsa__runlog_fail(NULL, BSA_ERR_NOMEM, "out of memory");
  }
  /* The file exists now, so SQLite never creates one (no OPEN_CREATE). */
  int rc = sqlite3_open_v2(path, &log->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
  if (rc != SQLITE_OK) {
    int err = log->db ? sqlite3_system_errno(log->db) : 0;
    s = bsa__runlog_fail(NULL, BSA_ERR_IO, "cannot open the experiment log '%s': %s%s%s", path,
                         log->db ? sqlite3_errmsg(log->db) : sqlite3_errstr(rc), err ? ": " : "",
                         err ? strerror(err) : "");
    bsa_runlog_close(log);
    return s;
  }
  sqlite3_extended_result_codes(log->db, 1);
  sqlite3_busy_timeout(log->db, BSA__RUNLOG_BUSY_MS);
  /* SQLite falls back to read-only when it may not write the file. */
  log->readonly = sqlite3_db_readonly(log->db, "main") == 1;

  /* Look before writing anything: only a bsa log of a version this library
   * knows (or an empty file) is touched. */
  int64_t version = 0, app_id = 0, tables = 0;
  if (read_header(log, &version, &app_id, &tables) != SQLITE_OK) {
    s = bsa__runlog_fail(NULL, BSA_ERR_FORMAT,
                         "cannot read the experiment log '%s': %s; it was left untouched", path,
                         sqlite3_errmsg(log->db));
    bsa_runlog_close(log);
    return s;
  }
  int fresh = version == 0 && app_id == 0 && tables == 0;
  if (!fresh && app_id != BSA__RUNLOG_APP_ID) {
    s = bsa__runlog_fail(NULL, BSA_ERR_FORMAT,
                         "'%s' is an SQLite database but not a bsa experiment log "
                         "(application_id %lld); it was left untouched",
                         path, (long long)app_id);
  } else if (version > SCHEMA_VERSION) {
    s = bsa__runlog_fail(NULL, BSA_ERR_FORMAT,
                         "experiment log '%s' was written by a newer bsa (schema version "
                         "%lld; this bsa reads versions up to %d); it was left untouched",
                         path, (long long)version, SCHEMA_VERSION);
  } else if (!fresh && version < 1) {
    s = bsa__runlog_fail(NULL, BSA_ERR_FORMAT,
                         "experiment log '%s' has no schema version; it was left untouched", path);
  } else if (log->readonly && (!must_exist || version < SCHEMA_VERSION)) {
    s = bsa__runlog_fail(NULL, BSA_ERR_IO,
                         "experiment log '%s' cannot be written (read-only file or "
                         "folder)%s",
                         path, version < SCHEMA_VERSION ? "; it needs a schema upgrade first" : "");
  }
  if (s != BSA_OK) {
    bsa_runlog_close(log);
    return s;
  }

  if (!log->readonly) {
    /* WAL lets readers work while one process writes.  It needs shared
     * memory beside the file; where that is missing SQLite keeps its rollback
     * journal, which is slower but just as safe. */
    exec_retry(log, "PRAGMA journal_mode = WAL");
    sqlite3_exec(log->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
  }
  sqlite3_exec(log->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
  if (version < SCHEMA_VERSION && (s = migrate(log)) != BSA_OK) {
    bsa_runlog_close(log);
    return s;
  }
  bsa__runlog_host(log->host, sizeof log->host);
  bsa__runlog_boot_id(log->boot_id, sizeof log->boot_id);
  if (bsa__runlog_register_functions(log) != SQLITE_OK) {
    s = bsa__runlog_fail_db(log, "cannot register functions");
    bsa_runlog_close(log);
    return s;
  }
  *out = log;
  return BSA_OK;
}

bsa_status bsa_runlog_open(const char *path, bsa_runlog **out) { return open_log(path, 0, out); }

bsa_status bsa_runlog_open_existing(const char *path, bsa_runlog **out) {
  return open_log(path, 1, out);
}

void bsa_runlog_close(bsa_runlog *log) {
  if (!log) return;
  sqlite3_close_v2(log->db);
  free(log->path);
  free(log);
}
