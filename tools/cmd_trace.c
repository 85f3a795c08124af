/*
 * tools/cmd_trace.c - `bsa trace synth` (deterministic synthetic traces
 * with planted structure) and `bsa trace info` (records, shapes, dtypes,
 * attributes of a trace file).
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
#include "cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: bsa trace synth --out T.h5 [--records N] [--heads H] [--kv-heads HKV]\n"
          "                       [--seq S] [--head-dim D] [--seed N] [--dtype f16|f32]\n"
          "                       [--causal] [--clusters C] [--sinks N] [--stripes N]\n"
          "                       [--window W]\n"
          "       bsa trace info T.h5 [--json]\n\n"
          "synth writes a deterministic synthetic trace (the same seed gives the same\n"
          "file) whose attention has attention sinks, local windows, vertical stripes and\n"
          "token clusters scattered over the sequence; each record also stores the\n"
          "planted cluster of every token (cluster_id).  See docs/formats.md.\n\n"
          "  --out       output file (replaced only when the whole file is written)\n"
          "  --records   records, one per layer (default 4)\n"
          "  --heads     query heads (default 4)\n"
          "  --kv-heads  kv heads, dividing --heads (default: heads/2 when heads is even,\n"
          "              else heads; equal to --heads for MHA)\n"
          "  --seq       tokens (default 1024)\n"
          "  --head-dim  head dimension, at least 8 (default 64)\n"
          "  --seed      random seed (default 1)\n"
          "  --dtype     f32 (default) or f16 for q/k/v\n"
          "  --causal    mark the records causal\n"
          "  --clusters  planted token clusters per head (default 8)\n"
          "  --sinks     attention-sink tokens at the start (default 4)\n"
          "  --stripes   vertical-stripe key positions (default 8)\n"
          "  --window    local window in tokens (default 32)\n\n"
          "info lists the records of a trace with shapes, dtypes and attributes;\n"
          "--json prints one JSON object for the file, then one per record.\n");
}

static int synth(bsa_cli *cli, int argc, char **argv) {
  bsa_trace_synth_params p;
  bsa_trace_synth_defaults(&p);
  const char *out = NULL;
  bsa_dtype dtype = BSA_DTYPE_F32;
  int kv_given = 0;
  static const struct option longopts[] = {{"out", required_argument, 0, 'o'},
                                           {"records", required_argument, 0, 'n'},
                                           {"heads", required_argument, 0, 'H'},
                                           {"kv-heads", required_argument, 0, 'K'},
                                           {"seq", required_argument, 0, 's'},
                                           {"head-dim", required_argument, 0, 'D'},
                                           {"seed", required_argument, 0, 'S'},
                                           {"dtype", required_argument, 0, 't'},
                                           {"causal", no_argument, 0, 'c'},
                                           {"clusters", required_argument, 0, 'C'},
                                           {"sinks", required_argument, 0, 'k'},
                                           {"stripes", required_argument, 0, 'v'},
                                           {"window", required_argument, 0, 'w'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  int64_t v;
  while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (ch) {
      case 'o':
        out = optarg;
        break;
      case 'n':
        if (cli_parse_i64(cli, "--records", optarg, 1, 100000, &v)) return BSA_EXIT_USAGE;
        p.num_records = (int32_t)v;
        break;
      case 'H':
        if (cli_parse_i64(cli, "--heads", optarg, 1, 4096, &v)) return BSA_EXIT_USAGE;
        p.num_qo_heads = (int32_t)v;
        break;
      case 'K':
        if (cli_parse_i64(cli, "--kv-heads", optarg, 1, 4096, &v)) return BSA_EXIT_USAGE;
        p.num_kv_heads = (int32_t)v;
        kv_given = 1;
        break;
      case 's':
        if (cli_parse_i64(cli, "--seq", optarg, 16, (int64_t)1 << 30, &v)) return BSA_EXIT_USAGE;
        p.seq_len = v;
        break;
      case 'D':
        if (cli_parse_i64(cli, "--head-dim", optarg, 8, 1024, &v)) return BSA_EXIT_USAGE;
        p.head_dim = (int32_t)v;
        break;
      case 'S':
        if (cli_parse_i64(cli, "--seed", optarg, 0, INT64_MAX, &v)) return BSA_EXIT_USAGE;
        p.seed = (uint64_t)v;
        break;
      case 't':
        if (!strcmp(optarg, "f32") || !strcmp(optarg, "float32"))
          dtype = BSA_DTYPE_F32;
        else if (!strcmp(optarg, "f16") || !strcmp(optarg, "float16"))
          dtype = BSA_DTYPE_F16;
        else
          return cli_error(cli, BSA_EXIT_USAGE, "--dtype must be f32 or f16, got '%s'", optarg);
        break;
      case 'c':
        p.causal = 1;
        break;
      case 'C':
        if (cli_parse_i64(cli, "--clusters", optarg, 1, 1 << 20, &v)) return BSA_EXIT_USAGE;
        p.num_clusters = (int32_t)v;
        break;
      case 'k':
        if (cli_parse_i64(cli, "--sinks", optarg, 0, 1 << 30, &v)) return BSA_EXIT_USAGE;
        p.num_sinks = (int32_t)v;
        break;
      case 'v':
        if (cli_parse_i64(cli, "--stripes", optarg, 0, 1 << 30, &v)) return BSA_EXIT_USAGE;
        p.num_stripes = (int32_t)v;
        break;
      case 'w':
        if (cli_parse_i64(cli, "--window", optarg, 1, 1 << 30, &v)) return BSA_EXIT_USAGE;
        p.window = (int32_t)v;
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
  if (!out) return cli_error(cli, BSA_EXIT_USAGE, "--out T.h5 is required");
  if (!kv_given) p.num_kv_heads = p.num_qo_heads % 2 == 0 ? p.num_qo_heads / 2 : p.num_qo_heads;
  if (p.num_qo_heads % p.num_kv_heads)
    return cli_error(cli, BSA_EXIT_USAGE, "--heads = %d is not a multiple of --kv-heads = %d",
                     p.num_qo_heads, p.num_kv_heads);
  if (p.num_clusters > p.seq_len)
    return cli_error(cli, BSA_EXIT_USAGE, "--clusters = %d is more than --seq = %lld tokens",
                     p.num_clusters, (long long)p.seq_len);
  if ((int64_t)p.num_sinks + p.num_stripes > p.seq_len)
    return cli_error(cli, BSA_EXIT_USAGE,
                     "--sinks = %d plus --stripes = %d is more than --seq = %lld tokens",
                     p.num_sinks, p.num_stripes, (long long)p.seq_len);
  if (p.window > p.seq_len)
    return cli_error(cli, BSA_EXIT_USAGE, "--window = %d is more than --seq = %lld tokens",
                     p.window, (long long)p.seq_len);

  int rc = cli_run_begin(cli);
  if (rc) return rc;
  cli_param(cli, "out", "%s", out);
  cli_param(cli, "records", "%d", p.num_records);
  cli_param(cli, "heads", "%d", p.num_qo_heads);
  cli_param(cli, "kv_heads", "%d", p.num_kv_heads);
  cli_param(cli, "seq", "%lld", (long long)p.seq_len);
  cli_param(cli, "head_dim", "%d", p.head_dim);
  cli_param(cli, "seed", "%llu", (unsigned long long)p.seed);
  cli_param(cli, "dtype", "%s", bsa_dtype_name(dtype));
  cli_param(cli, "causal", "%d", p.causal);
  cli_param(cli, "clusters", "%d", p.num_clusters);
  cli_param(cli, "sinks", "%d", p.num_sinks);
  cli_param(cli, "stripes", "%d", p.num_stripes);
  cli_param(cli, "window", "%d", p.window);
  cli_progress(cli, "writing %d records to %s", p.num_records, out);
  bsa_status st = bsa_trace_synth_write(out, &p, dtype);
  cli_progress_done(cli);
  if (st != BSA_OK) return cli_run_end(cli, cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error()));
  cli_output(cli, "trace", out);
  if (!cli->quiet) {
    struct stat sb;
    long long bytes = stat(out, &sb) == 0 ? (long long)sb.st_size : -1;
    printf("wrote %s: %d records, q [%d, %lld, %d], k/v [%d, %lld, %d], %s, %s, %.1f MB\n", out,
           p.num_records, p.num_qo_heads, (long long)p.seq_len, p.head_dim, p.num_kv_heads,
           (long long)p.seq_len, p.head_dim, dtype == BSA_DTYPE_F16 ? "float16" : "float32",
           p.causal ? "causal" : "not causal", (double)bytes / 1e6);
  }
  return cli_run_end(cli, BSA_EXIT_OK);
}

/* Prints a JSON object on one line and frees it. */
static void print_json(json_t *o) {
  char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
  if (s) {
    printf("%s\n", s);
    free(s);
  }
  json_decref(o);
}

