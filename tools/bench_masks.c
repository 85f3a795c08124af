/*
 * tools/bench_masks.c - `bsa bench --masks M.h5 --trace T.h5`: the masks of
 * a masks file timed on the trace's own q/k/v.
 */
#include "config.h"

#include "bench.h"

int bench_masks(bsa_cli *cli, const bench_opts *o) {
  (void)o;
  return cli_error(cli, BSA_EXIT_FAIL, "--masks/--trace: not built yet");
}
