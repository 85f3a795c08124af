/*
 * tools/cmd_runs.c - `bsa runs list|show|compare|export`: reading the
 * experiment log (docs/runlog.md).
 *
 * These sub-commands only read: they open the log with
 * bsa_runlog_open_existing (a missing log is an error, never created) and
 * record no run of their own.
 */
#define _GNU_SOURCE 1 /* memrchr */
#include "config.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: bsa runs list [FILTERS] [--limit N] [--json]\n"
          "       bsa runs show ID [--json]\n"
          "       bsa runs compare ID ID... [--diff]\n"
          "       bsa runs export [--format csv|json] [FILTERS] [--limit N]\n"
          "                       [--metric NAME]\n\n"
          "list     runs, newest first: id, start time (UTC), duration, verb, status,\n"
          "         number of metrics, command line\n"
          "show     everything about one run: command line, host, versions, device,\n"
          "         parameters, input and output files with SHA-256, metrics\n"
          "compare  parameters and metrics of several runs side by side; rows that\n"
          "         differ are marked '*' (and bold on a terminal)\n"
          "         --diff      only the rows that differ\n"
          "export   one flat table to stdout, one row per metric with the run's\n"
          "         columns, param.NAME and label.KEY columns (CSV per RFC 4180, or\n"
          "         JSON: an array of objects); pandas reads either directly\n"
          "         --format    csv (default) or json\n"
          "         --metric    only this metric\n\n"
          "FILTERS (list and export; all must hold):\n"
          "  --verb VERB         bench, eval, maskgen, \"trace synth\", viz masks, ...\n"
          "  --status S          ok, failed, running or interrupted (left running by a\n"
          "                      process that is gone)\n"
          "  --since WHEN        started at or after WHEN\n"
          "  --until WHEN        started before WHEN; a date alone includes that day\n"
          "                      WHEN: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.mmm]][Z], UTC\n"
          "  --param NAME=VALUE  parameter NAME was exactly VALUE (repeatable)\n"
          "  --limit N           at most N runs (the newest)\n"
          "  --json              list/show: JSON, one object per line\n\n"
          "The log is --db PATH, else $BSA_DB, else ./bsa-runs.db.\n");
}

/* ---- options ---------------------------------------------------------------- */

enum { MAX_PARAMS = 64 };

typedef struct runs_args {
  bsa_runlog_filter filter;
  const char *param_names[MAX_PARAMS];
  const char *param_values[MAX_PARAMS];
  char *param_copies[MAX_PARAMS];
  char since[64], until[64];
  int json, diff;
  const char *format; /* export */
  const char *metric; /* export */
  int nids;
  int64_t *ids; /* show/compare */
} runs_args;

enum {
  OPT_VERB = 256,
  OPT_STATUS,
  OPT_SINCE,
  OPT_UNTIL,
  OPT_PARAM,
  OPT_LIMIT,
  OPT_JSON,
  OPT_DIFF,
  OPT_FORMAT,
  OPT_METRIC
};

static int is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in(int y, int m) {
  static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* Parses WHEN into the log's time text "YYYY-MM-DDTHH:MM:SS.mmmZ".  A date
 * alone given as an --until bound means the end of that day (the start of
 * the next), so that the day is included.  Returns 0, or -1 after an error. */
static int parse_when(bsa_cli *cli, const char *opt, const char *s, int is_until, char out[64]) {
  int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, n = 0;
  int date_only = 0;
  if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && s[n] == '\0' && n == 10) {
    date_only = 1;
  } else {
    int k = 0;
    const char *p = s;
    if (sscanf(p, "%4d-%2d-%2d%n", &y, &mo, &d, &k) != 3 || k != 10 ||
        (p[10] != 'T' && p[10] != ' '))
      goto bad;
    p += 11;
    if (sscanf(p, "%2d:%2d%n", &h, &mi, &k) != 2 || k != 5) goto bad;
    p += 5;
    if (*p == ':') {
      if (sscanf(p + 1, "%2d%n", &sec, &k) != 1 || k != 2) goto bad;
      p += 3;
      if (*p == '.') {
        int digits = 0;
        ms = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
          if (digits < 3) ms = ms * 10 + (*p - '0');
        if (digits == 0) goto bad;
        for (; digits < 3; digits++) ms *= 10;
      }
    }
    if (*p == 'Z') p++;
    if (*p) goto bad;
  }
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in(y, mo) || h > 23 || mi > 59 || sec > 59 ||
      h < 0 || mi < 0 || sec < 0) {
    cli_error(cli, BSA_EXIT_USAGE, "%s '%s' is not a valid date or time", opt, s);
    return -1;
  }
  if (date_only && is_until) {
    if (++d > days_in(y, mo)) {
      d = 1;
      if (++mo > 12) {
        mo = 1;
        y++;
      }
    }
  }
  snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y % 10000, mo % 100, d % 100, h % 100,
           mi % 100, sec % 100, ms % 1000);
  return 0;
