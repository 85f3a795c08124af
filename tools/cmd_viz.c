/*
 * tools/cmd_viz.c - `bsa viz masks|scores|speedup|recall`: figures as PNG.
 *
 * Each render is a run in the experiment log (unless --no-log) with its
 * parameters, inputs and the PNG as output artifact; the PNG carries the
 * command line, the run id and the inputs in text chunks.
 */
#include "config.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bsa/trace.h"
#include "bsa/viz.h"
#include "cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: bsa viz masks   --masks M.h5 --out P.png [--record NAME]\n"
          "                       [--order permuted|original] [--heads LIST]\n"
          "                       [--trace T.h5] [--panel-size PX]\n"
          "       bsa viz scores  --trace T.h5 --record NAME --out P.png [--block B]\n"
          "                       [--head H] [--panel-size PX]\n"
          "       bsa viz speedup --out P.png [--runs LIST]\n"
          "       bsa viz recall  --out P.png [--runs LIST]\n\n"
          "masks    one panel per kv head: blocks drawn to scale, kept blocks coloured\n"
          "         by block_scores (colour bar) or solid, dropped blocks dark.\n"
          "         --record   the record to draw (default: the first one)\n"
          "         --order    permuted (as stored, default) or original (token order\n"
          "                    through q_perm/k_perm)\n"
          "         --heads    kv heads to draw, e.g. 0,2,5-7 (default: all)\n"
          "         --trace    the trace the masks were made from: each panel then\n"
          "                    shows its head's exact attention recall\n"
          "scores   heat map of the exact softmax mass between blocks of B tokens\n"
          "         for one kv head (averaged over its query heads), log colour scale\n"
          "         --block    tokens per block (default 64)\n"
          "         --head     kv head (default 0)\n"
          "speedup  speedup over dense against density from the `bsa bench` runs in the\n"
          "         experiment log (--db), a series per device/layout/kernel, with the\n"
          "         ideal 1/density line\n"
          "recall   recall against density from the `bsa eval` runs in the log, a\n"
          "         series per mask-generation method\n"
          "         --runs     only these run ids, e.g. 3,4,9-12 (default: all that\n"
          "                    finished ok)\n"
          "common   --out        the PNG (written to a temporary name, then renamed)\n"
          "         --panel-size longer side of a panel in pixels (masks default:\n"
          "                    180..480 by head count; scores default 560)\n");
}

/* "3,5,7-9" -> malloc'ed int64 list within [lo, hi]. */
static int parse_id_list(bsa_cli *cli, const char *opt, const char *s, int64_t lo, int64_t hi,
                         int64_t **out, int32_t *n) {
  *out = NULL;
  *n = 0;
  int64_t cap = 8, k = 0;
  int64_t *v = malloc(sizeof(int64_t) * (size_t)cap);
  if (!v) return cli_error(cli, BSA_EXIT_FAIL, "out of memory");
  const char *p = s;
  while (1) {
    char *end;
    long long a = strtoll(p, &end, 10), b;
    if (end == p) goto bad;
    b = a;
    if (*end == '-') {
      const char *q = end + 1;
      b = strtoll(q, &end, 10);
      if (end == q) goto bad;
    }
    if (*end != ',' && *end != 0) goto bad;
    if (a < lo || b > hi || a > b) {
      free(v);
      return cli_error(cli, BSA_EXIT_USAGE,
                       "%s: '%lld%s%.0lld' is outside %lld..%lld or an empty range", opt, a,
                       a != b ? "-" : "", a != b ? b : 0, (long long)lo, (long long)hi);
    }
    if (b - a > 1000000) {
      free(v);
      return cli_error(cli, BSA_EXIT_USAGE, "%s: range %lld-%lld is too long", opt, a, b);
    }
    for (long long x = a; x <= b; x++) {
      if (k == cap) {
        cap *= 2;
        int64_t *nv = realloc(v, sizeof(int64_t) * (size_t)cap);
        if (!nv) {
          free(v);
          return cli_error(cli, BSA_EXIT_FAIL, "out of memory");
        }
        v = nv;
      }
      v[k++] = x;
    }
    if (*end == 0) break;
    p = end + 1;
  }
  *out = v;
  *n = (int32_t)k;
  return 0;
bad:
  free(v);
  return cli_error(cli, BSA_EXIT_USAGE,
                   "%s expects a comma-separated list of integers or ranges (e.g. 0,2,5-7), "
                   "got '%s'",
                   opt, s);
}

