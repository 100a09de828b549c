/*
 * cmd_serve: `ferry serve -c FILE`, the daemon (daemon/serve.h does the work).
 */
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/errors.h"
#include "daemon/serve.h"

static void usage_serve(FILE *out)
{
    fputs("usage: ferry serve -c FILE [--check-config] [-v]\n"
          "\n"
          "Runs the daemon: the HTTP server (POST /v1/events/{source} for registry\n"
          "webhooks; the API: /v1/status, /v1/images, /v1/failures, /v1/retry,\n"
          "/v1/journal, /metrics, /healthz, /readyz; the dashboard at /) and the\n"
          "poller, both feeding the change journal in the config's data_dir, and the\n"
          "replication engine, which copies every journaled change to the\n"
          "destinations of its rules. SIGHUP reloads rules and registries (running\n"
          "jobs finish first; a file that does not load is refused). SIGINT or SIGTERM\n"
          "drain and stop: every event already accepted is written and answered first.\n"
          "Under systemd (Type=notify) it reports READY=1, RELOADING=1 and STOPPING=1.\n"
          "\n"
          "  -c, --config FILE   the configuration (YAML; see README)\n"
          "      --check-config  validate the configuration (secrets included) and exit;\n"
          "                      nothing is created or opened\n"
          "  -v, --verbose       log more (twice: debug)\n"
          "\n"
          "Secrets read from the environment (the *_env keys) leave it once read. The\n"
          "process is not dumpable (no core, no ptrace, /proc/PID owned by root) unless\n"
          "FERRY_DUMPABLE=1; files it creates are its user's alone (umask 077).\n"
          "Exit status: 0 after a clean stop, 1 when it could not start, 2 on a usage or\n"
          "configuration error.\n",
          out);
}

int cmd_serve(int argc, char **argv)
{
    struct options_config_cmd f;
    int rc = options_config_cmd_parse("serve", argc, argv, usage_serve, false, true, &f);
    if (rc != OPTIONS_RUN)
        return rc;
    rc = serve_run(f.config, f.check);
    /* The codes config_load() gives a config that is wrong, as verify does. */
    if (rc == FERRY_EINVAL || rc == FERRY_EPARSE || rc == FERRY_ETOOBIG)
        return OPTIONS_EXIT_USAGE;
    return rc < 0 ? 1 : 0;
}
