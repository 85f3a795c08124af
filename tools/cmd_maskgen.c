/*
 * tools/cmd_maskgen.c - `bsa maskgen`: block masks from a trace with one of
 * the generators of bsa/maskgen.h, written to a masks file (method, its
 * parameters as JSON, the trace path and the trace's SHA-256 recorded).
 */
#include "config.h"

#include <fnmatch.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bsa/maskgen.h"
#include "bsa/trace.h"
#include "cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: bsa maskgen --trace T.h5 --out M.h5 --method NAME [--records GLOB] [--json]\n"
          "  oracle|pooled: [--block B | --block-q R --block-k C]\n"
          "                 (--top-p P | --top-k K | --threshold X)\n"
          "                 [--sink-blocks N] [--local-blocks N]\n"
          "  kmeans:        --q-clusters N --k-clusters N [--iters N] [--top-p P]\n"
          "                 [--min-kc-ratio F] [--seed N] [--init kmeans++|random]\n\n"
          "Derives a block mask per kv head from every record of a trace (or those whose\n"
          "name matches GLOB) and writes them to M.h5 (replaced only when complete).\n\n"
          "methods:\n"
          "  oracle  exact softmax mass of each (row block, column block), averaged over\n"
          "          the block's rows and the query heads of a kv group; fixed blocks\n"
          "  pooled  softmax of mean-pooled Q and K block logits (MInference/SpargeAttn);\n"
          "          fixed blocks\n"
          "  kmeans  k-means of query and key tokens per kv head, tokens permuted so each\n"
          "          cluster is one variable-size block, size-weighted softmax of the\n"
          "          centroid logits, top-p (Sparse VideoGen2); non-causal records only\n\n"
          "options:\n"
          "  --block B          square blocks of B tokens (default 64); the last block\n"
          "                     of each axis may be partial\n"
          "  --block-q R, --block-k C   rows and columns of a block\n"
          "  --top-p P          per row block, the fewest blocks (highest score first)\n"
          "                     whose score mass reaches P, in (0, 1] (kmeans default 0.9)\n"
          "  --top-k K          the K highest-scoring blocks of each row block\n"
          "  --threshold X      every block whose score share is at least X, in [0, 1]\n"
          "  --sink-blocks N    force the first N column blocks on\n"
          "  --local-blocks N   force the N column blocks up to the diagonal on (and N-1\n"
          "                     past it when not causal)\n"
          "  --q-clusters N, --k-clusters N   query and key clusters per kv head\n"
          "  --iters N          k-means iterations (default 20; stops early when stable)\n"
          "  --min-kc-ratio F   keep at least floor(F * k-clusters) key clusters per\n"
          "                     query cluster, in [0, 1] (default 0.1)\n"
          "  --seed N           k-means seed (default 0); the same seed gives the same masks\n"
          "  --init NAME        k-means seeding: kmeans++ (default) or random\n"
          "  --records GLOB     only records whose name matches (shell pattern)\n"
          "  --json             one JSON object per record on stdout\n");
}

enum {
  O_TRACE = 1,
  O_OUT,
  O_METHOD,
  O_RECORDS,
  O_BLOCK,
  O_BLOCK_Q,
  O_BLOCK_K,
  O_TOP_P,
  O_TOP_K,
  O_THRESHOLD,
  O_SINK,
  O_LOCAL,
  O_QC,
  O_KC,
  O_ITERS,
  O_MINKC,
  O_SEED,
  O_INIT,
  O_JSON,
  O_HELP,
  O_COUNT
};