/* The command line as one shell-quoted string (malloc'ed). */
static char *command_line(const bsa_cli *cli) {
  size_t n = 1;
  for (int i = 0; i < cli->full_argc; i++) n += 4 * strlen(cli->full_argv[i]) + 3;
  char *s = malloc(n), *p = s;
  if (!s) return NULL;
  for (int i = 0; i < cli->full_argc; i++) {
    const char *a = cli->full_argv[i];
    int plain = *a != 0;
    for (const char *c = a; *c && plain; c++)
      plain = strchr(
                  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  "_./=:,@%+-",
                  *c) != NULL;
    if (i) *p++ = ' ';
    if (plain) {
      p += sprintf(p, "%s", a);
    } else {
      *p++ = '\'';
      for (const char *c = a; *c; c++) {
        if (*c == '\'')
          p += sprintf(p, "'\\''");
        else
          *p++ = *c;
      }
      *p++ = '\'';
    }
  }
  *p = 0;
  return s;
}

/* PNG text chunks: command, run id, log, inputs. */
typedef struct meta_set {
  bsa_viz_text t[12];
  int32_t n;
  char *cmd;
  char run_id[32];
} meta_set;

static void meta_init(meta_set *m, const bsa_cli *cli) {
  memset(m, 0, sizeof *m);
  m->cmd = command_line(cli);
  if (m->cmd) m->t[m->n++] = (bsa_viz_text){"bsa-command", m->cmd};
  if (cli_run_id(cli) > 0) {
    snprintf(m->run_id, sizeof m->run_id, "%lld", (long long)cli_run_id(cli));
    m->t[m->n++] = (bsa_viz_text){"bsa-run-id", m->run_id};
    m->t[m->n++] = (bsa_viz_text){"bsa-log", cli->db_path};
  }
}

static void meta_add(meta_set *m, const char *key, const char *value) {
  if (value && m->n < 12) m->t[m->n++] = (bsa_viz_text){key, value};
}

static void meta_free(meta_set *m) { free(m->cmd); }

/* The generator's parameters as "top_p=0.9 · block_q=64 ..." (method left
 * out: the title has it); the JSON text itself when it is not an object.
 * malloc'ed, NULL when there are none. */
static char *params_line(const char *json) {
  if (!json || !*json) return NULL;
  json_t *o = json_loads(json, 0, NULL);
  if (!json_is_object(o)) {
    json_decref(o);
    return strdup(json);
  }
  size_t cap = strlen(json) * 2 + 64, k = 0;
  char *s = malloc(cap);
  if (!s) {
    json_decref(o);
    return NULL;
  }
  s[0] = 0;
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    if (!strcmp(key, "method")) continue;
    char val[256];
    if (json_is_real(v))
      snprintf(val, sizeof val, "%g", json_real_value(v));
    else if (json_is_string(v))
      snprintf(val, sizeof val, "%s", json_string_value(v));
    else {
      char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      snprintf(val, sizeof val, "%s", d ? d : "?");
      free(d);
    }
    k += (size_t)snprintf(s + k, cap - k, "%s%s=%s", k ? " \xc2\xb7 " : "", key, val);
    if (k >= cap) break;
  }
  json_decref(o);
  if (!s[0]) {
    free(s);
    return NULL;
  }
  return s;
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void print_written(bsa_cli *cli, const char *out) {
  if (cli->quiet) return;
  struct stat sb;
  long long bytes = stat(out, &sb) == 0 ? (long long)sb.st_size : -1;
  if (cli_run_id(cli) > 0)
    printf("wrote %s (%.1f kB, run %lld)\n", out, bytes / 1e3, (long long)cli_run_id(cli));
  else
    printf("wrote %s (%.1f kB)\n", out, bytes / 1e3);
}

enum {
  OPT_MASKS = 256,
  OPT_OUT,
  OPT_RECORD,
  OPT_ORDER,
  OPT_HEADS,
  OPT_TRACE,
  OPT_PANEL,
  OPT_BLOCK,
  OPT_HEAD,
  OPT_RUNS
};

typedef struct viz_args {
  const char *masks, *out, *record, *order, *heads, *trace, *runs;
  int64_t panel, block, head;
  int have_head, have_block;
} viz_args;

/* Parses the options of the current sub-command.  allowed lists the options
 * it takes, one letter each: m --masks, o --out, r --record, O --order,
 * H --heads, t --trace, p --panel-size, b --block, h --head, R --runs.
 * Returns 0, -1 after --help, or an exit code. */