bad:
  cli_error(cli, BSA_EXIT_USAGE,
            "%s expects YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.mmm]][Z] (UTC), got '%s'", opt, s);
  return -1;
}

static void free_args(runs_args *a) {
  for (int i = 0; i < a->filter.num_params; i++) free(a->param_copies[i]);
  free(a->ids);
}

/* Parses the options of a sub-command; allowed lists those it takes by
 * letter: v verb, s status, S since, U until, p param, l limit, j json,
 * d diff, f format, m metric.  Positional arguments are run ids (min_ids at
 * least; 0 = none allowed).  Returns 0, -1 after --help, or an exit code. */
static int parse(bsa_cli *cli, int argc, char **argv, const char *allowed, int min_ids,
                 runs_args *a) {
  static const struct option longopts[] = {{"verb", required_argument, 0, OPT_VERB},
                                           {"status", required_argument, 0, OPT_STATUS},
                                           {"since", required_argument, 0, OPT_SINCE},
                                           {"until", required_argument, 0, OPT_UNTIL},
                                           {"param", required_argument, 0, OPT_PARAM},
                                           {"limit", required_argument, 0, OPT_LIMIT},
                                           {"json", no_argument, 0, OPT_JSON},
                                           {"diff", no_argument, 0, OPT_DIFF},
                                           {"format", required_argument, 0, OPT_FORMAT},
                                           {"metric", required_argument, 0, OPT_METRIC},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  memset(a, 0, sizeof *a);
  a->filter.param_names = a->param_names;
  a->filter.param_values = a->param_values;
  optind = 1;
  opterr = 0;
  int ch, idx = 0;
  while ((ch = getopt_long(argc, argv, ":h", longopts, &idx)) != -1) {
    if (ch >= OPT_VERB && ch <= OPT_METRIC && !strchr(allowed, "vsSUpljdfm"[ch - OPT_VERB]))
      return cli_error(cli, BSA_EXIT_USAGE, "runs %s does not take --%s (see bsa runs --help)",
                       argv[0], longopts[idx].name);
    switch (ch) {
      case OPT_VERB:
        a->filter.verb = optarg;
        break;
      case OPT_STATUS:
        if (strcmp(optarg, "ok") && strcmp(optarg, "failed") && strcmp(optarg, "running") &&
            strcmp(optarg, "interrupted"))
          return cli_error(cli, BSA_EXIT_USAGE,
                           "--status must be ok, failed, running or interrupted, got '%s'", optarg);
        a->filter.status = optarg;
        break;
      case OPT_SINCE:
        if (parse_when(cli, "--since", optarg, 0, a->since)) return BSA_EXIT_USAGE;
        a->filter.since = a->since;
        break;
      case OPT_UNTIL:
        if (parse_when(cli, "--until", optarg, 1, a->until)) return BSA_EXIT_USAGE;
        a->filter.until = a->until;
        break;
      case OPT_PARAM: {
        const char *eq = strchr(optarg, '=');
        if (!eq || eq == optarg)
          return cli_error(cli, BSA_EXIT_USAGE, "--param expects NAME=VALUE, got '%s'", optarg);
        int k = a->filter.num_params;
        if (k == MAX_PARAMS)
          return cli_error(cli, BSA_EXIT_USAGE, "--param given more than %d times", MAX_PARAMS);
        a->param_copies[k] = strndup(optarg, (size_t)(eq - optarg));
        if (!a->param_copies[k]) return cli_error(cli, BSA_EXIT_FAIL, "out of memory");
        a->param_names[k] = a->param_copies[k];
        a->param_values[k] = eq + 1;
        a->filter.num_params++;
        break;
      }
      case OPT_LIMIT:
        if (cli_parse_i64(cli, "--limit", optarg, 1, INT64_MAX, &a->filter.limit))
          return BSA_EXIT_USAGE;
        break;
      case OPT_JSON:
        a->json = 1;
        break;
      case OPT_DIFF:
        a->diff = 1;
        break;
      case OPT_FORMAT:
        if (strcmp(optarg, "csv") && strcmp(optarg, "json"))
          return cli_error(cli, BSA_EXIT_USAGE, "--format must be csv or json, got '%s'", optarg);
        a->format = optarg;
        break;
      case OPT_METRIC:
        a->metric = optarg;
        break;
      case 'h':
        usage(stdout);
        return -1;
      default:
        return cli_bad_option(cli, ch, argv);
    }
  }
  int n = argc - optind;
  if (n > 0 && min_ids == 0)
    return cli_error(cli, BSA_EXIT_USAGE, "runs %s: unexpected argument '%s'", argv[0],
                     argv[optind]);
  if (n < min_ids)
    return cli_error(cli, BSA_EXIT_USAGE, "runs %s needs %s run id%s (see bsa runs list)", argv[0],
                     min_ids == 1 ? "a" : "at least two", min_ids == 1 ? "" : "s");
  if (n > 0) {
    a->ids = malloc(sizeof(int64_t) * (size_t)n);
    if (!a->ids) return cli_error(cli, BSA_EXIT_FAIL, "out of memory");
    for (int i = 0; i < n; i++)
      if (cli_parse_i64(cli, "run id", argv[optind + i], 1, INT64_MAX, &a->ids[i]))
        return BSA_EXIT_USAGE;
    a->nids = n;
  }
  return 0;
}

static int open_log(bsa_cli *cli, bsa_runlog **log) {
  if (bsa_runlog_open_existing(cli->db_path, log) != BSA_OK)
    return cli_error(cli, BSA_EXIT_FAIL,
                     "%s (runs are recorded by bench, trace, maskgen, "
                     "eval and viz; --db PATH or BSA_DB names a log)",
                     bsa_last_error());
  return 0;
}

/* What every sub-verb starts with: its options (allowed letters, at least
 * min_ids and, when max_ids > 0, at most max_ids run ids), then the log.
 * Returns 0 to go on; otherwise the sub-verb is done (help shown or an error
 * reported) with exit status *code and nothing left to free. */
static int begin(bsa_cli *cli, int argc, char **argv, const char *allowed, int min_ids, int max_ids,
                 runs_args *a, bsa_runlog **log, int *code) {
  int rc = parse(cli, argc, argv, allowed, min_ids, a);
  if (rc == 0 && max_ids > 0 && a->nids > max_ids)
    rc =
        cli_error(cli, BSA_EXIT_USAGE, "runs %s takes one run id (compare takes several)", argv[0]);
  if (rc == 0) rc = open_log(cli, log);
  if (rc == 0) return 0;
  free_args(a);
  *code = rc < 0 ? BSA_EXIT_OK : rc;
  return 1;
}

/* ---- text helpers ------------------------------------------------------------ */

static int use_color(void) { return isatty(STDOUT_FILENO) && !getenv("NO_COLOR"); }

/* Display width of UTF-8 text: code points (wide scripts count one). */
static int text_width(const char *s) {
  int w = 0;
  for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
  return w;
}

/* Prints s in a column of width w: control characters as spaces, cut with
 * "..." when longer (at a code point boundary), padded when shorter. */
static void put_cell(const char *s, int w, int pad) {
  if (!s) s = "-";
  int width = text_width(s), cut = w > 3 && width > w;
  int room = cut ? w - 3 : w, used = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    int lead = (*p & 0xC0) != 0x80;
    if (lead && used == room) break;
    used += lead;
    putchar(*p < 0x20 || *p == 0x7f ? ' ' : *p);
  }
  if (cut) {
    fputs("...", stdout);
    used += 3;
  }
  if (pad)
    for (; used < w; used++) putchar(' ');
}

