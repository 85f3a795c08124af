/*
 * tools/bsa.c - the `bsa` command line: global options and verb dispatch.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct verb {
  const char *name;
  int (*fn)(bsa_cli *, int, char **);
  const char *summary;
} verb;

static const verb verbs[] = {
    {"bench", cmd_bench, "time dense, fixed-block and variable-block attention"},
    {"trace", cmd_trace, "synthesise or describe attention traces (HDF5)"},
    {"maskgen", cmd_maskgen, "derive per-head block masks from a trace"},
    {"eval", cmd_eval, "density, recall and output error of masks"},
    {"viz", cmd_viz, "render masks, score maps and charts to PNG"},
    {"runs", cmd_runs, "list, show, compare and export logged runs"},
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: bsa [--version] [--help] [--db PATH] [--no-log] [--threads N]\n"
          "           [-q|--quiet] VERB [ARGS]\n\n"
          "verbs:\n");
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
  fprintf(f,
          "\nglobal options (before or after the verb):\n"
          "  --db PATH     experiment log (default $BSA_DB or ./bsa-runs.db)\n"
          "  --no-log      do not record this run\n"
          "  --threads N   CPU threads (default: all cores)\n"
          "  -q, --quiet   no progress output\n\n"
          "`bsa VERB --help` describes each verb.\n");
}

/* Removes the global options from argv (they may appear anywhere before a
 * lone "--"), so verbs only see their own.  Returns -1 on a usage error. */
static int take_global_options(bsa_cli *cli, int *argc, char **argv) {
  int out = 1;
  for (int i = 1; i < *argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      for (; i < *argc; i++) argv[out++] = argv[i];
      break;
    }
    if (strcmp(a, "--db") == 0 || strncmp(a, "--db=", 5) == 0) {
      const char *v = a[4] == '=' ? a + 5 : (i + 1 < *argc ? argv[++i] : NULL);
      if (!v || !*v) {
        fprintf(stderr, "bsa: --db needs a path\n");
        return -1;
      }
      cli->db_path = v;
    } else if (strcmp(a, "--no-log") == 0) {
      cli->no_log = 1;
    } else if (strcmp(a, "--threads") == 0 || strncmp(a, "--threads=", 10) == 0) {
      const char *v = a[9] == '=' ? a + 10 : (i + 1 < *argc ? argv[++i] : NULL);
      char *end = NULL;
      long n = v ? strtol(v, &end, 10) : -1;
      if (!v || !*v || *end || n < 1 || n > 1024) {
        fprintf(stderr, "bsa: --threads must be an integer in 1..1024, got '%s'\n", v ? v : "");
        return -1;
      }
      cli->threads = (int)n;
    } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      cli->quiet = 1;
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  argv[out] = NULL;
  return 0;
}

int main(int argc, char **argv) {
  bsa_cli cli;
  memset(&cli, 0, sizeof cli);
  cli.full_argc = argc;
  cli.full_argv = malloc(sizeof(char *) * (size_t)(argc + 1));
  if (!cli.full_argv) return BSA_EXIT_FAIL;
  memcpy(cli.full_argv, argv, sizeof(char *) * (size_t)(argc + 1));
  cli.db_path = bsa_runlog_default_path();

  if (take_global_options(&cli, &argc, argv) != 0) return BSA_EXIT_USAGE;
  if (argc < 2) {
    usage(stderr);
    return BSA_EXIT_USAGE;
  }
  const char *v = argv[1];
  if (strcmp(v, "--version") == 0 || strcmp(v, "version") == 0) {
    printf("bsa %s\n", bsa_version());
    return BSA_EXIT_OK;
  }
  if (strcmp(v, "--help") == 0 || strcmp(v, "-h") == 0 || strcmp(v, "help") == 0) {
    usage(stdout);
    return BSA_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
    if (strcmp(v, verbs[i].name) == 0) {
      cli.verb = verbs[i].name;
      int rc = verbs[i].fn(&cli, argc - 1, argv + 1);
      free(cli.full_argv);
      return rc;
    }
  }
  fprintf(stderr, "bsa: unknown verb '%s' (see bsa --help)\n", v);
  return BSA_EXIT_USAGE;
}