static int parse(bsa_cli *cli, int argc, char **argv, const char *allowed, viz_args *a) {
  static const struct option longopts[] = {{"masks", required_argument, 0, OPT_MASKS},
                                           {"out", required_argument, 0, OPT_OUT},
                                           {"record", required_argument, 0, OPT_RECORD},
                                           {"order", required_argument, 0, OPT_ORDER},
                                           {"heads", required_argument, 0, OPT_HEADS},
                                           {"trace", required_argument, 0, OPT_TRACE},
                                           {"panel-size", required_argument, 0, OPT_PANEL},
                                           {"block", required_argument, 0, OPT_BLOCK},
                                           {"head", required_argument, 0, OPT_HEAD},
                                           {"runs", required_argument, 0, OPT_RUNS},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  memset(a, 0, sizeof *a);
  optind = 1;
  opterr = 0;
  int ch, idx = 0;
  while ((ch = getopt_long(argc, argv, ":h", longopts, &idx)) != -1) {
    if (ch >= OPT_MASKS && ch <= OPT_RUNS) {
      /* One letter per OPT_* value, in order. */
      char l = "morOHtpbhR"[ch - OPT_MASKS];
      if (!strchr(allowed, l))
        return cli_error(cli, BSA_EXIT_USAGE, "%s does not take --%s (see bsa viz --help)",
                         cli->verb, longopts[idx].name);
    }
    switch (ch) {
      case OPT_MASKS:
        a->masks = optarg;
        break;
      case OPT_OUT:
        a->out = optarg;
        break;
      case OPT_RECORD:
        a->record = optarg;
        break;
      case OPT_ORDER:
        a->order = optarg;
        break;
      case OPT_HEADS:
        a->heads = optarg;
        break;
      case OPT_TRACE:
        a->trace = optarg;
        break;
      case OPT_RUNS:
        a->runs = optarg;
        break;
      case OPT_PANEL:
        if (cli_parse_i64(cli, "--panel-size", optarg, 16, 4096, &a->panel)) return BSA_EXIT_USAGE;
        break;
      case OPT_BLOCK:
        if (cli_parse_i64(cli, "--block", optarg, 1, INT32_MAX, &a->block)) return BSA_EXIT_USAGE;
        a->have_block = 1;
        break;
      case OPT_HEAD:
        if (cli_parse_i64(cli, "--head", optarg, 0, INT32_MAX, &a->head)) return BSA_EXIT_USAGE;
        a->have_head = 1;
        break;
      case 'h':
        usage(stdout);
        return -1;
      default:
        return cli_bad_option(cli, ch, argv);
    }
  }
  if (optind < argc)
    return cli_error(cli, BSA_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
  if (!a->out) return cli_error(cli, BSA_EXIT_USAGE, "--out P.png is required");
  if (!*a->out) return cli_error(cli, BSA_EXIT_USAGE, "--out is empty");
  return 0;
}

/* ---- masks ---------------------------------------------------------------- */

static int viz_masks(bsa_cli *cli, int argc, char **argv) {
  viz_args a;
  int rc = parse(cli, argc, argv, "morOHtp", &a);
  if (rc) return rc < 0 ? BSA_EXIT_OK : rc;
  if (!a.masks) return cli_error(cli, BSA_EXIT_USAGE, "--masks M.h5 is required");
  bsa_viz_order order = BSA_VIZ_ORDER_PERMUTED;
  if (a.order) {
    if (!strcmp(a.order, "permuted"))
      order = BSA_VIZ_ORDER_PERMUTED;
    else if (!strcmp(a.order, "original"))
      order = BSA_VIZ_ORDER_ORIGINAL;
    else
      return cli_error(cli, BSA_EXIT_USAGE, "--order must be permuted or original, got '%s'",
                       a.order);
  }
  int64_t *hl = NULL;
  int32_t nh = 0;
  if (a.heads && parse_id_list(cli, "--heads", a.heads, 0, INT32_MAX, &hl, &nh))
    return BSA_EXIT_USAGE;

  rc = cli_run_begin(cli);
  if (rc) {
    free(hl);
    return rc;
  }
  cli_param(cli, "masks", "%s", a.masks);
  cli_param(cli, "out", "%s", a.out);
  cli_param(cli, "order", "%s", order == BSA_VIZ_ORDER_ORIGINAL ? "original" : "permuted");
  if (a.heads) cli_param(cli, "heads", "%s", a.heads);
  if (a.trace) cli_param(cli, "trace", "%s", a.trace);
  if (a.panel) cli_param(cli, "panel_size", "%lld", (long long)a.panel);

  bsa_masks *mf = NULL;
  bsa_mask_record *rec = NULL;
  bsa_trace *tf = NULL;
  bsa_trace_record *trec = NULL;
  int32_t *heads = NULL;
  double *recall = NULL;
  char *subtitle = NULL;
  meta_set meta;
  memset(&meta, 0, sizeof meta);
  if (!file_exists(a.masks)) {
    rc = cli_error(cli, BSA_EXIT_FAIL, "--masks %s: no such file", a.masks);
    goto done;
  }
  if (bsa_masks_open(a.masks, &mf) != BSA_OK) {
    rc = cli_error(cli, BSA_EXIT_FAIL, "--masks %s: %s", a.masks, bsa_last_error());
    goto done;
  }
  cli_input(cli, "masks", a.masks);
  const char *name = a.record;
  if (!name) {
    if (bsa_masks_num_records(mf) < 1) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "--masks %s holds no records", a.masks);
      goto done;
    }
    name = bsa_masks_record_name(mf, 0);
    cli_param(cli, "record", "%s", name);
  } else {
    cli_param(cli, "record", "%s", name);
    int found = 0;
    for (int64_t i = 0; i < bsa_masks_num_records(mf) && !found; i++)
      found = !strcmp(bsa_masks_record_name(mf, i), name);
    if (!found) {
      char list[512] = "";
      size_t k = 0;
      for (int64_t i = 0; i < bsa_masks_num_records(mf) && k + 1 < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "",
                              bsa_masks_record_name(mf, i));
      rc = cli_error(cli, BSA_EXIT_FAIL, "--record %s: no such record in %s (records: %s)", name,
                     a.masks, list[0] ? list : "none");
      goto done;
    }
  }
  if (bsa_masks_read_record(mf, name, &rec) != BSA_OK) {
    rc = cli_error(cli, BSA_EXIT_FAIL, "--masks %s: %s", a.masks, bsa_last_error());
    goto done;
  }
  if (hl) {
    heads = malloc(sizeof(int32_t) * (size_t)nh);
    if (!heads) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "out of memory");
      goto done;
    }
    for (int32_t i = 0; i < nh; i++) {
      if (hl[i] >= rec->num_kv_heads) {
        rc = cli_error(cli, BSA_EXIT_USAGE,
                       "--heads: kv head %lld is out of range 0..%d of record %s", (long long)hl[i],
                       (int)rec->num_kv_heads - 1, name);
        goto done;
      }
      heads[i] = (int32_t)hl[i];
    }
  }
  if (a.trace) {
    if (!file_exists(a.trace)) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s: no such file", a.trace);
      goto done;
    }
    if (bsa_trace_open(a.trace, &tf) != BSA_OK) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s: %s", a.trace, bsa_last_error());
      goto done;
    }
    cli_input(cli, "trace", a.trace);
    if (bsa_trace_read_record(tf, name, &trec) != BSA_OK) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s: %s", a.trace, bsa_last_error());
      goto done;
    }
    recall = malloc(sizeof(double) * (size_t)rec->num_kv_heads);
    if (!recall) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "out of memory");
      goto done;
    }
    cli_progress(cli, "computing the recall of %d heads on %s", rec->num_kv_heads, a.trace);
    bsa_status st = bsa_viz_mask_recall(trec, rec, recall);
    cli_progress_done(cli);
    if (st != BSA_OK) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s: %s", a.trace, bsa_last_error());
      goto done;
    }
    for (int32_t h = 0; h < rec->num_kv_heads; h++)
      cli_metric(cli, "recall", recall[h], name, h, NULL);
  }

  const char *method = bsa_masks_method(mf);
  subtitle = params_line(bsa_masks_params_json(mf));
  meta_init(&meta, cli);
  meta_add(&meta, "bsa-input-masks", a.masks);
  meta_add(&meta, "bsa-record", name);
  if (a.trace) meta_add(&meta, "bsa-input-trace", a.trace);

  bsa_viz_masks_opts o;
  memset(&o, 0, sizeof o);
  o.order = order;
  o.heads = heads;
  o.num_heads = nh;
  o.head_recall = recall;
  o.method = method && *method ? method : NULL;
  o.subtitle = subtitle;
  o.panel_px = (int32_t)a.panel;
  o.meta = meta.t;
  o.num_meta = meta.n;
  bsa_status st = bsa_viz_masks(rec, &o, a.out);
  if (st != BSA_OK) {
    if (st == BSA_ERR_IO)
      rc = cli_error(cli, BSA_EXIT_FAIL, "--out %s: %s", a.out, bsa_last_error());
    else
      rc = cli_error(cli, BSA_EXIT_FAIL, "--masks %s, record %s: %s", a.masks, name,
                     bsa_last_error());
    goto done;
  }
  cli_output(cli, "png", a.out);
  print_written(cli, a.out);
  rc = BSA_EXIT_OK;