static void fmt_duration(double s, char *buf, size_t len) {
  if (!isfinite(s))
    snprintf(buf, len, "-");
  else if (s < 60)
    snprintf(buf, len, "%.2fs", s);
  else if (s < 3600)
    snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else
    snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void fmt_size(int64_t b, char *buf, size_t len) {
  if (b < 1024)
    snprintf(buf, len, "%lld B", (long long)b);
  else if (b < 1024 * 1024)
    snprintf(buf, len, "%.1f KiB", b / 1024.0);
  else if (b < 1024LL * 1024 * 1024)
    snprintf(buf, len, "%.1f MiB", b / 1048576.0);
  else
    snprintf(buf, len, "%.2f GiB", b / 1073741824.0);
}

static const char *status_color(const char *status) {
  if (!use_color()) return "";
  if (!strcmp(status, "ok")) return "\033[32m";
  if (!strcmp(status, "failed")) return "\033[31m";
  if (!strcmp(status, "interrupted")) return "\033[33m";
  return "\033[36m";
}

/* Labels {"layout":"bsr","density":0.1} as "density=0.1 layout=bsr" (keys
 * sorted), leaving out the pairs also found in omit (may be NULL);
 * malloc'ed. */
static char *labels_text_of(json_t *o, json_t *omit);

static char *labels_text(const char *labels_json) {
  json_t *o = json_loads(labels_json ? labels_json : "{}", 0, NULL);
  char *t = labels_text_of(o, NULL);
  json_decref(o);
  return t;
}

static char *labels_text_of(json_t *o, json_t *omit) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) {
    json_decref(o);
    return NULL;
  }
  if (json_is_object(o)) {
    size_t n = json_object_size(o), k = 0;
    const char **keys = malloc(sizeof(char *) * (n ? n : 1));
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) keys[k++] = key;
    for (size_t i = 0; i < n; i++)
      for (size_t j = i + 1; j < n; j++)
        if (strcmp(keys[j], keys[i]) < 0) {
          const char *t = keys[i];
          keys[i] = keys[j];
          keys[j] = t;
        }
    int first = 1;
    for (size_t i = 0; i < n; i++) {
      v = json_object_get(o, keys[i]);
      json_t *same = omit ? json_object_get(omit, keys[i]) : NULL;
      if (same && json_equal(same, v)) continue;
      fprintf(f, "%s%s=", first ? "" : " ", keys[i]);
      first = 0;
      if (json_is_string(v))
        fputs(json_string_value(v), f);
      else if (json_is_integer(v))
        fprintf(f, "%lld", (long long)json_integer_value(v));
      else if (json_is_real(v))
        fprintf(f, "%.6g", json_real_value(v));
      else {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs(t ? t : "?", f);
        free(t);
      }
    }
    free(keys);
  }
  fclose(f);
  return buf;
}

