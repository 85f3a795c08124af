/*
 * tools/cli.c - shared plumbing of the `bsa` verbs (see cli.h).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static char last_error[1024];

int cli_run_begin(bsa_cli *cli) {
  if (cli->no_log) return BSA_EXIT_OK;
  bsa_status st = bsa_runlog_open(cli->db_path, &cli->log);
  if (st != BSA_OK) {
    fprintf(stderr, "bsa %s: experiment log: %s (use --no-log to run without it)\n", cli->verb,
            bsa_last_error());
    return BSA_EXIT_FAIL;
  }
  st = bsa_runlog_run_begin(cli->log, cli->verb, cli->full_argc, cli->full_argv, &cli->run);
  if (st != BSA_OK) {
    fprintf(stderr, "bsa %s: experiment log: %s\n", cli->verb, bsa_runlog_last_error(cli->log));
    bsa_runlog_close(cli->log);
    cli->log = NULL;
    return BSA_EXIT_FAIL;
  }
  return BSA_EXIT_OK;
}

int cli_run_end(bsa_cli *cli, int exit_code) {
  if (cli->run) {
    bsa_status st = bsa_run_end(cli->run, exit_code == 0 ? BSA_OK : BSA_ERR_INTERNAL,
                                exit_code == 0  ? NULL
                                : last_error[0] ? last_error
                                                : "failed");
    cli->run = NULL;
    if (st != BSA_OK)
      fprintf(stderr, "bsa %s: experiment log: %s\n", cli->verb, bsa_runlog_last_error(cli->log));
  }
  if (cli->log) {
    bsa_runlog_close(cli->log);
    cli->log = NULL;
  }
  return exit_code;
}

static void record_failed(bsa_cli *cli) {
  static int warned;
  if (!warned && cli->log) {
    fprintf(stderr, "bsa %s: warning: experiment log: %s\n", cli->verb,
            bsa_runlog_last_error(cli->log));
    warned = 1;
  }
}

void cli_param(bsa_cli *cli, const char *name, const char *fmt, ...) {
  if (!cli->run) return;
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (bsa_run_param(cli->run, name, buf) != BSA_OK) record_failed(cli);
}

void cli_input(bsa_cli *cli, const char *role, const char *path) {
  if (cli->run && bsa_run_input(cli->run, role, path) != BSA_OK) record_failed(cli);
}

void cli_output(bsa_cli *cli, const char *role, const char *path) {
  if (cli->run && bsa_run_output(cli->run, role, path) != BSA_OK) record_failed(cli);
}

void cli_metric(bsa_cli *cli, const char *name, double value, const char *record, int32_t head,
                const char *labels_json) {
  if (cli->run && bsa_run_metric(cli->run, name, value, record, head, labels_json) != BSA_OK)
    record_failed(cli);
}

void cli_device(bsa_cli *cli, const char *name, const char *driver) {
  if (driver && !*driver) driver = NULL;
  if (cli->run && bsa_run_device(cli->run, name, driver) != BSA_OK) record_failed(cli);
}

int64_t cli_run_id(const bsa_cli *cli) { return cli->run ? bsa_run_id(cli->run) : 0; }

int cli_error(bsa_cli *cli, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  cli_progress_done(cli);
  fprintf(stderr, "bsa %s: %s\n", cli->verb ? cli->verb : "", last_error);
  cli->failed = 1;
  return code;
}

static int progress_shown;

void cli_progress(bsa_cli *cli, const char *fmt, ...) {
  if (cli->quiet || !isatty(STDERR_FILENO)) return;
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\r\033[K%s", buf);
  fflush(stderr);
  progress_shown = 1;
}

void cli_progress_done(bsa_cli *cli) {
  if (progress_shown) {
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
    progress_shown = 0;
  }
}

int cli_parse_i64(bsa_cli *cli, const char *opt, const char *s, int64_t lo, int64_t hi,
                  int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = s ? strtoll(s, &end, 10) : 0;
  if (!s || !*s || *end || errno) {
    cli_error(cli, BSA_EXIT_USAGE, "%s expects an integer, got '%s'", opt, s ? s : "");
    return -1;
  }
  if (v < lo || v > hi) {
    cli_error(cli, BSA_EXIT_USAGE, "%s = %lld is out of range [%lld, %lld]", opt, v, (long long)lo,
              (long long)hi);
    return -1;
  }
  *out = v;
  return 0;
}

int cli_parse_f64(bsa_cli *cli, const char *opt, const char *s, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double v = s ? strtod(s, &end) : 0;
  if (!s || !*s || *end || errno || !isfinite(v)) {
    cli_error(cli, BSA_EXIT_USAGE, "%s expects a number, got '%s'", opt, s ? s : "");
    return -1;
  }
  if (v < lo || v > hi) {
    cli_error(cli, BSA_EXIT_USAGE, "%s = %g is out of range [%g, %g]", opt, v, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

int cli_parse_f64_list(bsa_cli *cli, const char *opt, const char *s, double lo, double hi,
                       double **out, int *n) {
  *out = NULL;
  *n = 0;
  if (!s || !*s) {
    cli_error(cli, BSA_EXIT_USAGE, "%s expects a comma-separated list of numbers", opt);
    return -1;
  }
  char *copy = strdup(s);
  if (!copy) return -1;
  int cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ',';
  double *vals = malloc(sizeof(double) * (size_t)cap);
  int count = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (cli_parse_f64(cli, opt, tok, lo, hi, &vals[count]) != 0) {
      free(vals);
      free(copy);
      return -1;
    }
    count++;
  }
  free(copy);
  if (count == 0) {
    free(vals);
    cli_error(cli, BSA_EXIT_USAGE, "%s expects a comma-separated list of numbers", opt);
    return -1;
  }
  *out = vals;
  *n = count;
  return 0;
}

int cli_bad_option(bsa_cli *cli, int ch, char **argv) {
  const char *opt = optind > 0 ? argv[optind - 1] : "";
  if (ch == ':') return cli_error(cli, BSA_EXIT_USAGE, "%s needs a value", opt);
  return cli_error(cli, BSA_EXIT_USAGE, "unknown option '%s' (see bsa %s --help)", opt,
                   cli->verb ? cli->verb : "");
}

int cli_subcommand(bsa_cli *cli, int argc, char **argv, const cli_sub *subs, size_t n,
                   void (*usage)(FILE *)) {
  if (argc < 2) {
    usage(stderr);
    return BSA_EXIT_USAGE;
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
    usage(stdout);
    return BSA_EXIT_OK;
  }
  char names[256] = "";
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(sub, subs[i].name)) {
      if (subs[i].verb) cli->verb = subs[i].verb;
      return subs[i].fn(cli, argc - 1, argv + 1);
    }
    const size_t len = strlen(names);
    snprintf(names + len, sizeof names - len, "%s%s",
             i == 0       ? ""
             : i + 1 == n ? " or "
                          : ", ",
             subs[i].name);
  }
  return cli_error(cli, BSA_EXIT_USAGE, "unknown sub-command '%s': use %s", sub, names);
}
