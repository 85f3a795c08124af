/*
 * tools/cli.h - what every `bsa` verb shares: global options, the run being
 * recorded in the experiment log, error reporting and exit codes.
 *
 * A verb is `int cmd_NAME(bsa_cli *cli, int argc, char **argv)` where argv[0]
 * is the verb (or "VERB SUB" for sub-verbs).  It returns an exit status:
 * BSA_EXIT_OK, BSA_EXIT_FAIL (failure while working), BSA_EXIT_USAGE.
 */
#ifndef BSA_TOOLS_CLI_H
#define BSA_TOOLS_CLI_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "bsa.h"
#include "bsa/runlog.h"

enum { BSA_EXIT_OK = 0, BSA_EXIT_FAIL = 1, BSA_EXIT_USAGE = 2 };

typedef struct bsa_cli {
  const char *db_path; /* --db, $BSA_DB, or "bsa-runs.db" */
  int no_log;          /* --no-log */
  int threads;         /* --threads (0 = all cores) */
  int quiet;           /* -q */
  int full_argc;       /* the whole command line, for the log */
  char **full_argv;
  const char *verb; /* "bench", "trace synth", ... */
  bsa_runlog *log;  /* open while a run is recorded */
  bsa_run *run;     /* NULL with --no-log or before cli_run_begin */
  int failed;       /* a failure was reported */
} bsa_cli;

/* Opens the log and starts recording the run (unless --no-log).  A log that
 * cannot be opened is a failure (exit 1) with the log's message. */
int cli_run_begin(bsa_cli *cli);
/* Ends the run with ok (exit == 0) or failed (with the last error text). */
int cli_run_end(bsa_cli *cli, int exit_code);

/* Records into the current run; no-ops without one.  Failures to record are
 * reported once on stderr and do not stop the work. */
void cli_param(bsa_cli *cli, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cli_input(bsa_cli *cli, const char *role, const char *path);
void cli_output(bsa_cli *cli, const char *role, const char *path);
void cli_metric(bsa_cli *cli, const char *name, double value, const char *record, int32_t head,
                const char *labels_json);
void cli_device(bsa_cli *cli, const char *name, const char *driver);
int64_t cli_run_id(const bsa_cli *cli); /* 0 without a run */

/* Prints "bsa VERB: message" to stderr, remembers it as the run's error and
 * returns code (BSA_EXIT_FAIL or BSA_EXIT_USAGE). */
int cli_error(bsa_cli *cli, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The usage error for what getopt_long returned as ch (':' for a missing
 * value, anything else an unknown option), naming the option; returns
 * BSA_EXIT_USAGE. */
int cli_bad_option(bsa_cli *cli, int ch, char **argv);

/* A verb's sub-verb: argv[1] == name runs fn with argv shifted by one and
 * cli->verb set to verb (unchanged when NULL). */
typedef struct cli_sub {
  const char *name;
  const char *verb;
  int (*fn)(bsa_cli *cli, int argc, char **argv);
} cli_sub;
/* Runs the sub-verb argv[1] names.  No sub-verb: usage on stderr, exit 2;
 * help, -h, --help: usage on stdout, exit 0; an unknown one: a usage error
 * listing the choices. */
int cli_subcommand(bsa_cli *cli, int argc, char **argv, const cli_sub *subs, size_t n,
                   void (*usage)(FILE *));

/* Progress to stderr when it is a terminal and not --quiet. */
void cli_progress(bsa_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_progress_done(bsa_cli *cli);

/* Strict number parsing for option values: on error prints a usage error
 * naming the option and the value, and returns -1. */
int cli_parse_i64(bsa_cli *cli, const char *opt, const char *s, int64_t lo, int64_t hi,
                  int64_t *out);
int cli_parse_f64(bsa_cli *cli, const char *opt, const char *s, double lo, double hi, double *out);
/* Comma-separated doubles, each within [lo, hi]; *out is malloc'ed. */
int cli_parse_f64_list(bsa_cli *cli, const char *opt, const char *s, double lo, double hi,
                       double **out, int *n);

/* Verbs. */
int cmd_bench(bsa_cli *cli, int argc, char **argv);
int cmd_runs(bsa_cli *cli, int argc, char **argv);
int cmd_trace(bsa_cli *cli, int argc, char **argv);
int cmd_maskgen(bsa_cli *cli, int argc, char **argv);
int cmd_eval(bsa_cli *cli, int argc, char **argv);
int cmd_viz(bsa_cli *cli, int argc, char **argv);

#endif
