/*
 * tools/cmd_eval.c - `bsa eval`: density, attention recall and output error
 * of the masks of a masks file on the records of their trace, computed
 * through libbsa on the CPU (bsa_mask_eval).
 */
#include "config.h"

#include <fnmatch.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsa/maskgen.h"
#include "bsa/trace.h"
#include "cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: bsa eval --trace T.h5 --masks M.h5 [--records GLOB] [--json]\n"
          "                [--sample-rows N] [--seed N]\n\n"
          "For every record of M.h5 (or those matching GLOB) and every kv head, reports\n"
          "  density         share of the attention matrix the mask computes (of the\n"
          "                  causal triangle when the record is causal; size-weighted)\n"
          "  density_full    kept (query, key) pairs / all pairs of the square\n"
          "  density_blocks  kept blocks / all blocks (unweighted)\n"
          "  recall          mean over query rows (and the group's query heads) of the\n"
          "                  softmax mass the mask keeps: exp(lse_sparse - lse_dense)\n"
          "  rel_l2, rel_l1, cosine   sparse output against dense attention (needs v)\n"
          "and one summary line per record (head null / 'all').  Sparse attention runs\n"
          "as a libbsa variable-block plan on the permuted q/k/v, dense as a dense plan.\n\n"
          "  --trace T.h5       the trace (default: the path recorded in M.h5)\n"
          "  --masks M.h5       the masks file\n"
          "  --records GLOB     only records whose name matches (shell pattern)\n"
          "  --sample-rows N    estimate from about N query rows (runs of 64 consecutive\n"
          "                     tokens spread over the sequence); 0 = every row (default)\n"
          "  --seed N           which rows are sampled (default 0)\n"
          "  --json             one JSON object per head and per record on stdout\n");
}

