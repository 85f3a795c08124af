/*
 * tools/cmd_bench.c - `bsa bench`: times dense, fixed-block (BSR) and
 * variable-block sparse attention on random inputs and random block maps,
 * with dense measured in the same run, or the masks of a masks file on its
 * trace's own q/k/v (--masks/--trace, see bench_masks.c).
 */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: bsa bench [--device cpu|cuda] [--layout dense|bsr|var|all] [--seq S]\n"
          "                 [--heads H] [--kv-heads HKV] [--head-dim D] [--block B]\n"
          "                 [--blocks MBxNB] [--density LIST] [--causal]\n"
          "                 [--dtype f32|f16|bf16] [--reps N] [--warmup N] [--seed N]\n"
          "                 [--masks M.h5 --trace T.h5 [--records GLOB]] [--json]\n\n"
          "Times attention on random q/k/v (normal, never zero) against dense attention\n"
          "measured in the same run.  bsr: random fixed-block maps of B x B blocks, one\n"
          "map per kv head with the diagonal kept; var: random MB x NB partitions per kv\n"
          "head.  Each row keeps round(density x NB) blocks.  With --masks/--trace it\n"
          "times the generated masks on the trace's own q/k/v instead.\n\n"
          "  --device      cpu (default) or cuda\n"
          "  --layout      dense, bsr, var or all (default all: bsr and var)\n"
          "  --seq         query and key length (default 4096)\n"
          "  --heads       query heads (default 8); --kv-heads (default = heads)\n"
          "  --head-dim    64, 128 (default), 256; any 1..1024 on the CPU\n"
          "  --block       BSR block size (default 128)\n"
          "  --blocks      variable-block grid, e.g. 64x64 (default)\n"
          "  --density     comma-separated densities in (0, 1] (default 0.05,0.1,0.25,0.5)\n"
          "  --causal      global causal mask on top of the block map\n"
          "  --qkv-layout  memory layout of q, k, v and o: nhd [len, heads, dim] (default)\n"
          "                or hnd [heads, len, dim]\n"
          "  --dtype       f32 (CPU default), f16, bf16 (CUDA default)\n"
          "  --reps        timed repetitions, median reported (default 5 CPU, 50 CUDA;\n"
          "                CUDA times as triton's do_bench: at least 200 ms of runs,\n"
          "                each behind a write that leaves L2 cold)\n"
          "  --warmup      untimed runs first (default 1 CPU, 10 CUDA; CUDA: at least 50 ms)\n"
          "  --json        one JSON object per line instead of the table\n");
}

static int parse_blocks(bsa_cli *cli, const char *s, int64_t *mb, int64_t *nb) {
  char *end = NULL;
  long long a = strtoll(s, &end, 10);
  if (!end || (*end != 'x' && *end != 'X'))
    return cli_error(cli, BSA_EXIT_USAGE, "--blocks expects MBxNB such as 64x64, got '%s'", s), -1;
  char *end2 = NULL;
  long long b = strtoll(end + 1, &end2, 10);
  if (*end2 || a < 1 || b < 1 || a > 1000000 || b > 1000000)
    return cli_error(cli, BSA_EXIT_USAGE,
                     "--blocks expects MBxNB with 1 <= MB, NB <= 1000000, got '%s'", s),
           -1;
  *mb = a;
  *nb = b;
  return 0;
}

