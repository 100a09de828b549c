/*
 * cmd_verify: `ferry verify -c FILE`, every source tag the rules select
 * against every destination (replication/verify.h does the work).
 */
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/errors.h"
#include "replication/verify.h"

static void usage_verify(FILE *out)
{
    fputs("usage: ferry verify -c FILE [--json] [-v]\n"
          "\n"
          "Compares every source tag the rules select with every destination of the\n"
          "rule: the tag's digest, every child manifest and blob of the image, and its\n"
          "referrers. Prints one line per drift on stdout:\n"
          "  drift DEST REPO:TAG missing|differs|incomplete|referrers DETAIL\n"
          "and a summary on stderr; --json prints one JSON object per line instead.\n"
          "Read-only: only GET and HEAD requests.\n"
          "Exit status: 0 when every destination holds everything, 1 on drift or when a\n"
          "registry cannot be read (named in the message), 2 on a usage or configuration\n"
          "error.\n",
          out);
}

int cmd_verify(int argc, char **argv)
{
    struct options_config_cmd f;
    int rc = options_config_cmd_parse("verify", argc, argv, usage_verify, true, false, &f);
    if (rc != OPTIONS_RUN)
        return rc;
    rc = verify_run(f.config, f.json);
    if (rc == FERRY_EINVAL)
        return OPTIONS_EXIT_USAGE;
    return rc == 0 ? 0 : 1;
}
