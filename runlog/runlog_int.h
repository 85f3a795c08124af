/*
 * runlog/runlog_int.h - internals of the experiment log shared by the files
 * of runlog/ (schema.c, record.c, query.c, export.c, sysinfo.c, sha256.c,
 * textout.c).  Not API: symbols use the bsa__ prefix.
 */
#ifndef BSA_RUNLOG_INT_H
#define BSA_RUNLOG_INT_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "bsa/runlog.h"

/* "BSA1" in the SQLite header (PRAGMA application_id): tells a bsa log from
 * any other SQLite file, so that bsa never writes into a foreign database. */
#define BSA__RUNLOG_APP_ID 0x42534131

/* How long a writer waits for the lock before giving up (milliseconds). */
#define BSA__RUNLOG_BUSY_MS 30000

#define BSA__RUNLOG_MSG_LEN 1024

struct bsa_runlog {
  sqlite3 *db;
  char *path;
  int readonly;     /* opened read-only (reader of a log it may not write) */
  char host[256];   /* this machine, to judge runs left "running" */
  char boot_id[64]; /* this boot ("" when unknown) */
  char msg[BSA__RUNLOG_MSG_LEN];
};

struct bsa_run {
  bsa_runlog *log;
  int64_t id;
  pid_t pid; /* the process that began the run: the only one that may write it */
};

/* ---- errors (schema.c) ---------------------------------------------- */

/* Formats a message into log->msg (when log is non-NULL) and into libbsa's
 * thread-local bsa_last_error(), and returns st. */
bsa_status bsa__runlog_fail(bsa_runlog *log, bsa_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with the SQLite message of log->db appended: "what: sqlite msg". */
bsa_status bsa__runlog_fail_db(bsa_runlog *log, const char *what);

/* ---- transactions (schema.c) ---------------------------------------- */

/* BEGIN IMMEDIATE, retried on SQLITE_BUSY until BSA__RUNLOG_BUSY_MS has
 * passed (on top of the busy handler, which SQLite skips in a few WAL
 * cases).  Returns an SQLite code. */
int bsa__runlog_begin(bsa_runlog *log);
/* COMMIT (retried on SQLITE_BUSY the same way); on failure rolls back. */
int bsa__runlog_commit(bsa_runlog *log);
void bsa__runlog_rollback(bsa_runlog *log);

/* ---- this machine and process (sysinfo.c) --------------------------- */

/* Now as ISO 8601 UTC with milliseconds: "2026-10-27T12:34:56.789Z". */
void bsa__runlog_now(char buf[32]);
/* Host name ("" when unknown). */
void bsa__runlog_host(char *buf, size_t len);
/* /proc/sys/kernel/random/boot_id ("" when unknown). */
void bsa__runlog_boot_id(char *buf, size_t len);
/* Start time of process pid in clock ticks since boot (/proc/PID/stat field
 * 22), and whether it is a zombie.  Returns -1 when it cannot be read. */
int64_t bsa__runlog_proc_start(pid_t pid, int *zombie);
/* The status to show for a stored status: a "running" run whose process is
 * known to be gone is "interrupted" (see docs/runlog.md).  host, boot_id may
 * be NULL (older logs); proc_start < 0 means unknown.  Static string. */
const char *bsa__runlog_effective_status(const bsa_runlog *log, const char *status,
                                         const char *host, int64_t pid, const char *boot_id,
                                         int64_t proc_start);

/* ---- text encodings (textout.c) ------------------------------------- */

/* A JSON string literal of s (quotes included).  Bytes that are not valid
 * UTF-8 become U+FFFD; everything else passes through exactly. */
void bsa__json_string(FILE *f, const char *s);
/* Shortest decimal text that reads back as exactly v ("nan", "inf", "-inf"
 * for non-finite values). */
void bsa__fmt_double(double v, char buf[40]);
/* One CSV field per RFC 4180: quoted when it holds a comma, quote, CR, LF or
 * leading/trailing space; quotes doubled. */
void bsa__csv_field(FILE *f, const char *s);
/* The command line as a JSON array of strings; malloc'ed (NULL on ENOMEM). */
char *bsa__runlog_argv_json(int argc, char *const *argv);
/* The command line as one POSIX-shell-quoted string; malloc'ed. */
char *bsa__runlog_argv_shell(int argc, char *const *argv);

/* ---- files (sha256.c) ----------------------------------------------- */

/* Size and SHA-256 (64 lower-case hex digits) of a regular file.  On failure
 * returns BSA_ERR_IO with a message naming the path in err. */
bsa_status bsa__runlog_sha256_file(const char *path, char hex[65], int64_t *size, char *err,
                                   size_t errlen);

/* ---- queries (query.c) ---------------------------------------------- */

/* Registers the SQL function bsa_status(status, host, pid, boot_id,
 * proc_start) on log->db, which gives the effective status. */
int bsa__runlog_register_functions(bsa_runlog *log);

#endif