/* ---- list ------------------------------------------------------------------ */

typedef struct list_ctx {
  bsa_runlog *log;
  int json;
  int cmd_width;
  int64_t count;
  bsa_status status;
} list_ctx;

static int list_row(const bsa_runlog_run_row *r, void *user) {
  list_ctx *c = user;
  c->count++;
  if (c->json) {
    c->status = bsa_runlog_write_run_json(c->log, r->id, 0, stdout);
    return c->status != BSA_OK;
  }
  char started[24], dur[16], metrics[24];
  /* "2026-11-25T16:20:01.123Z" -> "2026-11-25 16:20:01" */
  snprintf(started, sizeof started, "%.10s %.8s", r->started_at,
           strlen(r->started_at) > 11 ? r->started_at + 11 : "");
  fmt_duration(r->duration_s, dur, sizeof dur);
  snprintf(metrics, sizeof metrics, "%lld", (long long)r->num_metrics);
  printf("%6lld  %s  %8s  ", (long long)r->id, started, dur);
  put_cell(r->verb, 13, 1);
  printf(" %s", status_color(r->status));
  put_cell(r->status, 11, 1);
  printf("%s %7s  ", use_color() ? "\033[0m" : "", metrics);
  /* The program as its base name ("bsa bench ..."); show has the full path. */
  const char *cmd = r->command ? r->command : "";
  size_t first = strcspn(cmd, " ");
  if (cmd[0] != '\'') {
    const char *slash = memrchr(cmd, '/', first);
    if (slash) cmd = slash + 1;
  }
  put_cell(cmd, c->cmd_width, 0);
  putchar('\n');
  return 0;
}

static int runs_list(bsa_cli *cli, int argc, char **argv) {
  runs_args a;
  bsa_runlog *log;
  int rc = 0;
  if (begin(cli, argc, argv, "vsSUplj", 0, 0, &a, &log, &rc)) return rc;
  a.filter.newest_first = 1;
  list_ctx c = {.log = log, .json = a.json, .cmd_width = 1 << 20};
  struct winsize ws;
  if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 80)
    c.cmd_width = ws.ws_col - 68;
  else if (isatty(STDOUT_FILENO))
    c.cmd_width = 12;
  if (!a.json)
    printf("%6s  %-19s  %8s  %-13s %-11s %7s  %s\n", "ID", "STARTED (UTC)", "TIME", "VERB",
           "STATUS", "METRICS", "COMMAND");
  bsa_status st = bsa_runlog_foreach_run(log, &a.filter, list_row, &c);
  if (st == BSA_OK) st = c.status;
  if (st != BSA_OK)
    rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_runlog_last_error(log));
  else if (c.count == 0 && !a.json && !cli->quiet)
    fprintf(stderr, "bsa runs: no runs match in '%s'\n", cli->db_path);
  bsa_runlog_close(log);
  free_args(&a);
  return rc;
}

/* ---- show ------------------------------------------------------------------ */

static int show_param(const char *name, const char *value, void *user) {
  int w = *(int *)user;
  printf("  ");
  put_cell(name, w, 1);
  printf("  %s\n", value);
  return 0;
}

