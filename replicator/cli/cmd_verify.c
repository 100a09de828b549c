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
          "referrers, as the rule copies them: with one platform, that platform's\n"
          "manifest; with overwrite: false, a tag found holding another image is kept.\n"
          "Prints one line per drift, and per kept tag, on stdout:\n"
          "  drift DEST REPO:TAG missing|differs|incomplete|referrers DETAIL\n"
          "  kept DEST REPO:TAG source DIGEST destination DIGEST (overwrite: false)\n"
          "and a summary on stderr; --json prints one JSON object per line instead.\n"
          "Read-only: only GET and HEAD requests.\n"
          "Exit status: 0 when every destination holds everything (kept tags are not\n"
          "drift), 1 on drift or when a registry cannot be read (named in the message),\n"
          "2 on a usage or configuration error.\n",
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