static int info(bsa_cli *cli, int argc, char **argv) {
  int json = 0;
  static const struct option longopts[] = {
      {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (ch) {
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
  if (optind >= argc)
    return cli_error(cli, BSA_EXIT_USAGE, "info needs a trace file: bsa trace info T.h5");
  if (optind + 1 < argc)
    return cli_error(cli, BSA_EXIT_USAGE, "unexpected argument '%s'", argv[optind + 1]);
  const char *path = argv[optind];

  int rc = cli_run_begin(cli);
  if (rc) return rc;
  cli_param(cli, "trace", "%s", path);
  cli_param(cli, "json", "%d", json);
  bsa_trace *t = NULL;
  if (bsa_trace_open(path, &t) != BSA_OK)
    return cli_run_end(cli, cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error()));
  cli_input(cli, "trace", path);
  int64_t n = bsa_trace_num_records(t);
  if (json) {
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(path));
    json_object_set_new(o, "format", json_string("bsa-trace"));
    json_object_set_new(o, "format_version", json_integer(1));
    json_object_set_new(o, "model", json_string(bsa_trace_model(t)));
    json_object_set_new(o, "source", json_string(bsa_trace_source(t)));
    json_object_set_new(o, "records", json_integer(n));
    print_json(o);
  } else {
    printf("%s: bsa-trace version 1, %lld record%s\n", path, (long long)n, n == 1 ? "" : "s");
    if (*bsa_trace_model(t)) printf("  model:  %s\n", bsa_trace_model(t));
    if (*bsa_trace_source(t)) printf("  source: %s\n", bsa_trace_source(t));
    if (n > 0)
      printf("%-16s %5s %5s %6s %-18s %-18s %-8s %-8s %-9s %s\n", "record", "layer", "step",
             "causal", "q [Hq,Sq,D]", "k [Hkv,Sk,D]", "v", "dtype", "sm_scale", "clusters");
  }
  int64_t total_pairs = 0;
  for (int64_t i = 0; i < n; i++) {
    const char *name = bsa_trace_record_name(t, i);
    bsa_trace_record_info ri;
    if (bsa_trace_get_record_info(t, name, &ri) != BSA_OK) {
      bsa_trace_close(t);
      return cli_run_end(cli, cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error()));
    }
    total_pairs += ri.qo_len * ri.kv_len * ri.num_qo_heads;
    double scale = ri.sm_scale > 0 ? ri.sm_scale : 1.0 / sqrt((double)ri.head_dim);
    if (json) {
      json_t *o = json_object();
      json_object_set_new(o, "record", json_string(name));
      json_object_set_new(o, "layer", json_integer(ri.layer));
      json_object_set_new(o, "step", json_integer(ri.step));
      json_object_set_new(o, "causal", json_integer(ri.causal));
      json_object_set_new(o, "num_qo_heads", json_integer(ri.num_qo_heads));
      json_object_set_new(o, "num_kv_heads", json_integer(ri.num_kv_heads));
      json_object_set_new(o, "head_dim", json_integer(ri.head_dim));
      json_object_set_new(o, "qo_len", json_integer(ri.qo_len));
      json_object_set_new(o, "kv_len", json_integer(ri.kv_len));
      json_object_set_new(o, "q_dtype", json_string(ri.q_dtype));
      json_object_set_new(o, "k_dtype", json_string(ri.k_dtype));
      json_object_set_new(o, "v_dtype", ri.has_v ? json_string(ri.v_dtype) : json_null());
      json_object_set_new(o, "sm_scale", json_real(scale));
      json_object_set_new(o, "sm_scale_stored", json_boolean(ri.sm_scale > 0));
      json_object_set_new(o, "cluster_id", json_boolean(ri.has_cluster_id));
      print_json(o);
    } else {
      char qs[48], ks[48], sc[24], dt[64];
      snprintf(qs, sizeof qs, "%dx%lldx%d", ri.num_qo_heads, (long long)ri.qo_len, ri.head_dim);
      snprintf(ks, sizeof ks, "%dx%lldx%d", ri.num_kv_heads, (long long)ri.kv_len, ri.head_dim);
      if (ri.sm_scale > 0)
        snprintf(sc, sizeof sc, "%.6g", (double)ri.sm_scale);
      else
        snprintf(sc, sizeof sc, "1/sqrt(D)");
      if (!strcmp(ri.q_dtype, ri.k_dtype))
        snprintf(dt, sizeof dt, "%s", ri.q_dtype);
      else
        snprintf(dt, sizeof dt, "%s/%s", ri.q_dtype, ri.k_dtype);
      printf("%-16s %5d %5d %6d %-18s %-18s %-8s %-8s %-9s %s\n", name, ri.layer, ri.step,
             ri.causal, qs, ks, ri.has_v ? "yes" : "no", dt, sc,
             ri.has_cluster_id ? "planted" : "-");
    }
  }
  cli_metric(cli, "records", (double)n, NULL, -1, NULL);
  cli_metric(cli, "attention_pairs", (double)total_pairs, NULL, -1, NULL);
  bsa_trace_close(t);
  return cli_run_end(cli, BSA_EXIT_OK);
}

int cmd_trace(bsa_cli *cli, int argc, char **argv) {
  static const cli_sub subs[] = {{"synth", "trace synth", synth}, {"info", "trace info", info}};
  return cli_subcommand(cli, argc, argv, subs, sizeof subs / sizeof subs[0], usage);
}
