/*
 * cmd_copy: `ferry copy [flags] SRC DST`, one whole image from one registry
 * to another, like `skopeo copy`: the flags, the credentials of both sides,
 * the copy (copy_run.c), and its report, as text or JSON.
 */
#include "cli/cmd_copy.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/creds.h"
#include "cli/options.h"
#include "common/errors.h"
#include "common/human.h"
#include "common/reference.h"
#include "common/xalloc.h"

/* The ranges of --jobs and --platform. */
#define COPY_JOBS_MAX     256
#define COPY_PLATFORM_MAX 100

/* The id of --foreign-layers, a flag of this command alone (options.h's ids end well below). */
#define OPT_COPY_FOREIGN_LAYERS 2000

static void usage_copy(FILE *out)
{
    fputs(
        "usage: ferry copy [flags] SRC DST\n"
        "\n"
        "  SRC  HOST[:PORT]/REPO(:TAG|@sha256:HEX)\n"
        "  DST  HOST[:PORT]/REPO[:TAG]   (the tag defaults to SRC's)\n"
        "\n"
        "Copies the whole image: an index with every platform, each manifest's config\n"
        "and layers, and every referrer (signatures, SBOMs), digests preserved byte for\n"
        "byte. Blobs move in parallel; blobs already at DST are skipped, blobs held by\n"
        "another repository of DST are mounted; the tag is pushed last, and never when\n"
        "anything failed.\n"
        "\n"
        "flags:\n"
        "  -j, --jobs N            blobs in flight at once (default 8)\n"
        "      --platform OS/ARCH[/VARIANT]  copy only that platform's manifest\n"
        "      --no-referrers      do not copy referrers\n"
        "      --foreign-layers skip|copy  non-distributable (foreign) layers, which\n"
        "                          their vendor serves from URLs: left out (skip, the\n"
        "                          default, as skopeo and crane), or copied like any blob\n"
        "      --json              print a JSON summary on stdout\n"
        "      --progress          draw progress bars (default: when stderr is a terminal)\n"
        "      --no-progress       never draw progress bars\n"
        "      --src-creds USER[:PASSWORD]   credentials for SRC (seen in the process\n"
        "                          list: prefer the two flags below)\n"
        "      --src-creds-file FILE   USER:PASSWORD from the first line of FILE\n"
        "      --src-creds-stdin   USER:PASSWORD from a line of stdin\n"
        "      --dest-creds USER[:PASSWORD]  credentials for DST; --dest-creds-file FILE,\n"
        "                          --dest-creds-stdin (after SRC's line) as for SRC\n"
        "      --authfile PATH     Docker config.json to read credentials from\n"
        "                          (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)\n"
        "      --plain-http        use http:// for both registries\n"
        "      --src-plain-http, --dest-plain-http   the same for one side\n"
        "      --tls               use https:// even for loopback registries\n"
        "      --src-tls, --dest-tls   the same for one side\n"
        "      --insecure          do not verify TLS certificates\n"
        "      --ca-file PATH      trust this CA bundle as well\n"
        "      --cert PATH, --key PATH   TLS client certificate and key (PEM)\n"
        "      --upload-mode MODE  auto, monolithic or chunked (default auto: monolithic)\n"
        "      --chunk-size BYTES  chunked upload in chunks of this size (at least; the\n"
        "                          registry's OCI-Chunk-Min-Length wins when larger)\n"
        "      --chunk-max BYTES   largest chunk of a chunked upload (default 64 MiB)\n"
        "      --mount-from REPO   try mounting blobs from this repository of DST\n"
        "      --retries N         attempts per request, the first included (default 6)\n"
        "      --cache-dir DIR     presence cache (default ~/.cache/ferry/presence)\n"
        "      --no-cache          do not remember where blobs are\n"
        "  -v, --verbose           log more (twice: debug)\n"
        "\n"
        "Credentials, first found wins: the flags; FERRY_SRC_USERNAME/FERRY_SRC_PASSWORD\n"
        "and FERRY_DEST_USERNAME/FERRY_DEST_PASSWORD (taken out of the environment once\n"
        "read); the Docker config's \"auths\".\n"
        "\n"
        "Exit status: 0 when DST holds the whole image, 1 when the copy failed,\n"
        "2 on a usage error.\n",
        out);
}

/* The command line of `ferry copy`. */
struct copy_cmd {
    struct copy_options o;
    struct creds src_creds;
    struct creds dest_creds;
    const char *authfile;
    struct options_common common;
    bool json;
    int progress; /* --progress 1, --no-progress 0, neither -1 */
};

/* ---- flags ---- */