static int param_width(const char *name, const char *value, void *user) {
  (void)value;
  int *w = user;
  int n = text_width(name);
  if (n > *w) *w = n < 40 ? n : 40;
  return 0;
}

static int show_file(const bsa_runlog_file_row *f, void *user) {
  const char *dir = user;
  if (strcmp(f->direction, dir) != 0) return 0;
  char size[32];
  fmt_size(f->size, size, sizeof size);
  printf("  %-10s %s\n             %s, sha256 %s\n", f->role, f->path, size, f->sha256);
  if (f->abs_path && strcmp(f->abs_path, f->path) != 0) printf("             %s\n", f->abs_path);
  return 0;
}

static int show_metric(const bsa_runlog_metric_row *m, void *user) {
  (void)user;
  char *labels = labels_text(m->labels_json);
  char head[16];
  if (m->head >= 0)
    snprintf(head, sizeof head, "%d", (int)m->head);
  else
    snprintf(head, sizeof head, "-");
  printf("  ");
  put_cell(m->name, 18, 1);
  printf(" %14.6g  ", m->value);
  put_cell(m->record ? m->record : "-", 16, 1);
  printf(" %4s  %s\n", head, labels ? labels : "");
  free(labels);
  return 0;
}

typedef struct show_ctx {
  bsa_runlog *log;
  int found;
  bsa_status status;
} show_ctx;

static int show_run(const bsa_runlog_run_row *r, void *user) {
  show_ctx *c = user;
  c->found = 1;
  const char *bold = use_color() ? "\033[1m" : "", *reset = use_color() ? "\033[0m" : "";
  printf("%srun %lld%s  %s  %s%s%s\n", bold, (long long)r->id, reset, r->verb,
         status_color(r->status), r->status, reset);
  if (strcmp(r->status, r->recorded_status) != 0)
    printf("  (recorded as %s; process %lld on %s is gone)\n", r->recorded_status,
           (long long)r->pid, r->host);
  char dur[16];
  fmt_duration(r->duration_s, dur, sizeof dur);
  printf("  started   %s\n", r->started_at);
  printf("  ended     %s%s%s%s\n", r->ended_at ? r->ended_at : "-", r->ended_at ? " (" : "",
         r->ended_at ? dur : "", r->ended_at ? ")" : "");
  printf("  command   %s\n", r->command);
  printf("  cwd       %s\n", r->cwd ? r->cwd : "-");
  printf("  host      %s (pid %lld)\n", r->host, (long long)r->pid);
  printf("  bsa       %s (%s)\n", r->bsa_version, r->build_info);
  if (r->device_name)
    printf("  device    %s%s%s\n", r->device_name, r->device_driver ? ", driver " : "",
           r->device_driver ? r->device_driver : "");
  if (r->error) printf("  error     %s\n", r->error);

  bsa_status s;
  int w = 8;
  printf("parameters (%lld)\n", (long long)r->num_params);
  if ((s = bsa_runlog_foreach_param(c->log, r->id, param_width, &w)) != BSA_OK ||
      (s = bsa_runlog_foreach_param(c->log, r->id, show_param, &w)) != BSA_OK)
    goto fail;
  printf("inputs (%lld)\n", (long long)r->num_inputs);
  if ((s = bsa_runlog_foreach_file(c->log, r->id, show_file, "input")) != BSA_OK) goto fail;
  printf("outputs (%lld)\n", (long long)r->num_outputs);
  if ((s = bsa_runlog_foreach_file(c->log, r->id, show_file, "output")) != BSA_OK) goto fail;
  printf("metrics (%lld)\n", (long long)r->num_metrics);
  if (r->num_metrics > 0)
    printf("  %-18s %14s  %-16s %4s  %s\n", "NAME", "VALUE", "RECORD", "HEAD", "LABELS");
  if ((s = bsa_runlog_foreach_run_metric(c->log, r->id, show_metric, NULL)) != BSA_OK) goto fail;
  return 0;
fail:
  c->status = s;
  return 1;
}

static int runs_show(bsa_cli *cli, int argc, char **argv) {
  runs_args a;
  bsa_runlog *log;
  int rc = 0;
  if (begin(cli, argc, argv, "j", 1, 1, &a, &log, &rc)) return rc;
  bsa_status st;
  int found = 1; /* the JSON writer reports a missing run as an error itself */
  if (a.json) {
    st = bsa_runlog_write_run_json(log, a.ids[0], 1, stdout);
  } else {
    bsa_runlog_filter f = {.run_id = a.ids[0]};
    show_ctx c = {.log = log};
    st = bsa_runlog_foreach_run(log, &f, show_run, &c);
    if (st == BSA_OK) st = c.status;
    found = c.found;
  }
  if (st != BSA_OK)
    rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_runlog_last_error(log));
  else if (!found)
    rc = cli_error(cli, BSA_EXIT_FAIL, "no run %lld in '%s'", (long long)a.ids[0], cli->db_path);
  bsa_runlog_close(log);
  free_args(&a);
  return rc;
}

