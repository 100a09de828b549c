/*
 * options: the flag parsing the commands share; see options.h.
 */
#include "cli/options.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"

int options_common_flag(const char *cmd, int c, const char *arg, struct options_common *f)
{
    switch (c) {
    case OPT_INSECURE:
        f->http.insecure = true;
        return OPTIONS_RUN;
    case OPT_CA_FILE:
        f->http.ca_file = arg;
        return OPTIONS_RUN;
    case OPT_CERT:
        f->http.cert_file = arg;
        return OPTIONS_RUN;
    case OPT_KEY:
        f->http.key_file = arg;
        return OPTIONS_RUN;
    case OPT_RETRIES:
        f->retries = atoi(arg);
        if (f->retries < OPTIONS_RETRIES_MIN || f->retries > OPTIONS_RETRIES_MAX) {
            fprintf(stderr, "ferry %s: --retries must be %d..%d\n", cmd, OPTIONS_RETRIES_MIN,
                    OPTIONS_RETRIES_MAX);
            return OPTIONS_EXIT_USAGE;
        }
        return OPTIONS_RUN;
    case 'v':
        f->verbose++;
        return OPTIONS_RUN;
    default:
        options_unknown_flag(cmd);
        return OPTIONS_EXIT_USAGE;
    }
}

void options_verbosity(int verbose)
{
    if (verbose > 0)
        log_threshold = verbose > 1 ? FERRY_LOG_DEBUG : FERRY_LOG_INFO;
}

void options_unknown_flag(const char *cmd)
{
    fprintf(stderr, "ferry %s: see 'ferry %s --help'\n", cmd, cmd);
}

int options_parse_size(const char *text, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text)
        return FERRY_EINVAL;
    if (*end == 'k' || *end == 'K')
        v *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        v *= 1024ull * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (*end != '\0')
        return FERRY_EINVAL;
    *out = v;
    return 0;
}

int options_config_cmd_parse(const char *cmd, int argc, char **argv, void (*usage)(FILE *),
                             bool allow_json, bool allow_check, struct options_config_cmd *f)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, OPT_JSON},
        {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int verbose = 0;
    int c;

    memset(f, 0, sizeof(*f));
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:v", longopts, NULL)) != -1) {
        if (c == 'c') {
            f->config = optarg;
        } else if (c == OPT_JSON && allow_json) {
            f->json = true;
        } else if (c == OPT_CHECK_CONFIG && allow_check) {
            f->check = true;
        } else if (c == 'v') {
            verbose++;
        } else if (c == OPT_HELP) {
            usage(stdout);
            return 0;
        } else {
            options_unknown_flag(cmd);
            return OPTIONS_EXIT_USAGE;
        }
    }
    if (f->config == NULL || optind != argc) {
        fprintf(stderr, "ferry %s: want -c FILE (see 'ferry %s --help')\n", cmd, cmd);
        return OPTIONS_EXIT_USAGE;
    }
    options_verbosity(verbose);
    return OPTIONS_RUN;
}

int options_config_load(const char *cmd, const char *path, struct config **cfg)
{
    char *err = NULL;
    int rc = config_load(path, cfg, &err);
    if (rc < 0)
        fprintf(stderr, "ferry %s: %s\n", cmd, err != NULL ? err : ferry_strerror(rc));
    free(err);
    return rc;
}
