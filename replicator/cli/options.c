/*
 * options: the flag parsing the commands share; see options.h.
 */
#include "cli/options.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

/* ---- the command line, flags anywhere ---- */

/* The entries of a longopts table before its zero entry (NULL: none). */
static size_t options_longopts_count(const struct option *longopts)
{
    size_t n = 0;
    while (longopts != NULL && longopts[n].name != NULL)
        n++;
    return n;
}

/*
 * The flags of specs[0..n) as one getopt_long() table: *shortopts starts
 * with '-', which makes getopt answer 1 for each positional word, in place,
 * instead of stopping at the first one (as '+' or POSIXLY_CORRECT would) or
 * moving words behind our back. Both are the caller's to free.
 */
static void options_merge(const struct options_spec *const *specs, size_t n, char **shortopts,
                          struct option **longopts)
{
    size_t n_short = 1;
    size_t n_long = 0;
    for (size_t i = 0; i < n; i++) {
        n_short += specs[i]->shortopts != NULL ? strlen(specs[i]->shortopts) : 0;
        n_long += options_longopts_count(specs[i]->longopts);
    }
    char *s = xmalloc(n_short + 1);
    struct option *l = xcalloc(n_long + 1, sizeof(*l));
    size_t at_short = 0;
    size_t at_long = 0;
    s[at_short++] = '-';
    for (size_t i = 0; i < n; i++) {
        if (specs[i]->shortopts != NULL) {
            size_t len = strlen(specs[i]->shortopts);
            memcpy(s + at_short, specs[i]->shortopts, len);
            at_short += len;
        }
        size_t count = options_longopts_count(specs[i]->longopts);
        if (count > 0)
            memcpy(l + at_long, specs[i]->longopts, count * sizeof(*l));
        at_long += count;
    }
    s[at_short] = '\0';
    *shortopts = s;
    *longopts = l;
}

/* Whether flag id `c` is one of `spec`'s own. */
static bool options_spec_names(const struct options_spec *spec, int c)
{
    if (c > 0 && c < 256 && c != ':' && c != '?' && spec->shortopts != NULL &&
        strchr(spec->shortopts, c) != NULL)
        return true;
    for (size_t i = 0; i < options_longopts_count(spec->longopts); i++) {
        if (spec->longopts[i].flag == NULL && spec->longopts[i].val == c)
            return true;
    }
    return false;
}

/* The handler of flag `c`: the spec naming it, else the last with a handler (for '?'). */
static const struct options_spec *options_handler(const struct options_spec *const *specs, size_t n,
                                                  int c)
{
    const struct options_spec *last = NULL;
    for (size_t i = 0; i < n; i++) {
        if (specs[i]->flag != NULL && options_spec_names(specs[i], c))
            return specs[i];
        if (specs[i]->flag != NULL)
            last = specs[i];
    }
    return last;
}

/*
 * One scan of argv with the flags of specs[0..n): each flag goes to its
 * handler when `dispatch` (else flags are only stepped over, silently, to
 * find the words); the indexes of the positional words land in words[], in
 * order, *n_words of them. Returns OPTIONS_RUN, or the status a handler
 * stopped with.
 */
static int options_scan(const struct options_spec *const *specs, size_t n, bool dispatch, int argc,
                        char **argv, int *words, int *n_words)
{
    char *shortopts = NULL;
    struct option *longopts = NULL;
    int saved_opterr = opterr;
    int rc = OPTIONS_RUN;
    int c;

    options_merge(specs, n, &shortopts, &longopts);
    *n_words = 0;
    opterr = dispatch;
    /* 0, not 1: glibc then starts afresh and reads the leading '-' again. */
    optind = 0;
    while (rc == OPTIONS_RUN && (c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == 1) {
            words[(*n_words)++] = optind - 1;
            continue;
        }
        if (!dispatch)
            continue;
        const struct options_spec *to = options_handler(specs, n, c);
        rc = to != NULL ? to->flag(to->ctx, c, optarg) : OPTIONS_EXIT_USAGE;
    }
    /* getopt stopped at `--`: what follows is positional, dashes or not. */
    while (rc == OPTIONS_RUN && optind < argc)
        words[(*n_words)++] = optind++;
    opterr = saved_opterr;
    free(longopts);
    free(shortopts);
    return rc;
}