done:
  meta_free(&meta);
  free(subtitle);
  free(recall);
  free(heads);
  free(hl);
  bsa_trace_record_free(trec);
  bsa_trace_close(tf);
  bsa_mask_record_free(rec);
  bsa_masks_close(mf);
  return cli_run_end(cli, rc);
}

/* ---- scores ---------------------------------------------------------------- */

static int viz_scores(bsa_cli *cli, int argc, char **argv) {
  viz_args a;
  int rc = parse(cli, argc, argv, "otrbhp", &a);
  if (rc) return rc < 0 ? BSA_EXIT_OK : rc;
  if (!a.trace) return cli_error(cli, BSA_EXIT_USAGE, "--trace T.h5 is required");
  if (!a.record) return cli_error(cli, BSA_EXIT_USAGE, "--record NAME is required");
  rc = cli_run_begin(cli);
  if (rc) return rc;
  cli_param(cli, "trace", "%s", a.trace);
  cli_param(cli, "record", "%s", a.record);
  cli_param(cli, "out", "%s", a.out);
  cli_param(cli, "block", "%lld", (long long)(a.have_block ? a.block : 64));
  cli_param(cli, "head", "%lld", (long long)a.head);
  if (a.panel) cli_param(cli, "panel_size", "%lld", (long long)a.panel);
  bsa_trace *tf = NULL;
  bsa_trace_record *rec = NULL;
  meta_set meta;
  memset(&meta, 0, sizeof meta);
  if (!file_exists(a.trace)) {
    rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s: no such file", a.trace);
    goto done;
  }
  if (bsa_trace_open(a.trace, &tf) != BSA_OK) {
    rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s: %s", a.trace, bsa_last_error());
    goto done;
  }
  cli_input(cli, "trace", a.trace);
  int found = 0;
  for (int64_t i = 0; i < bsa_trace_num_records(tf) && !found; i++)
    found = !strcmp(bsa_trace_record_name(tf, i), a.record);
  if (!found) {
    char list[512] = "";
    size_t k = 0;
    for (int64_t i = 0; i < bsa_trace_num_records(tf) && k + 1 < sizeof list; i++)
      k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "",
                            bsa_trace_record_name(tf, i));
    rc = cli_error(cli, BSA_EXIT_FAIL, "--record %s: no such record in %s (records: %s)", a.record,
                   a.trace, list[0] ? list : "none");
    goto done;
  }
  if (bsa_trace_read_record(tf, a.record, &rec) != BSA_OK) {
    rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s: %s", a.trace, bsa_last_error());
    goto done;
  }
  if (a.head >= rec->num_kv_heads) {
    rc = cli_error(cli, BSA_EXIT_USAGE, "--head = %lld is out of range 0..%d (kv heads of %s)",
                   (long long)a.head, (int)rec->num_kv_heads - 1, a.record);
    goto done;
  }
  if (a.have_block && a.block > (rec->qo_len > rec->kv_len ? rec->qo_len : rec->kv_len)) {
    rc = cli_error(cli, BSA_EXIT_USAGE, "--block = %lld is longer than the sequence (%lld tokens)",
                   (long long)a.block,
                   (long long)(rec->qo_len > rec->kv_len ? rec->qo_len : rec->kv_len));
    goto done;
  }
  meta_init(&meta, cli);
  meta_add(&meta, "bsa-input-trace", a.trace);
  meta_add(&meta, "bsa-record", a.record);
  bsa_viz_scores_opts o;
  memset(&o, 0, sizeof o);
  o.kv_head = (int32_t)a.head;
  o.block = a.have_block ? a.block : 64;
  o.panel_px = (int32_t)a.panel;
  o.meta = meta.t;
  o.num_meta = meta.n;
  cli_progress(cli, "computing block attention mass of %s head %lld", a.record, (long long)a.head);
  bsa_status st = bsa_viz_scores(rec, &o, a.out, NULL);
  cli_progress_done(cli);
  if (st != BSA_OK) {
    if (st == BSA_ERR_IO)
      rc = cli_error(cli, BSA_EXIT_FAIL, "--out %s: %s", a.out, bsa_last_error());
    else
      rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s, record %s: %s", a.trace, a.record,
                     bsa_last_error());
    goto done;
  }
  cli_output(cli, "png", a.out);
  print_written(cli, a.out);
  rc = BSA_EXIT_OK;
