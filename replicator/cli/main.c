/*
 * ferry: the command line. main() sets the process up (heap, dumpability,
 * umask, log level) and hands the arguments to the command named first; each
 * command (cli/commands.h, one cmd_NAME.c each) parses its flags and hands a
 * plain options struct to the module that does the work.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "journal/journal.h"

#define FERRY_VERSION "0.1.0"

/* The commands, by the name that runs them. */
static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"copy", cmd_copy},       {"serve", cmd_serve},   {"sync", cmd_sync},
    {"retry", cmd_retry},     {"status", cmd_status}, {"verify", cmd_verify},
    {"journal", cmd_journal}, {"ls", cmd_list},       {"catalog", cmd_list},
};

static void usage_main(FILE *out)
{
    fputs("usage: ferry [--version] [--help] COMMAND [ARGS]\n"
          "\n"
          "Ferry replicates OCI container images between registries, by digest.\n"
          "\n"
          "commands:\n"
          "  copy SRC DST   copy one whole image (index, platforms, referrers) to DST\n"
          "  serve -c FILE  the daemon: webhooks and the poller into the journal, replication\n"
          "  sync -c FILE   one reconcile: poll every source once, replicate, report\n"
          "  verify -c FILE compare every selected source tag with every destination\n"
          "  retry -c FILE  requeue FAILED replication jobs (--dest D or --all-failed)\n"
          "  status -c FILE where replication stands, from the running daemon (--image,\n"
          "                 --wait: the deploy gate)\n"
          "  journal ...    read and append to the change journal (ls, show, append, stats)\n"
          "  ls REPO        list the tags of HOST[:PORT]/REPO\n"
          "  catalog HOST   list the repositories of a registry\n"
          "\n"
          "Run 'ferry COMMAND --help' for a command's flags. Flags may come before or\n"
          "after a command's words (ferry journal ls -c FILE is ferry journal -c FILE ls);\n"
          "'--' ends them.\n",
          out);
}

/* The heap, the process's dumpability, the umask and the log level, before any command. */
static void process_setup(void)
{
    xalloc_init();
    if (!heap_setup())
        log_debug("heap thresholds not set: the allocator refused them");
    /*
     * The process holds registry passwords and tokens: no core dump of it,
     * and no ptrace or /proc/PID/{environ,mem,maps} for other processes of
     * the same user (the kernel then makes /proc/PID root's).
     * FERRY_DUMPABLE=1 keeps it dumpable, for a debugger or a core.
     */
    const char *dumpable = getenv("FERRY_DUMPABLE");
    if ((dumpable == NULL || strcmp(dumpable, "1") != 0) && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        log_warn("cannot make the process non-dumpable: %s", strerror(errno));
    /*
     * Whatever Ferry creates (the journal, the spool, the presence cache)
     * is for its own user alone: nobody else needs to read a blob or a job.
     */
    umask(077);
    const char *level = getenv("FERRY_LOG_LEVEL");
    if (level != NULL && log_set_level_name(level) < 0)
        fprintf(stderr, "ferry: FERRY_LOG_LEVEL must be error, warn, info or debug\n");
}

int main(int argc, char **argv)
{
    process_setup();
    if (argc < 2) {
        usage_main(stderr);
        return OPTIONS_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("ferry %s\n", FERRY_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(cmd, commands[i].name) == 0) {
            int rc = commands[i].run(argc - 1, argv + 1);
            /* A cluster's journal leaves libnats' threads behind: they stop here. */
            journal_process_exit();
            return rc;
        }
    }
    fprintf(stderr, "ferry: unknown command '%s' (see 'ferry --help')\n", cmd);
    return OPTIONS_EXIT_USAGE;
}