/* Move argv's positional words (their indexes in words[0..n)) to argv[1..n], in order. */
static void options_words_first(int argc, char **argv, const int *words, int n)
{
    char **order = xcalloc((size_t)argc, sizeof(*order));
    bool *is_word = xcalloc((size_t)argc, sizeof(*is_word));
    int at = 1;
    for (int i = 0; i < n; i++) {
        order[at++] = argv[words[i]];
        is_word[words[i]] = true;
    }
    for (int i = 1; i < argc; i++) {
        if (!is_word[i])
            order[at++] = argv[i];
    }
    memcpy(argv + 1, order + 1, (size_t)(argc - 1) * sizeof(*argv));
    free(is_word);
    free(order);
}

/* options_parse() with the flags of specs[0..n). */
static int options_parse_specs(const struct options_spec *const *specs, size_t n, int argc,
                               char **argv, int *n_words)
{
    int *words = xcalloc((size_t)argc + 1, sizeof(*words));
    int rc = options_scan(specs, n, true, argc, argv, words, n_words);
    if (rc == OPTIONS_RUN)
        options_words_first(argc, argv, words, *n_words);
    free(words);
    return rc;
}

int options_parse(const struct options_spec *spec, int argc, char **argv, int *n_words)
{
    return options_parse_specs(&spec, 1, argc, argv, n_words);
}

int options_parse_sub(const struct options_spec *parent, const struct options_subcommand *subs,
                      size_t n_subs, int argc, char **argv, const struct options_subcommand **sub,
                      int *n_words)
{
    const struct options_spec **all = xcalloc(n_subs + 1, sizeof(*all));
    int *words = xcalloc((size_t)argc + 1, sizeof(*words));
    int n = 0;

    /*
     * Which subcommand, before any flag is taken: the first positional word,
     * found by stepping over the flags of all of them (a flag's value is no
     * word, whichever subcommand's flag it is).
     */
    all[0] = parent;
    for (size_t i = 0; i < n_subs; i++)
        all[i + 1] = &subs[i].spec;
    *sub = NULL;
    int rc = options_scan(all, n_subs + 1, false, argc, argv, words, &n);
    for (size_t i = 0; rc == OPTIONS_RUN && n > 0 && i < n_subs; i++) {
        if (strcmp(argv[words[0]], subs[i].name) == 0)
            *sub = &subs[i];
    }
    free(words);
    free(all);
    const struct options_spec *specs[2] = {parent, *sub != NULL ? &(*sub)->spec : NULL};
    return options_parse_specs(specs, *sub != NULL ? 2 : 1, argc, argv, n_words);
}

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

/* What options_config_cmd_parse()'s flags fill in. */
struct options_config_parse {
    const char *cmd;
    void (*usage)(FILE *);
    bool allow_json;
    bool allow_check;
    int verbose;
    struct options_config_cmd *f;
};

static int options_config_flag(void *ctx, int c, char *arg)
{
    struct options_config_parse *p = ctx;
    if (c == 'c') {
        p->f->config = arg;
    } else if (c == OPT_JSON && p->allow_json) {
        p->f->json = true;
    } else if (c == OPT_CHECK_CONFIG && p->allow_check) {
        p->f->check = true;
    } else if (c == 'v') {
        p->verbose++;
    } else if (c == OPT_HELP) {
        p->usage(stdout);
        return 0;
    } else {
        options_unknown_flag(p->cmd);
        return OPTIONS_EXIT_USAGE;
    }
    return OPTIONS_RUN;
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
    struct options_config_parse p = {
        .cmd = cmd, .usage = usage, .allow_json = allow_json, .allow_check = allow_check, .f = f};
    const struct options_spec spec = {"c:v", longopts, options_config_flag, &p};
    int n_words = 0;

    memset(f, 0, sizeof(*f));
    int rc = options_parse(&spec, argc, argv, &n_words);
    if (rc != OPTIONS_RUN)
        return rc;
    if (f->config == NULL || n_words != 0) {
        fprintf(stderr, "ferry %s: want -c FILE (see 'ferry %s --help')\n", cmd, cmd);
        return OPTIONS_EXIT_USAGE;
    }
    options_verbosity(p.verbose);
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