/* ---- compare ------------------------------------------------------------- */

/* One line of the comparison: a label and one cell per run.  For metrics
 * the values are kept as numbers so that equality is exact. */
typedef struct cmp_row {
  char *key;      /* what matches cells across runs */
  char *label;    /* what is shown */
  int section;    /* 0 run, 1 parameters, 2 metrics */
  int marked;     /* shown with '*' when cells differ */
  char **text;    /* [nruns], NULL = absent */
  double *val;    /* [nruns] metrics */
  char *base;     /* metrics: "name record=R head=H" */
  json_t *labels; /* metrics: the labels object */
} cmp_row;

typedef struct cmp_ctx {
  bsa_runlog *log;
  int nruns, cur; /* number of runs, the run being read */
  cmp_row *rows;
  int nrows, cap;
  int found;
  int nomem;
} cmp_ctx;

static cmp_row *cmp_get(cmp_ctx *c, int section, const char *key, const char *label, int mark) {
  for (int i = 0; i < c->nrows; i++)
    if (c->rows[i].section == section && strcmp(c->rows[i].key, key) == 0) return &c->rows[i];
  if (c->nrows == c->cap) {
    int cap = c->cap ? 2 * c->cap : 64;
    cmp_row *r = realloc(c->rows, sizeof *r * (size_t)cap);
    if (!r) return NULL;
    c->rows = r;
    c->cap = cap;
  }
  cmp_row *r = &c->rows[c->nrows];
  memset(r, 0, sizeof *r);
  r->key = strdup(key);
  r->label = strdup(label);
  r->section = section;
  r->marked = mark;
  r->text = calloc((size_t)c->nruns, sizeof(char *));
  r->val = calloc((size_t)c->nruns, sizeof(double));
  if (!r->key || !r->label || !r->text || !r->val) return NULL;
  c->nrows++;
  return r;
}

static void cmp_set(cmp_ctx *c, int section, const char *key, const char *value, int mark) {
  cmp_row *r = cmp_get(c, section, key, key, mark);
  if (!r) {
    c->nomem = 1;
    return;
  }
  free(r->text[c->cur]);
  r->text[c->cur] = value ? strdup(value) : NULL;
}

static int cmp_run(const bsa_runlog_run_row *r, void *user) {
  cmp_ctx *c = user;
  char dur[16], dev[512];
  c->found = 1;
  fmt_duration(r->duration_s, dur, sizeof dur);
  snprintf(dev, sizeof dev, "%s%s%s", r->device_name ? r->device_name : "",
           r->device_driver ? ", driver " : "", r->device_driver ? r->device_driver : "");
  /* Start time, duration and command line always differ between runs: shown
   * for reference, not marked (the parameters carry the difference). */
  cmp_set(c, 0, "verb", r->verb, 1);
  cmp_set(c, 0, "status", r->status, 1);
  cmp_set(c, 0, "started", r->started_at, 0);
  cmp_set(c, 0, "duration", dur, 0);
  cmp_set(c, 0, "host", r->host, 1);
  cmp_set(c, 0, "device", r->device_name ? dev : NULL, 1);
  cmp_set(c, 0, "bsa version", r->bsa_version, 1);
  cmp_set(c, 0, "build", r->build_info, 1);
  cmp_set(c, 0, "error", r->error, 1);
  cmp_set(c, 0, "command", r->command, 0);
  return 0;
}

static int cmp_param(const char *name, const char *value, void *user) {
  cmp_set(user, 1, name, value, 1);
  return 0;
}