int cmd_bench(bsa_cli *cli, int argc, char **argv) {
  bench_opts o;
  memset(&o, 0, sizeof o);
  o.device = BSA_DEVICE_CPU;
  o.seq = 4096;
  o.heads = 8;
  o.kv_heads = 0;
  o.head_dim = 128;
  o.block = 128;
  o.mb = 64;
  o.nb = 64;
  o.reps = -1;
  o.warmup = -1;
  o.seed = 1;
  int dtype_given = 0;
  const char *layout = "all";
  const char *density = "0.05,0.1,0.25,0.5";

  static const struct option longopts[] = {{"device", required_argument, 0, 'd'},
                                           {"layout", required_argument, 0, 'l'},
                                           {"seq", required_argument, 0, 's'},
                                           {"heads", required_argument, 0, 'H'},
                                           {"kv-heads", required_argument, 0, 'K'},
                                           {"head-dim", required_argument, 0, 'D'},
                                           {"block", required_argument, 0, 'b'},
                                           {"blocks", required_argument, 0, 'B'},
                                           {"density", required_argument, 0, 'p'},
                                           {"causal", no_argument, 0, 'c'},
                                           {"dtype", required_argument, 0, 't'},
                                           {"reps", required_argument, 0, 'r'},
                                           {"warmup", required_argument, 0, 'w'},
                                           {"seed", required_argument, 0, 'S'},
                                           {"qkv-layout", required_argument, 0, 'L'},
                                           {"masks", required_argument, 0, 'm'},
                                           {"trace", required_argument, 0, 'T'},
                                           {"records", required_argument, 0, 'R'},
                                           {"json", no_argument, 0, 'j'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  int64_t v;
  while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (ch) {
      case 'd':
        if (!strcmp(optarg, "cpu"))
          o.device = BSA_DEVICE_CPU;
        else if (!strcmp(optarg, "cuda"))
          o.device = BSA_DEVICE_CUDA;
        else
          return cli_error(cli, BSA_EXIT_USAGE, "--device must be cpu or cuda, got '%s'", optarg);
        break;
      case 'l':
        if (strcmp(optarg, "dense") && strcmp(optarg, "bsr") && strcmp(optarg, "var") &&
            strcmp(optarg, "all"))
          return cli_error(cli, BSA_EXIT_USAGE, "--layout must be dense, bsr, var or all, got '%s'",
                           optarg);
        layout = optarg;
        break;
      case 's':
        if (cli_parse_i64(cli, "--seq", optarg, 1, (int64_t)1 << 24, &o.seq)) return BSA_EXIT_USAGE;
        break;
      case 'H':
        if (cli_parse_i64(cli, "--heads", optarg, 1, 1024, &v)) return BSA_EXIT_USAGE;
        o.heads = (int)v;
        break;
      case 'K':
        if (cli_parse_i64(cli, "--kv-heads", optarg, 1, 1024, &v)) return BSA_EXIT_USAGE;
        o.kv_heads = (int)v;
        break;
      case 'D':
        if (cli_parse_i64(cli, "--head-dim", optarg, 1, 1024, &v)) return BSA_EXIT_USAGE;
        o.head_dim = (int)v;
        break;
      case 'b':
        if (cli_parse_i64(cli, "--block", optarg, 1, (int64_t)1 << 20, &o.block))
          return BSA_EXIT_USAGE;
        break;
      case 'B':
        if (parse_blocks(cli, optarg, &o.mb, &o.nb)) return BSA_EXIT_USAGE;
        break;
      case 'p':
        density = optarg;
        break;
      case 'c':
        o.causal = 1;
        break;
      case 't':
        if (bsa_dtype_parse(optarg, &o.dtype) != BSA_OK)
          return cli_error(cli, BSA_EXIT_USAGE, "--dtype must be f32, f16 or bf16, got '%s'",
                           optarg);
        dtype_given = 1;
        break;
      case 'r':
        if (cli_parse_i64(cli, "--reps", optarg, 1, 100000, &v)) return BSA_EXIT_USAGE;
        o.reps = (int)v;
        break;
      case 'w':
        if (cli_parse_i64(cli, "--warmup", optarg, 0, 100000, &v)) return BSA_EXIT_USAGE;
        o.warmup = (int)v;
        break;
      case 'L':
        if (!strcmp(optarg, "nhd"))
          o.qkv_layout = BSA_LAYOUT_NHD;
        else if (!strcmp(optarg, "hnd"))
          o.qkv_layout = BSA_LAYOUT_HND;
        else
          return cli_error(cli, BSA_EXIT_USAGE, "--qkv-layout must be nhd or hnd, got '%s'",
                           optarg);
        break;
      case 'S':
        if (cli_parse_i64(cli, "--seed", optarg, 0, INT64_MAX, &v)) return BSA_EXIT_USAGE;
        o.seed = (uint64_t)v;
        break;
      case 'm':
        o.masks_path = optarg;
        break;
      case 'T':
        o.trace_path = optarg;
        break;
      case 'R':
        o.records_glob = optarg;
        break;
      case 'j':
        o.json = 1;
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
  if (o.kv_heads == 0) o.kv_heads = o.heads;
  if (o.heads % o.kv_heads)
    return cli_error(cli, BSA_EXIT_USAGE, "--heads = %d is not a multiple of --kv-heads = %d",
                     o.heads, o.kv_heads);
  if (!dtype_given) o.dtype = o.device == BSA_DEVICE_CUDA ? BSA_DTYPE_BF16 : BSA_DTYPE_F32;
  if (o.reps < 0) o.reps = o.device == BSA_DEVICE_CUDA ? 50 : 5;
  if (o.warmup < 0) o.warmup = o.device == BSA_DEVICE_CUDA ? 10 : 1;
  if (o.mb > o.seq || o.nb > o.seq)
    return cli_error(cli, BSA_EXIT_USAGE,
                     "--blocks %lldx%lld: more blocks than --seq = %lld tokens", (long long)o.mb,
                     (long long)o.nb, (long long)o.seq);
  if ((o.masks_path != NULL) != (o.trace_path != NULL))
    return cli_error(cli, BSA_EXIT_USAGE, "--masks and --trace go together");
  o.do_bsr = !strcmp(layout, "bsr") || !strcmp(layout, "all");
  o.do_var = !strcmp(layout, "var") || !strcmp(layout, "all");
  if (!o.masks_path &&
      cli_parse_f64_list(cli, "--density", density, 1e-9, 1.0, &o.densities, &o.n_densities))
    return BSA_EXIT_USAGE;

  int rc = cli_run_begin(cli);
  if (rc) return rc;
  cli_param(cli, "device", "%s", o.device == BSA_DEVICE_CUDA ? "cuda" : "cpu");
  cli_param(cli, "dtype", "%s", bsa_dtype_name(o.dtype));
  cli_param(cli, "reps", "%d", o.reps);
  cli_param(cli, "warmup", "%d", o.warmup);
  cli_param(cli, "causal", "%d", o.causal);
  if (o.masks_path) {
    cli_param(cli, "masks", "%s", o.masks_path);
    cli_param(cli, "trace", "%s", o.trace_path);
    if (o.records_glob) cli_param(cli, "records", "%s", o.records_glob);
    rc = bench_masks(cli, &o);
  } else {
    cli_param(cli, "layout", "%s", layout);
    cli_param(cli, "seq", "%lld", (long long)o.seq);
    cli_param(cli, "heads", "%d", o.heads);
    cli_param(cli, "kv_heads", "%d", o.kv_heads);
    cli_param(cli, "head_dim", "%d", o.head_dim);
    cli_param(cli, "block", "%lld", (long long)o.block);
    cli_param(cli, "blocks", "%lldx%lld", (long long)o.mb, (long long)o.nb);
    cli_param(cli, "density", "%s", density);
    cli_param(cli, "seed", "%llu", (unsigned long long)o.seed);
    cli_param(cli, "qkv_layout", "%s", o.qkv_layout == BSA_LAYOUT_HND ? "hnd" : "nhd");
    rc = bench_random(cli, &o);
  }
  free(o.densities);
  return cli_run_end(cli, rc);
}
