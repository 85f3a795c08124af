/* Placeholder until the maskgen verb lands; replaced by its module. */
#include "cli.h"
int cmd_maskgen(bsa_cli *cli, int argc, char **argv) {
  (void)argc; (void)argv;
  return cli_error(cli, BSA_EXIT_FAIL, "this verb is not built yet");
}