static int cmp_metric(const bsa_runlog_metric_row *m, void *user) {
  cmp_ctx *c = user;
  char head[24] = "";
  if (m->head >= 0) snprintf(head, sizeof head, " head=%d", (int)m->head);
  json_t *labels = json_loads(m->labels_json ? m->labels_json : "{}", 0, NULL);
  if (!json_is_object(labels)) {
    json_decref(labels);
    labels = json_object();
  }
  char *canon = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
  size_t n = strlen(m->name) + (m->record ? strlen(m->record) : 0) + strlen(head) +
             (canon ? strlen(canon) : 0) + 64;
  char *base = malloc(n), *key = malloc(n);
  if (!base || !key || !canon) {
    free(base);
    free(key);
    free(canon);
    json_decref(labels);
    return c->nomem = 1;
  }
  snprintf(base, n, "%s%s%s%s", m->name, m->record ? " record=" : "", m->record ? m->record : "",
           head);
  /* The same metric recorded twice in a run (repeated timings) lines up by
   * its occurrence: first with first, second with second. */
  cmp_row *r = NULL;
  for (int occ = 1;; occ++) {
    snprintf(key, n, "%s %s #%d", base, canon, occ);
    r = cmp_get(c, 2, key, base, 1);
    if (!r || !r->text[c->cur]) break;
  }
  if (r) {
    char num[40];
    snprintf(num, sizeof num, "%.6g", m->value);
    r->text[c->cur] = strdup(num);
    r->val[c->cur] = m->value;
    if (!r->base) {
      r->base = base;
      r->labels = labels;
      base = NULL;
      labels = NULL;
    }
  } else {
    c->nomem = 1;
  }
  free(base);
  free(key);
  free(canon);
  json_decref(labels);
  return c->nomem;
}

/* Label pairs that have one value wherever they occur (in every metric row
 * that has the key) are said once, in the section title, and left out of
 * the rows: what remains is what tells the rows apart.  Returns those pairs
 * (a new object). */
static json_t *cmp_label_rows(cmp_ctx *c) {
  json_t *common = json_object(), *mixed = json_object();
  for (int i = 0; i < c->nrows; i++) {
    cmp_row *r = &c->rows[i];
    if (r->section != 2) continue;
    const char *key;
    json_t *v;
    json_object_foreach(r->labels, key, v) {
      json_t *seen = json_object_get(common, key);
      if (json_object_get(mixed, key)) continue;
      if (!seen) {
        json_object_set(common, key, v);
      } else if (!json_equal(seen, v)) {
        json_object_del(common, key);
        json_object_set_new(mixed, key, json_true());
      }
    }
  }
  json_decref(mixed);
  if (!common) common = json_object();
  for (int i = 0; i < c->nrows; i++) {
    cmp_row *r = &c->rows[i];
    if (r->section != 2) continue;
    char *rest = labels_text_of(r->labels, common);
    size_t n = strlen(r->base) + (rest ? strlen(rest) : 0) + 2;
    char *label = malloc(n);
    if (label) {
      snprintf(label, n, "%s%s%s", r->base, rest && *rest ? " " : "", rest ? rest : "");
      free(r->label);
      r->label = label;
    }
    free(rest);
  }
  return common;
}

static int same_value(double a, double b) { return a == b || (isnan(a) && isnan(b)); }