static void print_json(json_t *o) {
  char *s = json_dumps(
      o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
  if (s) printf("%s\n", s), free(s);
  json_decref(o);
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static void progress_cb(void *user, double frac) {
  void **u = user;
  bsa_cli *cli = u[0];
  const char *name = u[1];
  cli_progress(cli, "eval: record %s %3.0f%%", name, 100.0 * frac);
}

static void emit(bsa_cli *cli, int json, const char *record, const char *method,
                 const bsa_eval_metrics *e, const bsa_eval_result *r, int64_t sample_rows) {
  char labels[200];
  snprintf(labels, sizeof labels, "{\"method\":\"%s\"}", method);
  int32_t head = e->head;
  cli_metric(cli, "density", e->density.compute, record, head, labels);
  cli_metric(cli, "density_full", e->density.full, record, head, labels);
  if (isfinite(e->density.causal))
    cli_metric(cli, "density_causal", e->density.causal, record, head, labels);
  cli_metric(cli, "density_blocks", e->density.blocks, record, head, labels);
  if (isfinite(e->recall)) cli_metric(cli, "recall", e->recall, record, head, labels);
  if (isfinite(e->recall_min)) cli_metric(cli, "recall_min", e->recall_min, record, head, labels);
  if (isfinite(e->rel_l2)) {
    cli_metric(cli, "rel_l2", e->rel_l2, record, head, labels);
    cli_metric(cli, "rel_l1", e->rel_l1, record, head, labels);
    cli_metric(cli, "cosine", e->cosine, record, head, labels);
  }
  if (json) {
    json_t *o = json_object();
    json_object_set_new(o, "record", json_string(record));
    json_object_set_new(o, "head", head < 0 ? json_null() : json_integer(head));
    json_object_set_new(o, "method", json_string(method));
    json_object_set_new(o, "density", jnum(e->density.compute));
    json_object_set_new(o, "density_full", jnum(e->density.full));
    json_object_set_new(o, "density_causal", jnum(e->density.causal));
    json_object_set_new(o, "density_blocks", jnum(e->density.blocks));
    json_object_set_new(o, "recall", jnum(e->recall));
    json_object_set_new(o, "recall_min", jnum(e->recall_min));
    json_object_set_new(o, "rel_l2", jnum(e->rel_l2));
    json_object_set_new(o, "rel_l1", jnum(e->rel_l1));
    json_object_set_new(o, "cosine", jnum(e->cosine));
    json_object_set_new(o, "rows", json_integer(e->rows));
    json_object_set_new(o, "sampled", json_boolean(r->sampled));
    if (r->sampled) json_object_set_new(o, "sample_rows_requested", json_integer(sample_rows));
    if (head < 0) json_object_set_new(o, "time_ms", json_real(r->time_ms));
    print_json(o);
  } else if (!cli->quiet) {
    char hs[16];
    if (head < 0)
      snprintf(hs, sizeof hs, "all");
    else
      snprintf(hs, sizeof hs, "%d", head);
    printf("%-16s %4s %9.4f %9.4f %9.4f %10.3e %10.3e %9.6f\n", record, hs, e->density.compute,
           e->density.blocks, e->recall, e->rel_l2, e->rel_l1, e->cosine);
  }
}

int cmd_eval(bsa_cli *cli, int argc, char **argv) {
  const char *trace_path = NULL, *masks_path = NULL, *glob = NULL;
  int json = 0;
  bsa_eval_options eo;
  memset(&eo, 0, sizeof eo);
  static const struct option longopts[] = {
      {"trace", required_argument, 0, 't'},   {"masks", required_argument, 0, 'm'},
      {"records", required_argument, 0, 'r'}, {"sample-rows", required_argument, 0, 's'},
      {"seed", required_argument, 0, 'S'},    {"json", no_argument, 0, 'j'},
      {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  int64_t iv;
  while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (ch) {
      case 't':
        trace_path = optarg;
        break;
      case 'm':
        masks_path = optarg;
        break;
      case 'r':
        glob = optarg;
        break;
      case 's':
        if (cli_parse_i64(cli, "--sample-rows", optarg, 0, INT64_MAX, &iv)) return BSA_EXIT_USAGE;
        eo.sample_rows = iv;
        break;
      case 'S':
        if (cli_parse_i64(cli, "--seed", optarg, 0, INT64_MAX, &iv)) return BSA_EXIT_USAGE;
        eo.seed = (uint64_t)iv;
        break;
      case 'j':
        json = 1;
        break;
      case 'h':
        usage(stdout);
        return BSA_EXIT_OK;
      default:
        return cli_bad_option(cli, ch, argv);
    }
  }
  if (optind < argc)
    return cli_error(cli, BSA_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
  if (!masks_path) return cli_error(cli, BSA_EXIT_USAGE, "--masks M.h5 is required");

  int rc = cli_run_begin(cli);
  if (rc) return rc;
  bsa_masks *ms = NULL;
  bsa_trace *t = NULL;
  bsa_ctx *ctx = NULL;
  bsa_mask_record *m = NULL;
  bsa_trace_record *rec = NULL;
  int code = BSA_EXIT_OK;
  if (bsa_masks_open(masks_path, &ms) != BSA_OK) {
    code = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
    goto done;
  }
  if (!trace_path) {
    trace_path = bsa_masks_trace_path(ms);
    if (!*trace_path) {
      code =
          cli_error(cli, BSA_EXIT_USAGE, "%s records no trace path: give --trace T.h5", masks_path);
      goto done;
    }
  }
  const char *method = bsa_masks_method(ms);
  cli_param(cli, "trace", "%s", trace_path);
  cli_param(cli, "masks", "%s", masks_path);
  cli_param(cli, "records", "%s", glob ? glob : "*");
  cli_param(cli, "sample_rows", "%lld", (long long)eo.sample_rows);
  cli_param(cli, "seed", "%llu", (unsigned long long)eo.seed);
  cli_param(cli, "method", "%s", method);
  cli_param(cli, "mask_params", "%s", bsa_masks_params_json(ms));
  cli_input(cli, "masks", masks_path);
  if (bsa_trace_open(trace_path, &t) != BSA_OK) {
    code = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
    goto done;
  }
  cli_input(cli, "trace", trace_path);
  const char *want_sha = bsa_masks_trace_sha256(ms);
  char sha[65];
  if (*want_sha && bsa_maskgen_file_sha256(trace_path, sha) == BSA_OK && strcmp(sha, want_sha))
    fprintf(stderr,
            "bsa eval: warning: %s was made from a trace with SHA-256 %.12s..., but %s has "
            "%.12s...\n",
            masks_path, want_sha, trace_path, sha);
  bsa_ctx_options co;
  memset(&co, 0, sizeof co);
  co.num_threads = cli->threads;
  if (bsa_ctx_create(&co, &ctx) != BSA_OK) {
    code = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
    goto done;
  }
  cli_device(cli, bsa_ctx_device_name(ctx), NULL);
  int64_t n = bsa_masks_num_records(ms), done_n = 0;
  if (!json && !cli->quiet)
    printf("%-16s %4s %9s %9s %9s %10s %10s %9s\n", "record", "head", "density", "blocks", "recall",
           "rel_l2", "rel_l1", "cosine");
  double total_ms = 0;
  for (int64_t i = 0; i < n; i++) {
    const char *name = bsa_masks_record_name(ms, i);
    if (glob && fnmatch(glob, name, 0) != 0) continue;
    cli_progress(cli, "eval: record %s", name);
    if (bsa_masks_read_record(ms, name, &m) != BSA_OK) {
      code = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
      goto done;
    }
    if (bsa_trace_read_record(t, name, &rec) != BSA_OK) {
      code = cli_error(cli, BSA_EXIT_FAIL, "%s (masks %s has record '%s')", bsa_last_error(),
                       masks_path, name);
      goto done;
    }
    void *pu[2] = {cli, (void *)name};
    eo.progress = progress_cb;
    eo.progress_user = pu;
    bsa_eval_result r;
    if (bsa_mask_eval(ctx, rec, m, &eo, &r) != BSA_OK) {
      code =
          cli_error(cli, BSA_EXIT_FAIL, "%s vs %s: %s", masks_path, trace_path, bsa_last_error());
      goto done;
    }
    cli_progress_done(cli);
    for (int32_t h = 0; h < r.num_heads; h++)
      emit(cli, json, name, method, &r.heads[h], &r, eo.sample_rows);
    emit(cli, json, name, method, &r.total, &r, eo.sample_rows);
    if (r.sampled && !json && !cli->quiet)
      printf("%-16s      estimated from %lld of %lld query rows (%lld runs)\n", "",
             (long long)r.rows_evaluated, (long long)rec->qo_len, (long long)r.num_runs);
    char labels[200];
    snprintf(labels, sizeof labels, "{\"method\":\"%s\"}", method);
    cli_metric(cli, "time_ms", r.time_ms, name, -1, labels);
    cli_metric(cli, "rows_evaluated", (double)r.rows_evaluated, name, -1, labels);
    total_ms += r.time_ms;
    done_n++;
    bsa_eval_result_free(&r);
    bsa_mask_record_free(m);
    m = NULL;
    bsa_trace_record_free(rec);
    rec = NULL;
  }
  if (done_n == 0) {
    code = cli_error(cli, BSA_EXIT_FAIL, "%s: no record matches --records '%s' (%lld records)",
                     masks_path, glob ? glob : "*", (long long)n);
    goto done;
  }
  cli_metric(cli, "time_ms", total_ms, NULL, -1, NULL);
done:
  cli_progress_done(cli);
  bsa_mask_record_free(m);
  bsa_trace_record_free(rec);
  bsa_ctx_destroy(ctx);
  bsa_trace_close(t);
  bsa_masks_close(ms);
  return cli_run_end(cli, code);
}