static const struct option longopts[] = {{"trace", required_argument, 0, O_TRACE},
                                         {"out", required_argument, 0, O_OUT},
                                         {"method", required_argument, 0, O_METHOD},
                                         {"records", required_argument, 0, O_RECORDS},
                                         {"block", required_argument, 0, O_BLOCK},
                                         {"block-q", required_argument, 0, O_BLOCK_Q},
                                         {"block-k", required_argument, 0, O_BLOCK_K},
                                         {"top-p", required_argument, 0, O_TOP_P},
                                         {"top-k", required_argument, 0, O_TOP_K},
                                         {"threshold", required_argument, 0, O_THRESHOLD},
                                         {"sink-blocks", required_argument, 0, O_SINK},
                                         {"local-blocks", required_argument, 0, O_LOCAL},
                                         {"q-clusters", required_argument, 0, O_QC},
                                         {"k-clusters", required_argument, 0, O_KC},
                                         {"iters", required_argument, 0, O_ITERS},
                                         {"min-kc-ratio", required_argument, 0, O_MINKC},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"init", required_argument, 0, O_INIT},
                                         {"json", no_argument, 0, O_JSON},
                                         {"help", no_argument, 0, O_HELP},
                                         {0, 0, 0, 0}};

static const char *opt_name(int id) {
  for (const struct option *o = longopts; o->name; o++)
    if (o->val == id) return o->name;
  return "?";
}