/* Which side's credentials each credentials flag gives, and how. */
static const struct {
    int flag;
    bool dest;
    enum creds_how how;
} copy_creds_flags[] = {
    {OPT_SRC_CREDS, false, CREDS_ARG},         {OPT_SRC_CREDS_FILE, false, CREDS_FILE},
    {OPT_SRC_CREDS_STDIN, false, CREDS_STDIN}, {OPT_DEST_CREDS, true, CREDS_ARG},
    {OPT_DEST_CREDS_FILE, true, CREDS_FILE},   {OPT_DEST_CREDS_STDIN, true, CREDS_STDIN},
};

/* A flag about how to reach the registries (none can be wrong): true when `c` is one. */
static bool copy_flag_registry(struct copy_cmd *cc, int c, char *arg)
{
    struct registry_options *src = &cc->o.src_registry;
    struct registry_options *dst = &cc->o.dst_registry;
    for (size_t i = 0; i < sizeof(copy_creds_flags) / sizeof(copy_creds_flags[0]); i++) {
        if (copy_creds_flags[i].flag == c) {
            creds_take(copy_creds_flags[i].dest ? &cc->dest_creds : &cc->src_creds,
                       copy_creds_flags[i].how, arg);
            return true;
        }
    }
    if (c == OPT_AUTHFILE)
        cc->authfile = arg;
    else if (c == OPT_PLAIN_HTTP)
        src->plain_http = dst->plain_http = true;
    else if (c == OPT_TLS)
        src->force_tls = dst->force_tls = true;
    else if (c == OPT_SRC_TLS)
        src->force_tls = true;
    else if (c == OPT_DEST_TLS)
        dst->force_tls = true;
    else if (c == OPT_SRC_PLAIN)
        src->plain_http = true;
    else if (c == OPT_DEST_PLAIN)
        dst->plain_http = true;
    else
        return false;
    return true;
}

static int copy_flag_upload_mode(struct copy_options *o, const char *arg)
{
    if (strcmp(arg, "auto") == 0) {
        o->upload.mode = REGISTRY_UPLOAD_AUTO;
    } else if (strcmp(arg, "monolithic") == 0) {
        o->upload.mode = REGISTRY_UPLOAD_MONOLITHIC;
    } else if (strcmp(arg, "chunked") == 0) {
        o->upload.mode = REGISTRY_UPLOAD_CHUNKED;
    } else {
        fprintf(stderr, "ferry copy: --upload-mode is auto, monolithic or chunked\n");
        return OPTIONS_EXIT_USAGE;
    }
    return OPTIONS_RUN;
}

/* --chunk-size (which also makes the upload chunked) or --chunk-max. */
static int copy_flag_chunk(struct copy_options *o, int c, const char *arg)
{
    uint64_t size = 0;
    if (options_parse_size(arg, &size) < 0 || size == 0) {
        fprintf(stderr, "ferry copy: %s wants a size in bytes (K, M, G allowed)\n",
                c == OPT_CHUNK_SIZE ? "--chunk-size" : "--chunk-max");
        return OPTIONS_EXIT_USAGE;
    }
    if (c == OPT_CHUNK_SIZE) {
        o->upload.chunk_min = size;
        o->upload.mode = REGISTRY_UPLOAD_CHUNKED;
    } else {
        o->upload.chunk_max = size;
    }
    return OPTIONS_RUN;
}

/* A flag about what to copy and how; returns OPTIONS_RUN to go on, or the exit status. */
static int copy_flag_transfer(struct copy_cmd *cc, int c, char *arg)
{
    struct copy_options *o = &cc->o;
    switch (c) {
    case 'j':
        o->jobs = atoi(arg);
        if (o->jobs < 1 || o->jobs > COPY_JOBS_MAX) {
            fprintf(stderr, "ferry copy: --jobs must be 1..%d\n", COPY_JOBS_MAX);
            return OPTIONS_EXIT_USAGE;
        }
        return OPTIONS_RUN;
    case OPT_PLATFORM:
        if (strchr(arg, '/') == NULL || strlen(arg) > COPY_PLATFORM_MAX) {
            fprintf(stderr, "ferry copy: --platform must be OS/ARCH[/VARIANT]\n");
            return OPTIONS_EXIT_USAGE;
        }
        o->platform = arg;
        return OPTIONS_RUN;
    case OPT_NO_REFERRERS:
        o->no_referrers = true;
        return OPTIONS_RUN;
    case OPT_COPY_FOREIGN_LAYERS:
        if (strcmp(arg, "skip") != 0 && strcmp(arg, "copy") != 0) {
            fprintf(stderr, "ferry copy: --foreign-layers must be skip or copy\n");
            return OPTIONS_EXIT_USAGE;
        }
        o->foreign_layers = strcmp(arg, "copy") == 0;
        return OPTIONS_RUN;
    case OPT_UPLOAD_MODE:
        return copy_flag_upload_mode(o, arg);
    case OPT_CHUNK_SIZE:
    case OPT_CHUNK_MAX:
        return copy_flag_chunk(o, c, arg);
    case OPT_MOUNT_FROM:
        if (!reference_repository_valid(arg)) {
            fprintf(stderr, "ferry copy: --mount-from is not a repository name\n");
            return OPTIONS_EXIT_USAGE;
        }
        o->mount_from = arg;
        return OPTIONS_RUN;
    case OPT_CACHE_DIR:
        o->cache_dir = arg;
        return OPTIONS_RUN;
    case OPT_NO_CACHE:
        o->cache_dir = "";
        return OPTIONS_RUN;
    default:
        return options_common_flag("copy", c, arg, &cc->common);
    }
}