static int runs_compare(bsa_cli *cli, int argc, char **argv) {
  runs_args a;
  bsa_runlog *log;
  int rc = 0;
  if (begin(cli, argc, argv, "d", 2, 0, &a, &log, &rc)) return rc;
  cmp_ctx c = {.log = log, .nruns = a.nids};
  bsa_status st = BSA_OK;
  for (int i = 0; i < a.nids && st == BSA_OK && !c.nomem; i++) {
    c.cur = i;
    c.found = 0;
    bsa_runlog_filter f = {.run_id = a.ids[i]};
    st = bsa_runlog_foreach_run(log, &f, cmp_run, &c);
    if (st == BSA_OK && !c.found) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "no run %lld in '%s'", (long long)a.ids[i], cli->db_path);
      goto done;
    }
    if (st == BSA_OK) st = bsa_runlog_foreach_param(log, a.ids[i], cmp_param, &c);
    if (st == BSA_OK) st = bsa_runlog_foreach_run_metric(log, a.ids[i], cmp_metric, &c);
  }
  if (st != BSA_OK) {
    rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_runlog_last_error(log));
    goto done;
  }
  if (c.nomem) {
    rc = cli_error(cli, BSA_EXIT_FAIL, "out of memory");
    goto done;
  }

  /* Which rows differ; metric values that print alike but differ get all
   * their digits. */
  int ndiff = 0;
  for (int i = 0; i < c.nrows; i++) {
    cmp_row *r = &c.rows[i];
    int differ = 0;
    for (int k = 1; k < c.nruns; k++) {
      int ha = r->text[0] != NULL, hb = r->text[k] != NULL;
      if (ha != hb)
        differ = 1;
      else if (ha && r->section == 2)
        differ |= !same_value(r->val[0], r->val[k]);
      else if (ha)
        differ |= strcmp(r->text[0], r->text[k]) != 0;
    }
    r->marked = r->marked && differ;
    ndiff += r->marked;
    if (r->marked && r->section == 2) {
      int alike = 0; /* two different values that print the same */
      for (int k = 0; k < c.nruns; k++)
        for (int j = k + 1; j < c.nruns; j++)
          alike |= r->text[k] && r->text[j] && !same_value(r->val[k], r->val[j]) &&
                   strcmp(r->text[k], r->text[j]) == 0;
      for (int k = 0; alike && k < c.nruns; k++)
        if (r->text[k]) {
          char num[40];
          snprintf(num, sizeof num, "%.17g", r->val[k]);
          free(r->text[k]);
          r->text[k] = strdup(num);
        }
    }
  }
  json_t *common = cmp_label_rows(&c);
  char *common_text = labels_text_of(common, NULL);
  json_decref(common);

  int kw = 12, vw[256];
  int ncols = c.nruns < 256 ? c.nruns : 256;
  for (int k = 0; k < ncols; k++) vw[k] = 8;
  for (int i = 0; i < c.nrows; i++) {
    int w = text_width(c.rows[i].label);
    if (w > kw) kw = w < 56 ? w : 56;
    for (int k = 0; k < ncols; k++) {
      int t = c.rows[i].text[k] ? text_width(c.rows[i].text[k]) : 1;
      if (t > vw[k]) vw[k] = t < 30 ? t : 30;
    }
  }
  int color = use_color();
  printf("  ");
  put_cell("", kw, 1);
  for (int k = 0; k < ncols; k++) {
    char h[32];
    snprintf(h, sizeof h, "run %lld", (long long)a.ids[k]);
    printf("  ");
    put_cell(h, vw[k], k + 1 < ncols);
  }
  putchar('\n');
  static const char *const titles[3] = {NULL, "parameters", "metrics"};
  int section = 0;
  for (int i = 0; i < c.nrows; i++) {
    cmp_row *r = &c.rows[i];
    if (r->section != section) {
      section = r->section;
      printf("-- %s", titles[section]);
      if (section == 2 && common_text && *common_text)
        printf(" (labels the same wherever given: %s)", common_text);
      putchar('\n');
    }
    if (a.diff && !r->marked) continue;
    if (r->marked && color) fputs("\033[1m", stdout);
    fputs(r->marked ? "* " : "  ", stdout);
    put_cell(r->label, kw, 1);
    for (int k = 0; k < ncols; k++) {
      printf("  ");
      put_cell(r->text[k] ? r->text[k] : "-", vw[k], k + 1 < ncols);
    }
    if (r->marked && color) fputs("\033[0m", stdout);
    putchar('\n');
  }
  if (!cli->quiet) fprintf(stderr, "bsa runs: %d of %d rows differ (marked *)\n", ndiff, c.nrows);
  free(common_text);
done:
  for (int i = 0; i < c.nrows; i++) {
    for (int k = 0; k < c.nruns; k++) free(c.rows[i].text[k]);
    free(c.rows[i].text);
    free(c.rows[i].val);
    free(c.rows[i].key);
    free(c.rows[i].label);
    free(c.rows[i].base);
    json_decref(c.rows[i].labels);
  }
  free(c.rows);
  bsa_runlog_close(log);
  free_args(&a);
  return rc;
}

/* ---- export ---------------------------------------------------------------- */

static int runs_export(bsa_cli *cli, int argc, char **argv) {
  runs_args a;
  bsa_runlog *log;
  int rc = 0;
  if (begin(cli, argc, argv, "vsSUplfm", 0, 0, &a, &log, &rc)) return rc;
  /* With --limit the newest runs are taken (and written oldest first). */
  a.filter.newest_first = a.filter.limit > 0;
  bsa_runlog_format fmt =
      a.format && !strcmp(a.format, "json") ? BSA_RUNLOG_FORMAT_JSON : BSA_RUNLOG_FORMAT_CSV;
  if (bsa_runlog_export(log, &a.filter, a.metric, fmt, stdout) != BSA_OK)
    rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_runlog_last_error(log));
  bsa_runlog_close(log);
  free_args(&a);
  return rc;
}

/* ---- dispatch -------------------------------------------------------------- */

int cmd_runs(bsa_cli *cli, int argc, char **argv) {
  static char list_name[] = "list";
  if (argc < 2 || argv[1][0] == '-') {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
      usage(stdout);
      return BSA_EXIT_OK;
    }
    argv[0] = list_name; /* `bsa runs [--verb bench ...]` lists */
    return runs_list(cli, argc, argv);
  }
  static const cli_sub subs[] = {{"list", NULL, runs_list},
                                 {"show", NULL, runs_show},
                                 {"compare", NULL, runs_compare},
                                 {"export", NULL, runs_export}};
  return cli_subcommand(cli, argc, argv, subs, sizeof subs / sizeof subs[0], usage);
}