/* 1 when a and b name the same existing file. */
static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void print_json(json_t *o) {
  char *s = json_dumps(
      o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
  if (s) printf("%s\n", s), free(s);
  json_decref(o);
}

int cmd_maskgen(bsa_cli *cli, int argc, char **argv) {
  const char *trace_path = NULL, *out_path = NULL, *method_name = NULL, *glob = NULL;
  int json = 0;
  int given[O_COUNT] = {0};
  bsa_maskgen_params p;
  bsa_maskgen_params_init(&p);
  p.num_threads = cli->threads;
  optind = 1;
  opterr = 0;
  int ch;
  int64_t iv;
  double dv;
  while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    if (ch > 0 && ch < O_COUNT) given[ch] = 1;
    switch (ch) {
      case O_TRACE:
        trace_path = optarg;
        break;
      case O_OUT:
        out_path = optarg;
        break;
      case O_METHOD:
        method_name = optarg;
        break;
      case O_RECORDS:
        glob = optarg;
        break;
      case O_BLOCK:
        if (cli_parse_i64(cli, "--block", optarg, 1, INT32_MAX, &iv)) return BSA_EXIT_USAGE;
        p.block_q = p.block_k = iv;
        break;
      case O_BLOCK_Q:
        if (cli_parse_i64(cli, "--block-q", optarg, 1, INT32_MAX, &iv)) return BSA_EXIT_USAGE;
        p.block_q = iv;
        break;
      case O_BLOCK_K:
        if (cli_parse_i64(cli, "--block-k", optarg, 1, INT32_MAX, &iv)) return BSA_EXIT_USAGE;
        p.block_k = iv;
        break;
      case O_TOP_P:
        if (cli_parse_f64(cli, "--top-p", optarg, -INFINITY, INFINITY, &dv)) return BSA_EXIT_USAGE;
        if (!(dv > 0 && dv <= 1))
          return cli_error(cli, BSA_EXIT_USAGE, "--top-p = %g is outside (0, 1]", dv);
        p.top_p = dv;
        p.select = BSA_MASKGEN_SELECT_TOP_P;
        break;
      case O_TOP_K:
        if (cli_parse_i64(cli, "--top-k", optarg, 1, INT32_MAX, &iv)) return BSA_EXIT_USAGE;
        p.top_k = iv;
        p.select = BSA_MASKGEN_SELECT_TOP_K;
        break;
      case O_THRESHOLD:
        if (cli_parse_f64(cli, "--threshold", optarg, 0, 1, &dv)) return BSA_EXIT_USAGE;
        p.threshold = dv;
        p.select = BSA_MASKGEN_SELECT_THRESHOLD;
        break;
      case O_SINK:
        if (cli_parse_i64(cli, "--sink-blocks", optarg, 0, INT32_MAX, &iv)) return BSA_EXIT_USAGE;
        p.sink_blocks = iv;
        break;
      case O_LOCAL:
        if (cli_parse_i64(cli, "--local-blocks", optarg, 0, INT32_MAX, &iv)) return BSA_EXIT_USAGE;
        p.local_blocks = iv;
        break;
      case O_QC:
        if (cli_parse_i64(cli, "--q-clusters", optarg, 1, INT32_MAX, &iv)) return BSA_EXIT_USAGE;
        p.q_clusters = iv;
        break;
      case O_KC:
        if (cli_parse_i64(cli, "--k-clusters", optarg, 1, INT32_MAX, &iv)) return BSA_EXIT_USAGE;
        p.k_clusters = iv;
        break;
      case O_ITERS:
        if (cli_parse_i64(cli, "--iters", optarg, 1, 100000, &iv)) return BSA_EXIT_USAGE;
        p.iters = (int32_t)iv;
        break;
      case O_MINKC:
        if (cli_parse_f64(cli, "--min-kc-ratio", optarg, 0, 1, &dv)) return BSA_EXIT_USAGE;
        p.min_kc_ratio = dv;
        break;
      case O_SEED:
        if (cli_parse_i64(cli, "--seed", optarg, 0, INT64_MAX, &iv)) return BSA_EXIT_USAGE;
        p.seed = (uint64_t)iv;
        break;
      case O_INIT:
        if (!strcmp(optarg, "kmeans++"))
          p.init = BSA_KMEANS_INIT_PLUSPLUS;
        else if (!strcmp(optarg, "random"))
          p.init = BSA_KMEANS_INIT_RANDOM;
        else
          return cli_error(cli, BSA_EXIT_USAGE, "--init must be kmeans++ or random, got '%s'",
                           optarg);
        break;
      case O_JSON:
        json = 1;
        break;
      case O_HELP:
      case 'h':
        usage(stdout);
        return BSA_EXIT_OK;
      default:
        return cli_bad_option(cli, ch, argv);
    }
  }
  if (optind < argc)
    return cli_error(cli, BSA_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
  if (!trace_path) return cli_error(cli, BSA_EXIT_USAGE, "--trace T.h5 is required");
  if (!out_path) return cli_error(cli, BSA_EXIT_USAGE, "--out M.h5 is required");
  if (!method_name)
    return cli_error(cli, BSA_EXIT_USAGE, "--method is required (oracle, pooled or kmeans)");
  bsa_maskgen_method method;
  if (bsa_maskgen_method_parse(method_name, &method) != BSA_OK)
    return cli_error(cli, BSA_EXIT_USAGE, "%s", bsa_last_error());

  /* Options of the other family are mistakes, not silently ignored. */
  static const int fixed_only[] = {O_BLOCK,     O_BLOCK_Q, O_BLOCK_K, O_TOP_K,
                                   O_THRESHOLD, O_SINK,    O_LOCAL};
  static const int kmeans_only[] = {O_QC, O_KC, O_ITERS, O_MINKC, O_SEED, O_INIT};
  const int *bad = method == BSA_MASKGEN_KMEANS ? fixed_only : kmeans_only;
  size_t nbad = method == BSA_MASKGEN_KMEANS ? sizeof fixed_only / sizeof fixed_only[0]
                                             : sizeof kmeans_only / sizeof kmeans_only[0];
  for (size_t i = 0; i < nbad; i++)
    if (given[bad[i]])
      return cli_error(cli, BSA_EXIT_USAGE, "--%s is not an option of --method %s",
                       opt_name(bad[i]), method_name);
  if (method != BSA_MASKGEN_KMEANS) {
    int nsel = given[O_TOP_P] + given[O_TOP_K] + given[O_THRESHOLD];
    if (nsel != 1)
      return cli_error(cli, BSA_EXIT_USAGE,
                       "--method %s needs exactly one of --top-p, --top-k, --threshold (%s)",
                       method_name, nsel ? "got several" : "got none");
    if (given[O_BLOCK] && (given[O_BLOCK_Q] || given[O_BLOCK_K]))
      return cli_error(cli, BSA_EXIT_USAGE, "--block and --block-q/--block-k are exclusive");
  } else {
    if (!given[O_QC] || !given[O_KC])
      return cli_error(cli, BSA_EXIT_USAGE, "--method kmeans needs --q-clusters and --k-clusters");
    p.select = BSA_MASKGEN_SELECT_TOP_P;
  }
  if (bsa_maskgen_params_check(method, &p, NULL) != BSA_OK)
    return cli_error(cli, BSA_EXIT_USAGE, "%s", bsa_last_error());
  if (same_file(trace_path, out_path))
    return cli_error(cli, BSA_EXIT_USAGE, "--out %s is the trace itself; choose another path",
                     out_path);

  int rc = cli_run_begin(cli);
  if (rc) return rc;
  char *params_json = bsa_maskgen_params_json(method, &p);
  cli_param(cli, "trace", "%s", trace_path);
  cli_param(cli, "out", "%s", out_path);
  cli_param(cli, "method", "%s", method_name);
  cli_param(cli, "records", "%s", glob ? glob : "*");
  cli_param(cli, "params", "%s", params_json ? params_json : "{}");
  if (method == BSA_MASKGEN_KMEANS) {
    cli_param(cli, "q_clusters", "%lld", (long long)p.q_clusters);
    cli_param(cli, "k_clusters", "%lld", (long long)p.k_clusters);
    cli_param(cli, "iters", "%d", p.iters);
    cli_param(cli, "top_p", "%g", p.top_p);
    cli_param(cli, "min_kc_ratio", "%g", p.min_kc_ratio);
    cli_param(cli, "seed", "%llu", (unsigned long long)p.seed);
    cli_param(cli, "init", "%s", p.init == BSA_KMEANS_INIT_RANDOM ? "random" : "kmeans++");
  } else {
    cli_param(cli, "block_q", "%lld", (long long)p.block_q);
    cli_param(cli, "block_k", "%lld", (long long)p.block_k);
    if (p.select == BSA_MASKGEN_SELECT_TOP_P) cli_param(cli, "top_p", "%g", p.top_p);
    if (p.select == BSA_MASKGEN_SELECT_TOP_K) cli_param(cli, "top_k", "%lld", (long long)p.top_k);
    if (p.select == BSA_MASKGEN_SELECT_THRESHOLD) cli_param(cli, "threshold", "%g", p.threshold);
    cli_param(cli, "sink_blocks", "%lld", (long long)p.sink_blocks);
    cli_param(cli, "local_blocks", "%lld", (long long)p.local_blocks);
  }

  bsa_trace *t = NULL;
  bsa_masks_writer *w = NULL;
  bsa_trace_record *rec = NULL;
  bsa_mask_record *m = NULL;
  int code = BSA_EXIT_OK;
  char sha[65];
  if (bsa_trace_open(trace_path, &t) != BSA_OK ||
      bsa_maskgen_file_sha256(trace_path, sha) != BSA_OK) {
    code = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
    goto done;
  }
  cli_input(cli, "trace", trace_path);
  int64_t n = bsa_trace_num_records(t), todo = 0;
  for (int64_t i = 0; i < n; i++)
    todo += !glob || fnmatch(glob, bsa_trace_record_name(t, i), 0) == 0;
  if (todo == 0) {
    code = cli_error(cli, BSA_EXIT_FAIL, "%s: no record matches --records '%s' (%lld records)",
                     trace_path, glob ? glob : "*", (long long)n);
    goto done;
  }
  if (bsa_masks_writer_create(out_path, method_name, params_json ? params_json : "{}", trace_path,
                              sha, &w) != BSA_OK) {
    code = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
    goto done;
  }
  if (!json && !cli->quiet)
    printf("%-16s %5s %11s %9s %9s %10s\n", "record", "heads", "blocks", "density", "kept",
           "time_ms");
  double total_ms = 0;
  int64_t done_n = 0;
  for (int64_t i = 0; i < n; i++) {
    const char *name = bsa_trace_record_name(t, i);
    if (glob && fnmatch(glob, name, 0) != 0) continue;
    cli_progress(cli, "maskgen %s: record %lld/%lld %s", method_name, (long long)done_n + 1,
                 (long long)todo, name);
    bsa_status st = bsa_trace_read_record(t, name, &rec);
    if (st == BSA_OK) st = bsa_maskgen_params_check(method, &p, rec);
    if (st != BSA_OK) {
      code = cli_error(cli, st == BSA_ERR_INVALID_ARG ? BSA_EXIT_USAGE : BSA_EXIT_FAIL, "%s: %s",
                       trace_path, bsa_last_error());
      goto done;
    }
    double t0 = now_ms();
    st = bsa_maskgen_run(method, rec, &p, &m);
    double ms = now_ms() - t0;
    if (st == BSA_OK) st = bsa_masks_writer_add(w, m);
    if (st != BSA_OK) {
      code = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
      goto done;
    }
    total_ms += ms;
    done_n++;
    int64_t kept = 0, cells = (int64_t)m->num_kv_heads * m->num_block_rows * m->num_block_cols;
    for (int64_t c = 0; c < cells; c++) kept += m->block_mask_map[c];
    bsa_mask_density dens;
    bsa_mask_density_get(m, -1, rec->causal, &dens);
    char labels[160];
    snprintf(labels, sizeof labels, "{\"method\":\"%s\"}", method_name);
    cli_metric(cli, "density", m->density, name, -1, labels);
    cli_metric(cli, "density_blocks", dens.blocks, name, -1, labels);
    cli_metric(cli, "time_ms", ms, name, -1, labels);
    json_t *hd = json ? json_array() : NULL;
    for (int32_t h = 0; h < m->num_kv_heads; h++) {
      bsa_mask_density d;
      bsa_mask_density_get(m, h, rec->causal, &d);
      cli_metric(cli, "density", d.compute, name, h, labels);
      if (hd) json_array_append_new(hd, json_real(d.compute));
    }
    if (json) {
      json_t *o = json_object();
      json_object_set_new(o, "record", json_string(name));
      json_object_set_new(o, "method", json_string(method_name));
      json_object_set_new(o, "heads", json_integer(m->num_kv_heads));
      json_object_set_new(o, "qo_len", json_integer(m->qo_len));
      json_object_set_new(o, "kv_len", json_integer(m->kv_len));
      json_object_set_new(o, "block_rows", json_integer(m->num_block_rows));
      json_object_set_new(o, "block_cols", json_integer(m->num_block_cols));
      json_object_set_new(o, "causal", json_boolean(rec->causal));
      json_object_set_new(o, "density", json_real(m->density));
      json_object_set_new(o, "density_blocks", json_real(dens.blocks));
      json_object_set_new(o, "head_density", hd);
      json_object_set_new(o, "blocks_kept", json_integer(kept));
      json_object_set_new(o, "time_ms", json_real(ms));
      cli_progress_done(cli);
      print_json(o);
    } else if (!cli->quiet) {
      char grid[48];
      snprintf(grid, sizeof grid, "%lldx%lld", (long long)m->num_block_rows,
               (long long)m->num_block_cols);
      cli_progress_done(cli);
      printf("%-16s %5d %11s %9.4f %9lld %10.1f\n", name, m->num_kv_heads, grid, m->density,
             (long long)kept, ms);
    }
    bsa_mask_record_free(m);
    m = NULL;
    bsa_trace_record_free(rec);
    rec = NULL;
  }
  cli_progress_done(cli);
  bsa_status st = bsa_masks_writer_commit(w);
  w = NULL;
  if (st != BSA_OK) {
    code = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
    goto done;
  }
  cli_output(cli, "masks", out_path);
  cli_metric(cli, "time_ms", total_ms, NULL, -1, NULL);
  if (!json && !cli->quiet)
    printf("wrote %s: %lld record%s, method %s, %.1f ms\n", out_path, (long long)done_n,
           done_n == 1 ? "" : "s", method_name, total_ms);
done:
  cli_progress_done(cli);
  bsa_masks_writer_abort(w);
  bsa_mask_record_free(m);
  bsa_trace_record_free(rec);
  bsa_trace_close(t);
  free(params_json);
  return cli_run_end(cli, code);
}