/* One flag; returns OPTIONS_RUN to go on, or the exit status. */
static int copy_flag(void *ctx, int c, char *arg)
{
    struct copy_cmd *cc = ctx;
    if (copy_flag_registry(cc, c, arg))
        return OPTIONS_RUN;
    switch (c) {
    case OPT_JSON:
        cc->json = true;
        return OPTIONS_RUN;
    case OPT_PROGRESS:
        cc->progress = 1;
        return OPTIONS_RUN;
    case OPT_NO_PROGRESS:
        cc->progress = 0;
        return OPTIONS_RUN;
    case OPT_HELP:
        usage_copy(stdout);
        return 0;
    default:
        return copy_flag_transfer(cc, c, arg);
    }
}

/* Returns OPTIONS_RUN with *cc set, or the exit status. */
static int copy_parse(struct copy_cmd *cc, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"jobs", required_argument, NULL, 'j'},
        {"platform", required_argument, NULL, OPT_PLATFORM},
        {"no-referrers", no_argument, NULL, OPT_NO_REFERRERS},
        {"foreign-layers", required_argument, NULL, OPT_COPY_FOREIGN_LAYERS},
        {"json", no_argument, NULL, OPT_JSON},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
        {"src-creds", required_argument, NULL, OPT_SRC_CREDS},
        {"src-creds-file", required_argument, NULL, OPT_SRC_CREDS_FILE},
        {"src-creds-stdin", no_argument, NULL, OPT_SRC_CREDS_STDIN},
        {"dest-creds", required_argument, NULL, OPT_DEST_CREDS},
        {"dest-creds-file", required_argument, NULL, OPT_DEST_CREDS_FILE},
        {"dest-creds-stdin", no_argument, NULL, OPT_DEST_CREDS_STDIN},
        {"authfile", required_argument, NULL, OPT_AUTHFILE},
        {"plain-http", no_argument, NULL, OPT_PLAIN_HTTP},
        {"tls", no_argument, NULL, OPT_TLS},
        {"src-tls", no_argument, NULL, OPT_SRC_TLS},
        {"dest-tls", no_argument, NULL, OPT_DEST_TLS},
        {"src-plain-http", no_argument, NULL, OPT_SRC_PLAIN},
        {"dest-plain-http", no_argument, NULL, OPT_DEST_PLAIN},
        {"upload-mode", required_argument, NULL, OPT_UPLOAD_MODE},
        {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
        {"chunk-max", required_argument, NULL, OPT_CHUNK_MAX},
        {"mount-from", required_argument, NULL, OPT_MOUNT_FROM},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"no-cache", no_argument, NULL, OPT_NO_CACHE},
        COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const struct options_spec spec = {"j:v", longopts, copy_flag, cc};
    int n_words = 0;

    int rc = options_parse(&spec, argc, argv, &n_words);
    if (rc != OPTIONS_RUN)
        return rc;
    if (n_words != 2) {
        fprintf(stderr, "ferry copy: want SRC and DST (see 'ferry copy --help')\n");
        return OPTIONS_EXIT_USAGE;
    }
    cc->o.src = argv[1];
    cc->o.dst = argv[2];
    options_verbosity(cc->common.verbose);
    cc->o.http = cc->common.http;
    cc->o.progress = cc->progress < 0 ? isatty(STDERR_FILENO) && !cc->json : cc->progress == 1;
    cc->o.src_registry.max_attempts = cc->o.dst_registry.max_attempts = cc->common.retries;
    return OPTIONS_RUN;
}

/* ---- credentials ---- */

/*
 * The credentials of the registry `ref` names. Credentials are looked up per
 * host; a reference that does not parse fails in copy_run() with its
 * message, and has none.
 */
static int copy_resolve(struct creds *c, const char *env_prefix, const char *ref_text,
                        const char *authfile)
{
    struct reference ref;
    int rc = 0;
    memset(&ref, 0, sizeof(ref));
    if (reference_parse(&ref, ref_text, NULL) == 0)
        rc = creds_resolve(c, env_prefix, ref.registry, authfile);
    else
        creds_release(c);
    reference_release(&ref);
    return rc;
}

