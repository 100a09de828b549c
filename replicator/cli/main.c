/*
 * ferry: the command line. main() sets the process up (heap, dumpability,
 * umask, log level) and hands the arguments to the command named first; each
 * command (cli/commands.h, one cmd_NAME.c each) parses its flags and hands a
 * plain options struct to the module that does the work.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/log.h"
#include "common/xalloc.h"

#define FERRY_VERSION "0.1.0"

/*
 * Transfers allocate 128-256 KiB buffers by the hundred: served from the
 * heap and reused, not mapped and unmapped (and their pages zeroed) for each
 * blob, which cost a tenth of a sync's CPU. The heap then holds at most the
 * buffers of the transfers running at once, whatever the number or size of
 * the blobs (copy_large checks the peak). Free memory at the top of a heap
 * (the main one and each thread's) goes back past 1 MiB: at 32 MiB every
 * thread's heap kept its own peak, and a sync of 10,000 tags peaked at
 * 56 MiB instead of 47 MiB, for the same CPU.
 */
#define FERRY_MMAP_THRESHOLD (8 * 1024 * 1024)
#define FERRY_TRIM_THRESHOLD (1 * 1024 * 1024)

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
    if (mallopt(M_MMAP_THRESHOLD, FERRY_MMAP_THRESHOLD) != 1 ||
        mallopt(M_TRIM_THRESHOLD, FERRY_TRIM_THRESHOLD) != 1)
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
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "ferry: unknown command '%s' (see 'ferry --help')\n", cmd);
    return OPTIONS_EXIT_USAGE;
}
