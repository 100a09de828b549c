/*
 * cmd_list: `ferry ls HOST[:PORT]/REPO` (the tags of a repository) and
 * `ferry catalog HOST[:PORT]` (the repositories of a registry), every page
 * of the listing followed (registry/listing.h does the work).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/creds.h"
#include "cli/options.h"
#include "common/errors.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "registry/listing.h"

/* The range --page-size accepts. */
#define LIST_PAGE_SIZE_MAX 10000

static void usage_list(FILE *out, const char *cmd)
{
    bool tags = strcmp(cmd, "ls") == 0;
    fprintf(out,
            "usage: ferry %s [flags] %s\n"
            "\n"
            "%s, following every page of the listing.\n"
            "\n"
            "flags:\n"
            "      --json              print a JSON array instead of one name per line\n"
            "      --creds USER[:PASSWORD]  credentials (else FERRY_USERNAME/FERRY_PASSWORD,\n"
            "                          else the Docker config's \"auths\"); seen in the\n"
            "                          process list: prefer the two flags below\n"
            "      --creds-file FILE   USER:PASSWORD from the first line of FILE\n"
            "      --creds-stdin       USER:PASSWORD from a line of stdin\n"
            "      --authfile PATH     Docker config.json to read credentials from\n"
            "      --plain-http        use http://\n"
            "      --tls               use https:// even for a loopback registry\n"
            "      --page-size N       names asked per page (default 1000)\n"
            "      --insecure, --ca-file PATH, --cert PATH, --key PATH, --retries N, -v\n"
            "                          as for 'ferry copy'\n"
            "\n"
            "Exit status: 0 when listed, 1 when the registry could not be listed, 2 on a\n"
            "usage error.\n",
            cmd, tags ? "HOST[:PORT]/REPO" : "HOST[:PORT]",
            tags ? "Prints the tags of a repository" : "Prints the repositories of a registry");
}

/* The command line of `ferry ls` or `ferry catalog`. */
struct list_cmd {
    const char *cmd; /* "ls" or "catalog" */
    bool tags;       /* ls */
    bool json;
    const char *target; /* HOST[:PORT]/REPO or HOST[:PORT] */
    const char *authfile;
    struct creds creds;
    struct options_common common;
    struct listing_options o;
};

/* One flag of its own; returns OPTIONS_RUN to go on, or the exit status. */
static int list_flag(void *ctx, int c, char *arg)
{
    struct list_cmd *l = ctx;
    switch (c) {
    case OPT_JSON:
        l->json = true;
        break;
    case OPT_CREDS:
        creds_take(&l->creds, CREDS_ARG, arg);
        break;
    case OPT_CREDS_FILE:
        creds_take(&l->creds, CREDS_FILE, arg);
        break;
    case OPT_CREDS_STDIN:
        creds_take(&l->creds, CREDS_STDIN, NULL);
        break;
    case OPT_AUTHFILE:
        l->authfile = arg;
        break;
    case OPT_PLAIN_HTTP:
        l->o.reg.plain_http = true;
        break;
    case OPT_TLS:
        l->o.reg.force_tls = true;
        break;
    case OPT_PAGE_SIZE:
        l->o.reg.list_page_size = atoi(arg);
        if (l->o.reg.list_page_size < 1 || l->o.reg.list_page_size > LIST_PAGE_SIZE_MAX) {
            fprintf(stderr, "ferry %s: --page-size must be 1..%d\n", l->cmd, LIST_PAGE_SIZE_MAX);
            return OPTIONS_EXIT_USAGE;
        }
        break;
    case OPT_HELP:
        usage_list(stdout, l->cmd);
        return 0;
    default:
        return options_common_flag(l->cmd, c, arg, &l->common);
    }
    return OPTIONS_RUN;
}

/* Returns OPTIONS_RUN with *l set, or the exit status. */
static int list_parse(struct list_cmd *l, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"creds", required_argument, NULL, OPT_CREDS},
        {"creds-file", required_argument, NULL, OPT_CREDS_FILE},
        {"creds-stdin", no_argument, NULL, OPT_CREDS_STDIN},
        {"authfile", required_argument, NULL, OPT_AUTHFILE},
        {"plain-http", no_argument, NULL, OPT_PLAIN_HTTP},
        {"tls", no_argument, NULL, OPT_TLS},
        {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
        COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const struct options_spec spec = {"v", longopts, list_flag, l};
    int n_words = 0;

    memset(l, 0, sizeof(*l));
    l->cmd = argv[0];
    l->tags = strcmp(l->cmd, "ls") == 0;
    creds_init(&l->creds, "--creds");
    int rc = options_parse(&spec, argc, argv, &n_words);
    if (rc != OPTIONS_RUN)
        return rc;
    if (n_words != 1) {
        fprintf(stderr, "ferry %s: want %s (see 'ferry %s --help')\n", l->cmd,
                l->tags ? "HOST[:PORT]/REPO" : "HOST[:PORT]", l->cmd);
        return OPTIONS_EXIT_USAGE;
    }
    l->target = argv[1];
    options_verbosity(l->common.verbose);
    l->o.http = l->common.http;
    l->o.reg.max_attempts = l->common.retries;
    return OPTIONS_RUN;
}

/*
 * The registry (and for ls the repository) to list, into *ref: a catalog's
 * HOST parses as HOST/x. Returns 0, or a negative code after saying why.
 */
static int list_reference(const struct list_cmd *l, struct reference *ref)
{
    char *text = l->tags ? xstrdup(l->target) : xasprintf("%s/x", l->target);
    char *err = NULL;
    int rc = reference_parse(ref, text, &err);
    if (rc == 0 && (ref->tag != NULL || ref->digest != NULL))
        rc = FERRY_EINVAL;
    if (rc < 0)
        fprintf(stderr, "ferry %s: %s: %s\n", l->cmd, l->target,
                err ? err : "name a repository, without a tag or digest");
    free(err);
    free(text);
    return rc;
}

/* The names, one a line or as a JSON array. */
static void list_print(bool json, char **items, size_t n)
{
    if (!json) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", items[i]);
        return;
    }
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(items[i]));
    char *out = xjson_print(arr, false);
    printf("%s\n", out);
    free(out);
    cJSON_Delete(arr);
}

/* List and print; returns the exit status. */
static int list_run(struct list_cmd *l)
{
    char **items = NULL;
    size_t n = 0;
    char *error = NULL;
    int rc = listing_run(&l->o, &items, &n, &error);
    if (rc < 0)
        fprintf(stderr, "ferry %s: %s\n", l->cmd, error ? error : ferry_strerror(rc));
    else
        list_print(l->json, items, n);
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
    free(error);
    return rc < 0 ? 1 : 0;
}

int cmd_list(int argc, char **argv)
{
    struct list_cmd l;
    struct reference ref;
    memset(&ref, 0, sizeof(ref));
    int rc = list_parse(&l, argc, argv);
    if (rc != OPTIONS_RUN)
        return rc;
    if (list_reference(&l, &ref) < 0 || creds_load(l.cmd, &l.creds) < 0 ||
        creds_resolve(&l.creds, "FERRY", ref.registry, l.authfile) < 0) {
        rc = OPTIONS_EXIT_USAGE;
        goto out;
    }
    l.o.registry = ref.registry;
    l.o.repository = l.tags ? ref.repository : NULL;
    l.o.reg.credentials = l.creds.credentials;
    rc = list_run(&l);
out:
    creds_release(&l.creds);
    reference_release(&ref);
    return rc;
}