/* Both sides' credentials into cc->o; returns 0, or -1 after saying why. */
static int copy_credentials(struct copy_cmd *cc)
{
    /* SRC's line of stdin comes before DST's. */
    if (creds_load("copy", &cc->src_creds) < 0 || creds_load("copy", &cc->dest_creds) < 0)
        return -1;
    if (copy_resolve(&cc->src_creds, "FERRY_SRC", cc->o.src, cc->authfile) < 0 ||
        copy_resolve(&cc->dest_creds, "FERRY_DEST", cc->o.dst, cc->authfile) < 0)
        return -1;
    cc->o.src_registry.credentials = cc->src_creds.credentials;
    cc->o.dst_registry.credentials = cc->dest_creds.credentials;
    return 0;
}

/* ---- the report ---- */

static void copy_print_json(const struct copy_options *o, const struct copy_summary *s, int rc,
                            const char *error)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "ok", rc == 0);
    if (rc < 0)
        cJSON_AddStringToObject(j, "error", error);
    cJSON_AddStringToObject(j, "source", o->src);
    cJSON_AddStringToObject(j, "destination", o->dst);
    cJSON_AddStringToObject(j, "digest", s->digest);
    cJSON_AddNumberToObject(j, "blobs_copied", (double)s->blobs_copied);
    cJSON_AddNumberToObject(j, "bytes_copied", (double)s->bytes_copied);
    cJSON_AddNumberToObject(j, "blobs_mounted", (double)s->blobs_mounted);
    cJSON_AddNumberToObject(j, "blobs_skipped", (double)s->blobs_skipped);
    cJSON_AddNumberToObject(j, "manifests_pushed", (double)s->manifests_pushed);
    cJSON_AddNumberToObject(j, "manifests_skipped", (double)s->manifests_skipped);
    cJSON_AddNumberToObject(j, "referrers", (double)s->referrers);
    cJSON_AddNumberToObject(j, "foreign_layers_skipped", (double)s->foreign_layers_skipped);
    cJSON *req = cJSON_AddObjectToObject(j, "requests");
    cJSON_AddNumberToObject(req, "total", (double)s->requests);
    for (size_t i = 0; i < sizeof(s->requests_by_method) / sizeof(s->requests_by_method[0]); i++)
        cJSON_AddNumberToObject(req, http_method_names[i], (double)s->requests_by_method[i]);
    cJSON_AddNumberToObject(j, "retries", (double)s->retries);
    cJSON_AddNumberToObject(j, "seconds", s->seconds);
    char *text = xjson_print(j, false);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(j);
}

/* The summary (JSON on stdout, or a line on stderr) and the error; returns the exit status. */
static int copy_report(const struct copy_cmd *cc, const struct copy_summary *s, int rc,
                       const char *error)
{
    if (cc->json) {
        copy_print_json(&cc->o, s, rc, error);
    } else if (rc == 0) {
        char bytes[32];
        human_bytes(bytes, sizeof(bytes), (double)s->bytes_copied);
        char foreign[64] = "";
        if (s->foreign_layers_skipped > 0)
            snprintf(foreign, sizeof(foreign), ", %llu foreign layers left out",
                     (unsigned long long)s->foreign_layers_skipped);
        fprintf(stderr,
                "copied %llu blobs (%s), mounted %llu, skipped %llu, %llu manifests%s in %.1f s\n",
                (unsigned long long)s->blobs_copied, bytes, (unsigned long long)s->blobs_mounted,
                (unsigned long long)s->blobs_skipped, (unsigned long long)s->manifests_pushed,
                foreign, s->seconds);
    }
    if (rc < 0)
        fprintf(stderr, "ferry copy: %s\n", error ? error : ferry_strerror(rc));
    return rc < 0 ? 1 : 0;
}

int cmd_copy(int argc, char **argv)
{
    struct copy_cmd cc;
    struct copy_summary s;
    char *error = NULL;

    memset(&cc, 0, sizeof(cc));
    cc.progress = -1;
    creds_init(&cc.src_creds, "--src-creds");
    creds_init(&cc.dest_creds, "--dest-creds");
    int rc = copy_parse(&cc, argc, argv);
    if (rc != OPTIONS_RUN)
        goto out;
    if (copy_credentials(&cc) < 0) {
        rc = OPTIONS_EXIT_USAGE;
        goto out;
    }
    rc = copy_run(&cc.o, &s, &error);
    rc = copy_report(&cc, &s, rc, error);
out:
    free(error);
    creds_release(&cc.src_creds);
    creds_release(&cc.dest_creds);
    return rc;
}