done:
  meta_free(&meta);
  bsa_trace_record_free(rec);
  bsa_trace_close(tf);
  return cli_run_end(cli, rc);
}

/* ---- charts from the log ---------------------------------------------------- */

static int viz_chart(bsa_cli *cli, int argc, char **argv, int speedup) {
  viz_args a;
  int rc = parse(cli, argc, argv, "oR", &a);
  if (rc) return rc < 0 ? BSA_EXIT_OK : rc;
  int64_t *ids = NULL;
  int32_t nids = 0;
  if (a.runs && parse_id_list(cli, "--runs", a.runs, 1, INT64_MAX, &ids, &nids))
    return BSA_EXIT_USAGE;
  /* Reading needs a log that exists: never create one just to find it
   * empty. */
  if (!file_exists(cli->db_path)) {
    free(ids);
    return cli_error(cli, BSA_EXIT_FAIL,
                     "--db %s: no experiment log there (run `bsa %s` first, or give --db)",
                     cli->db_path, speedup ? "bench" : "eval");
  }
  rc = cli_run_begin(cli);
  if (rc) {
    free(ids);
    return rc;
  }
  cli_param(cli, "out", "%s", a.out);
  if (a.runs) cli_param(cli, "runs", "%s", a.runs);
  bsa_runlog *log = cli->log;
  bsa_runlog *own = NULL;
  meta_set meta;
  memset(&meta, 0, sizeof meta);
  if (!log) { /* --no-log: open it for reading only */
    if (bsa_runlog_open_existing(cli->db_path, &own) != BSA_OK) {
      rc = cli_error(cli, BSA_EXIT_FAIL, "--db %s: %s", cli->db_path, bsa_last_error());
      goto done;
    }
    log = own;
  }
  meta_init(&meta, cli);
  if (!cli_run_id(cli)) meta_add(&meta, "bsa-log", cli->db_path);
  if (a.runs) meta_add(&meta, "bsa-runs", a.runs);
  bsa_viz_log_opts o;
  memset(&o, 0, sizeof o);
  o.run_ids = ids;
  o.num_run_ids = nids;
  o.meta = meta.t;
  o.num_meta = meta.n;
  bsa_status st = speedup ? bsa_viz_speedup(log, cli->db_path, &o, a.out, NULL)
                          : bsa_viz_recall(log, cli->db_path, &o, a.out, NULL);
  if (st != BSA_OK) {
    const char *msg = bsa_last_error();
    if (!strncmp(msg, "experiment log", 14))
      rc = cli_error(cli, BSA_EXIT_FAIL, "--db %s: %s", cli->db_path, msg);
    else
      rc = cli_error(cli, BSA_EXIT_FAIL, "--out %s: %s", a.out, msg);
    goto done;
  }
  cli_input(cli, "log", cli->db_path);
  cli_output(cli, "png", a.out);
  print_written(cli, a.out);
  rc = BSA_EXIT_OK;
done:
  meta_free(&meta);
  bsa_runlog_close(own);
  free(ids);
  return cli_run_end(cli, rc);
}

static int viz_speedup(bsa_cli *cli, int argc, char **argv) {
  return viz_chart(cli, argc, argv, 1);
}
static int viz_recall(bsa_cli *cli, int argc, char **argv) { return viz_chart(cli, argc, argv, 0); }

int cmd_viz(bsa_cli *cli, int argc, char **argv) {
  static const cli_sub subs[] = {{"masks", "viz masks", viz_masks},
                                 {"scores", "viz scores", viz_scores},
                                 {"speedup", "viz speedup", viz_speedup},
                                 {"recall", "viz recall", viz_recall}};
  return cli_subcommand(cli, argc, argv, subs, sizeof subs / sizeof subs[0], usage);
}
