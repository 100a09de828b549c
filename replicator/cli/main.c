/*
 * ferry: the command line. Each subcommand parses its flags here and hands a
 * plain options struct to the module that does the work.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <time.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cmd_copy.h"
#include "common/digest.h"
#include "registry/dockerconfig.h"
#include "common/errors.h"
#include "common/human.h"
#include "journal/journal.h"
#include "registry/listing.h"
#include "config/config.h"
#include "daemon/serve.h"
#include "cli/status.h"
#include "cli/sync.h"
#include "replication/verify.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/secret.h"
#include "common/xalloc.h"

#define FERRY_VERSION "0.1.0"

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
          "Run 'ferry COMMAND --help' for a command's flags.\n",
          out);
}

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

/* Split "user:password" in place; a missing password comes from nowhere else. */
static int split_creds(const char *text, char **user, char **pass)
{
    const char *colon = strchr(text, ':');
    if (colon == NULL || colon == text)
        return FERRY_EINVAL;
    *user = xstrndup(text, (size_t)(colon - text));
    *pass = xstrdup(colon + 1);
    return 0;
}

/* Credentials for `registry`: flag, then environment, then the Docker config. */
static int resolve_creds(const char *flag, const char *env_prefix, const char *registry,
                         const char *authfile, char **user, char **pass)
{
    *user = NULL;
    *pass = NULL;
    if (flag != NULL) {
        if (split_creds(flag, user, pass) < 0) {
            fprintf(stderr, "ferry: credentials must be USER:PASSWORD\n");
            return FERRY_EINVAL;
        }
        return 0;
    }
    char name[64];
    snprintf(name, sizeof(name), "%s_USERNAME", env_prefix);
    const char *u = getenv(name);
    snprintf(name, sizeof(name), "%s_PASSWORD", env_prefix);
    if (u != NULL && *u != '\0' && getenv(name) != NULL) {
        *user = xstrdup(u);
        *pass = config_secret_take_env(name);
        return 0;
    }
    char *path = authfile != NULL ? xstrdup(authfile) : dockerconfig_default_path();
    if (path == NULL)
        return 0;
    char *err = NULL;
    int rc = dockerconfig_lookup(path, registry, user, pass, &err);
    if (rc < 0 && rc != FERRY_ENOTFOUND) {
        fprintf(stderr, "ferry: %s\n", err ? err : ferry_strerror(rc));
        free(err);
        free(path);
        return rc;
    }
    free(err);
    free(path);
    return 0;
}

/*
 * One registry's credentials as the command line gives them: --X-creds
 * USER:PASSWORD, --X-creds-file FILE or --X-creds-stdin, at most one.
 */
struct cli_creds {
    const char *flag; /* "--src-creds", for messages and the other flags' names */
    char *arg;        /* --X-creds: its value, inside argv */
    const char *file; /* --X-creds-file */
    bool from_stdin;  /* --X-creds-stdin */
    int given;        /* how many of the three flags were given */
    char *text;       /* USER:PASSWORD once settled (a copy); NULL: none given */
};

/*
 * One line of stdin, without its line end, into a fresh *line. Read a byte
 * at a time, so that nothing past the line is consumed (a second line may be
 * the other registry's) and no copy lingers in a stdio buffer; echo is off
 * on a terminal.
 */
static int cli_read_line(const char *prompt, char **line)
{
    char *buf = xmalloc(CONFIG_MAX_SECRET_BYTES + 1);
    size_t len = 0;
    struct termios saved;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    char ch = 0;
    int rc = 0;

    if (tty) {
        struct termios quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        fprintf(stderr, "%s: ", prompt);
    }
    for (;;) {
        ssize_t n = read(STDIN_FILENO, &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0) {
            if (len == 0)
                rc = FERRY_EINVAL;
            break;
        }
        if (ch == '\n')
            break;
        if (len == CONFIG_MAX_SECRET_BYTES) {
            rc = FERRY_ETOOBIG;
            break;
        }
        buf[len++] = ch;
    }
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fputc('\n', stderr);
    }
    while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
        len--;
    buf[len] = '\0';
    if (rc == 0)
        *line = xstrdup(buf);
    secret_wipe(buf, CONFIG_MAX_SECRET_BYTES + 1);
    secret_wipe(&ch, sizeof(ch));
    free(buf);
    return rc;
}

/*
 * Settle c->text from whichever flag was given: the file's first line (its
 * permissions checked as password_file's are) or a line of stdin. Returns
 * 0, or -1 after printing why.
 */
static int cli_creds_load(const char *cmd, struct cli_creds *c)
{
    if (c->given > 1) {
        fprintf(stderr, "ferry %s: give one of %s, %s-file and %s-stdin\n", cmd, c->flag, c->flag,
                c->flag);
        return -1;
    }
    if (c->arg != NULL) {
        /*
         * Keep a copy and overwrite the password in argv, which
         * /proc/PID/cmdline (and so ps) shows to every user. It was there
         * from exec until now, hence the warning.
         */
        c->text = xstrdup(c->arg);
        char *colon = strchr(c->arg, ':');
        if (colon != NULL && colon[1] != '\0') {
            log_warn("%s puts the password in the process list; use %s-file FILE or %s-stdin",
                     c->flag, c->flag, c->flag);
            secret_wipe_str(colon + 1);
        }
    } else if (c->file != NULL) {
        char *err = NULL;
        int rc = config_secret_read_file(c->file, &c->text, &err);
        if (rc < 0) {
            fprintf(stderr, "ferry %s: %s-file: %s\n", cmd, c->flag, err);
            free(err);
            return -1;
        }
    } else if (c->from_stdin) {
        char prompt[64];
        snprintf(prompt, sizeof(prompt), "USER:PASSWORD (%s-stdin)", c->flag);
        int rc = cli_read_line(prompt, &c->text);
        if (rc < 0) {
            fprintf(stderr, "ferry %s: %s-stdin: %s\n", cmd, c->flag,
                    rc == FERRY_EINVAL    ? "no line on stdin"
                    : rc == FERRY_ETOOBIG ? "the line is too long"
                                          : strerror(-rc));
            return -1;
        }
    }
    return 0;
}

static void cli_creds_release(struct cli_creds *c)
{
    if (c->text != NULL) {
        secret_free(c->text);
        c->text = NULL;
    }
}

static int parse_size(const char *text, uint64_t *out)
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

static void print_json(const struct copy_options *o, const struct copy_summary *s, int rc,
                       const char *error)
{
    static const char *const methods[] = {"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"};
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
    cJSON *req = cJSON_AddObjectToObject(j, "requests");
    cJSON_AddNumberToObject(req, "total", (double)s->requests);
    for (int i = 0; i < 6; i++)
        cJSON_AddNumberToObject(req, methods[i], (double)s->requests_by_method[i]);
    cJSON_AddNumberToObject(j, "retries", (double)s->retries);
    cJSON_AddNumberToObject(j, "seconds", s->seconds);
    char *text = xjson_print(j, false);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(j);
}

enum cli_flag {
    OPT_PLATFORM = 1000,
    OPT_NO_REFERRERS,
    OPT_JSON,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
    OPT_SRC_CREDS,
    OPT_DEST_CREDS,
    OPT_AUTHFILE,
    OPT_PLAIN_HTTP,
    OPT_TLS,
    OPT_SRC_TLS,
    OPT_DEST_TLS,
    OPT_SRC_PLAIN,
    OPT_DEST_PLAIN,
    OPT_INSECURE,
    OPT_CA_FILE,
    OPT_CERT,
    OPT_KEY,
    OPT_UPLOAD_MODE,
    OPT_CHUNK_SIZE,
    OPT_CHUNK_MAX,
    OPT_MOUNT_FROM,
    OPT_RETRIES,
    OPT_CACHE_DIR,
    OPT_NO_CACHE,
    OPT_HELP,
    OPT_CREDS,
    OPT_PAGE_SIZE,
    OPT_CHECK_CONFIG,
    OPT_SRC_CREDS_FILE,
    OPT_SRC_CREDS_STDIN,
    OPT_DEST_CREDS_FILE,
    OPT_DEST_CREDS_STDIN,
    OPT_CREDS_FILE,
    OPT_CREDS_STDIN,
};

/* Flags every command that talks to registries takes. */
// clang-format off
#define COMMON_LONGOPTS                                                 \
    {"insecure", no_argument, NULL, OPT_INSECURE},                      \
    {"ca-file", required_argument, NULL, OPT_CA_FILE},                  \
    {"cert", required_argument, NULL, OPT_CERT},                        \
    {"key", required_argument, NULL, OPT_KEY},                          \
    {"retries", required_argument, NULL, OPT_RETRIES},                  \
    {"verbose", no_argument, NULL, 'v'},                                \
    {"help", no_argument, NULL, OPT_HELP}
// clang-format on

struct common_flags {
    struct http_client_options http;
    int retries;
    int verbose;
};

/*
 * Take one of the COMMON_LONGOPTS. Returns 1 when it was one, 0 when it was
 * not, or -1 after printing why its value is wrong.
 */
static int common_flag(const char *cmd, int c, const char *arg, struct common_flags *f)
{
    switch (c) {
    case OPT_INSECURE:
        f->http.insecure = true;
        return 1;
    case OPT_CA_FILE:
        f->http.ca_file = arg;
        return 1;
    case OPT_CERT:
        f->http.cert_file = arg;
        return 1;
    case OPT_KEY:
        f->http.key_file = arg;
        return 1;
    case OPT_RETRIES:
        f->retries = atoi(arg);
        if (f->retries < 1 || f->retries > 100) {
            fprintf(stderr, "ferry %s: --retries must be 1..100\n", cmd);
            return -1;
        }
        return 1;
    case 'v':
        f->verbose++;
        return 1;
    default:
        return 0;
    }
}

static void common_apply(const struct common_flags *f)
{
    if (f->verbose > 0)
        log_threshold = f->verbose > 1 ? FERRY_LOG_DEBUG : FERRY_LOG_INFO;
}

static int cmd_copy(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"jobs", required_argument, NULL, 'j'},
        {"platform", required_argument, NULL, OPT_PLATFORM},
        {"no-referrers", no_argument, NULL, OPT_NO_REFERRERS},
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
    struct copy_options o;
    struct cli_creds src_creds = {.flag = "--src-creds"};
    struct cli_creds dest_creds = {.flag = "--dest-creds"};
    const char *authfile = NULL;
    struct common_flags common;
    bool json = false;
    int progress = -1;
    int c;

    memset(&o, 0, sizeof(o));
    memset(&common, 0, sizeof(common));
    optind = 1;
    while ((c = getopt_long(argc, argv, "j:v", longopts, NULL)) != -1) {
        uint64_t size = 0;
        switch (c) {
        case 'j':
            o.jobs = atoi(optarg);
            if (o.jobs < 1 || o.jobs > 256) {
                fprintf(stderr, "ferry copy: --jobs must be 1..256\n");
                return 2;
            }
            break;
        case OPT_PLATFORM:
            if (strchr(optarg, '/') == NULL || strlen(optarg) > 100) {
                fprintf(stderr, "ferry copy: --platform must be OS/ARCH[/VARIANT]\n");
                return 2;
            }
            o.platform = optarg;
            break;
        case OPT_NO_REFERRERS:
            o.no_referrers = true;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_PROGRESS:
            progress = 1;
            break;
        case OPT_NO_PROGRESS:
            progress = 0;
            break;
        case OPT_SRC_CREDS:
            src_creds.arg = optarg;
            src_creds.given++;
            break;
        case OPT_SRC_CREDS_FILE:
            src_creds.file = optarg;
            src_creds.given++;
            break;
        case OPT_SRC_CREDS_STDIN:
            src_creds.from_stdin = true;
            src_creds.given++;
            break;
        case OPT_DEST_CREDS:
            dest_creds.arg = optarg;
            dest_creds.given++;
            break;
        case OPT_DEST_CREDS_FILE:
            dest_creds.file = optarg;
            dest_creds.given++;
            break;
        case OPT_DEST_CREDS_STDIN:
            dest_creds.from_stdin = true;
            dest_creds.given++;
            break;
        case OPT_AUTHFILE:
            authfile = optarg;
            break;
        case OPT_PLAIN_HTTP:
            o.src_registry.plain_http = o.dst_registry.plain_http = true;
            break;
        case OPT_TLS:
            o.src_registry.force_tls = o.dst_registry.force_tls = true;
            break;
        case OPT_SRC_TLS:
            o.src_registry.force_tls = true;
            break;
        case OPT_DEST_TLS:
            o.dst_registry.force_tls = true;
            break;
        case OPT_SRC_PLAIN:
            o.src_registry.plain_http = true;
            break;
        case OPT_DEST_PLAIN:
            o.dst_registry.plain_http = true;
            break;
        case OPT_UPLOAD_MODE:
            if (strcmp(optarg, "auto") == 0)
                o.upload.mode = REGISTRY_UPLOAD_AUTO;
            else if (strcmp(optarg, "monolithic") == 0)
                o.upload.mode = REGISTRY_UPLOAD_MONOLITHIC;
            else if (strcmp(optarg, "chunked") == 0)
                o.upload.mode = REGISTRY_UPLOAD_CHUNKED;
            else {
                fprintf(stderr, "ferry copy: --upload-mode is auto, monolithic or chunked\n");
                return 2;
            }
            break;
        case OPT_CHUNK_SIZE:
        case OPT_CHUNK_MAX:
            if (parse_size(optarg, &size) < 0 || size == 0) {
                fprintf(stderr, "ferry copy: %s wants a size in bytes (K, M, G allowed)\n",
                        c == OPT_CHUNK_SIZE ? "--chunk-size" : "--chunk-max");
                return 2;
            }
            if (c == OPT_CHUNK_SIZE) {
                o.upload.chunk_min = size;
                o.upload.mode = REGISTRY_UPLOAD_CHUNKED;
            } else {
                o.upload.chunk_max = size;
            }
            break;
        case OPT_MOUNT_FROM:
            if (!reference_repository_valid(optarg)) {
                fprintf(stderr, "ferry copy: --mount-from is not a repository name\n");
                return 2;
            }
            o.mount_from = optarg;
            break;
        case OPT_CACHE_DIR:
            o.cache_dir = optarg;
            break;
        case OPT_NO_CACHE:
            o.cache_dir = "";
            break;
        case OPT_HELP:
            usage_copy(stdout);
            return 0;
        default: {
            int taken = common_flag("copy", c, optarg, &common);
            if (taken < 0)
                return 2;
            if (taken == 0) {
                fprintf(stderr, "ferry copy: see 'ferry copy --help'\n");
                return 2;
            }
            break;
        }
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "ferry copy: want SRC and DST (see 'ferry copy --help')\n");
        return 2;
    }
    o.src = argv[optind];
    o.dst = argv[optind + 1];
    common_apply(&common);
    o.http = common.http;
    o.progress = progress < 0 ? isatty(STDERR_FILENO) && !json : progress == 1;
    o.src_registry.max_attempts = o.dst_registry.max_attempts = common.retries;

    /* SRC's line of stdin comes before DST's. */
    int rc = cli_creds_load("copy", &src_creds);
    if (rc == 0)
        rc = cli_creds_load("copy", &dest_creds);
    if (rc < 0) {
        cli_creds_release(&src_creds);
        cli_creds_release(&dest_creds);
        return 2;
    }

    /* Credentials are looked up per host; the parse errors show up in copy_run. */
    struct reference sref;
    struct reference dref;
    char *su = NULL, *sp = NULL, *du = NULL, *dp = NULL;
    memset(&sref, 0, sizeof(sref));
    memset(&dref, 0, sizeof(dref));
    if (reference_parse(&sref, o.src, NULL) == 0)
        rc = resolve_creds(src_creds.text, "FERRY_SRC", sref.registry, authfile, &su, &sp);
    if (rc == 0 && reference_parse(&dref, o.dst, NULL) == 0)
        rc = resolve_creds(dest_creds.text, "FERRY_DEST", dref.registry, authfile, &du, &dp);
    reference_release(&sref);
    reference_release(&dref);
    cli_creds_release(&src_creds);
    cli_creds_release(&dest_creds);
    if (rc < 0) {
        free(su);
        free(du);
        secret_free(sp);
        secret_free(dp);
        return 2;
    }
    o.src_registry.username = su;
    o.src_registry.password = sp;
    o.dst_registry.username = du;
    o.dst_registry.password = dp;

    struct copy_summary s;
    char *error = NULL;
    rc = copy_run(&o, &s, &error);
    if (json) {
        print_json(&o, &s, rc, error);
    } else if (rc == 0) {
        char bytes[32];
        human_bytes(bytes, sizeof(bytes), (double)s.bytes_copied);
        fprintf(stderr,
                "copied %llu blobs (%s), mounted %llu, skipped %llu, %llu manifests in %.1f s\n",
                (unsigned long long)s.blobs_copied, bytes, (unsigned long long)s.blobs_mounted,
                (unsigned long long)s.blobs_skipped, (unsigned long long)s.manifests_pushed,
                s.seconds);
    }
    if (rc < 0)
        fprintf(stderr, "ferry copy: %s\n", error ? error : ferry_strerror(rc));
    free(error);
    free(su);
    secret_free(sp);
    free(du);
    secret_free(dp);
    return rc < 0 ? 1 : 0;
}

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

/* `ferry ls` (tags of a repository) and `ferry catalog` (repositories). */
static int cmd_list(int argc, char **argv)
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
    const char *cmd = argv[0];
    bool tags = strcmp(cmd, "ls") == 0;
    struct listing_options o;
    struct common_flags common;
    struct cli_creds creds = {.flag = "--creds"};
    const char *authfile = NULL;
    bool json = false;
    int c;

    memset(&o, 0, sizeof(o));
    memset(&common, 0, sizeof(common));
    optind = 1;
    while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_JSON:
            json = true;
            break;
        case OPT_CREDS:
            creds.arg = optarg;
            creds.given++;
            break;
        case OPT_CREDS_FILE:
            creds.file = optarg;
            creds.given++;
            break;
        case OPT_CREDS_STDIN:
            creds.from_stdin = true;
            creds.given++;
            break;
        case OPT_AUTHFILE:
            authfile = optarg;
            break;
        case OPT_PLAIN_HTTP:
            o.reg.plain_http = true;
            break;
        case OPT_TLS:
            o.reg.force_tls = true;
            break;
        case OPT_PAGE_SIZE:
            o.reg.list_page_size = atoi(optarg);
            if (o.reg.list_page_size < 1 || o.reg.list_page_size > 10000) {
                fprintf(stderr, "ferry %s: --page-size must be 1..10000\n", cmd);
                return 2;
            }
            break;
        case OPT_HELP:
            usage_list(stdout, cmd);
            return 0;
        default: {
            int taken = common_flag(cmd, c, optarg, &common);
            if (taken < 0)
                return 2;
            if (taken == 0) {
                fprintf(stderr, "ferry %s: see 'ferry %s --help'\n", cmd, cmd);
                return 2;
            }
            break;
        }
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "ferry %s: want %s (see 'ferry %s --help')\n", cmd,
                tags ? "HOST[:PORT]/REPO" : "HOST[:PORT]", cmd);
        return 2;
    }
    common_apply(&common);
    o.http = common.http;
    o.reg.max_attempts = common.retries;

    struct reference ref;
    char *text = tags ? xstrdup(argv[optind]) : xasprintf("%s/x", argv[optind]);
    char *err = NULL;
    memset(&ref, 0, sizeof(ref));
    int rc = reference_parse(&ref, text, &err);
    free(text);
    if (rc < 0 || ref.tag != NULL || ref.digest != NULL) {
        fprintf(stderr, "ferry %s: %s: %s\n", cmd, argv[optind],
                err ? err : "name a repository, without a tag or digest");
        free(err);
        reference_release(&ref);
        return 2;
    }
    o.registry = ref.registry;
    o.repository = tags ? ref.repository : NULL;
    char *user = NULL;
    char *pass = NULL;
    rc = cli_creds_load(cmd, &creds);
    if (rc == 0)
        rc = resolve_creds(creds.text, "FERRY", ref.registry, authfile, &user, &pass);
    cli_creds_release(&creds);
    if (rc < 0) {
        reference_release(&ref);
        return 2;
    }
    o.reg.username = user;
    o.reg.password = pass;

    char **items = NULL;
    size_t n = 0;
    char *error = NULL;
    rc = listing_run(&o, &items, &n, &error);
    if (rc < 0) {
        fprintf(stderr, "ferry %s: %s\n", cmd, error ? error : ferry_strerror(rc));
    } else if (json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(items[i]));
        char *out = xjson_print(arr, false);
        printf("%s\n", out);
        free(out);
        cJSON_Delete(arr);
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", items[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
    free(error);
    free(user);
    secret_free(pass);
    reference_release(&ref);
    return rc < 0 ? 1 : 0;
}

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

/* Flags of the commands that work from a config file: serve, sync, verify. */
struct config_cmd_flags {
    const char *config;
    bool json;
    bool check;
};

/*
 * Parse `-c FILE`, `-v`, `--help` and, where allowed, `--json` and
 * `--check-config`. Returns 0 to go on, or the exit status to return now
 * (0 after --help, 2 on a usage error).
 */
static int config_cmd_parse(const char *cmd, int argc, char **argv, void (*usage)(FILE *),
                            bool allow_json, bool allow_check, struct config_cmd_flags *f)
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
            return -1;
        } else {
            fprintf(stderr, "ferry %s: see 'ferry %s --help'\n", cmd, cmd);
            return 2;
        }
    }
    if (f->config == NULL || optind != argc) {
        fprintf(stderr, "ferry %s: want -c FILE (see 'ferry %s --help')\n", cmd, cmd);
        return 2;
    }
    if (verbose > 0)
        log_threshold = verbose > 1 ? FERRY_LOG_DEBUG : FERRY_LOG_INFO;
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    struct config_cmd_flags f;
    int rc = config_cmd_parse("serve", argc, argv, usage_serve, false, true, &f);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    rc = serve_run(f.config, f.check);
    /* The codes config_load() gives a config that is wrong, as verify does. */
    if (rc == FERRY_EINVAL || rc == FERRY_EPARSE || rc == FERRY_ETOOBIG)
        return 2;
    return rc < 0 ? 1 : 0;
}

static void usage_sync(FILE *out)
{
    fputs("usage: ferry sync -c FILE [--json] [-v]\n"
          "\n"
          "One reconcile of every rule: polls every source once (backfill), replicates\n"
          "every journal entry not done yet to every destination its rules name, and\n"
          "prints one line per job (complete, superseded or FAILED with its reason).\n"
          "Exit status: 0 when everything is complete, 1 when something FAILED, 2 on a\n"
          "usage or configuration error.\n",
          out);
}

static int cmd_sync(int argc, char **argv)
{
    struct config_cmd_flags f;
    int rc = config_cmd_parse("sync", argc, argv, usage_sync, true, false, &f);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    rc = sync_run(f.config, f.json);
    return rc < 0 ? 2 : rc;
}

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

static int cmd_verify(int argc, char **argv)
{
    struct config_cmd_flags f;
    int rc = config_cmd_parse("verify", argc, argv, usage_verify, true, false, &f);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    rc = verify_run(f.config, f.json);
    if (rc == FERRY_EINVAL)
        return 2;
    return rc == 0 ? 0 : 1;
}

static void usage_retry(FILE *out)
{
    fputs("usage: ferry retry -c FILE (--dest D | --all-failed)\n"
          "\n"
          "Marks FAILED replication jobs (of destination D, or all of them) PENDING again;\n"
          "the next 'ferry sync', or 'ferry serve' when it starts, runs them with their\n"
          "original journal seq, so a retried job never moves a tag past a newer entry.\n"
          "When a daemon holds the journal, it is asked through its API (POST /v1/retry)\n"
          "and requeues them at once. Prints how many jobs were requeued.\n"
          "\n"
          "  -c, --config FILE   the configuration\n"
          "      --dest D        the FAILED jobs of destination registry D\n"
          "      --all-failed    the FAILED jobs of every destination\n"
          "\n"
          "Exit status: 0 when requeued (none is no error), 1 when the journal or the\n"
          "daemon could not be reached, 2 on a usage or configuration error.\n",
          out);
}

struct retry_scan {
    const char *dest;
    struct journal_job *jobs;
    size_t n;
};

static int retry_collect(const struct journal_job *job, void *arg)
{
    struct retry_scan *r = arg;
    if (job->state != JOURNAL_JOB_FAILED ||
        (r->dest != NULL && strcmp(job->destination, r->dest) != 0))
        return 0;
    r->jobs = xrealloc(r->jobs, (r->n + 1) * sizeof(*r->jobs));
    struct journal_job *copy = &r->jobs[r->n++];
    *copy = *job;
    copy->destination = xstrdup(job->destination);
    copy->repository = xstrdup(job->repository);
    copy->digest = xstrdup(job->digest);
    copy->last_error = xstrdup(job->last_error);
    copy->tags = job->n_tags ? xcalloc(job->n_tags, sizeof(char *)) : NULL;
    for (size_t i = 0; i < job->n_tags; i++)
        copy->tags[i] = xstrdup(job->tags[i]);
    return 0;
}

static int cmd_retry(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"dest", required_argument, NULL, 'd'},
        {"all-failed", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    struct retry_scan r = {0};
    bool all = false;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
        if (c == 'c')
            config = optarg;
        else if (c == 'd')
            r.dest = optarg;
        else if (c == 'a')
            all = true;
        else if (c == OPT_HELP) {
            usage_retry(stdout);
            return 0;
        } else {
            fprintf(stderr, "ferry retry: see 'ferry retry --help'\n");
            return 2;
        }
    }
    if (config == NULL || optind != argc || (r.dest == NULL) == !all) {
        fprintf(stderr, "ferry retry: want -c FILE and one of --dest D or --all-failed\n");
        return 2;
    }
    struct config *cfg = NULL;
    char *err = NULL;
    if (config_load(config, &cfg, &err) < 0) {
        fprintf(stderr, "ferry retry: %s\n", err);
        free(err);
        return 2;
    }
    if (r.dest != NULL && config_registry_find(cfg, r.dest) == NULL) {
        fprintf(stderr, "ferry retry: unknown destination '%s'\n", r.dest);
        config_free(cfg);
        return 2;
    }
    char *dir = xasprintf("%s/journal", cfg->data_dir);
    struct journal *j = NULL;
    struct journal_options jopts = {0};
    int rc = journal_open(dir, &jopts, &j, &err);
    if (rc == -EBUSY) {
        /* The daemon holds the journal: ask it, through its API. */
        size_t n = 0;
        char *aerr = NULL;
        rc = status_retry(cfg, r.dest, &n, &aerr);
        if (rc == 0)
            printf("requeued %zu failed job%s (by the running daemon)\n", n, n == 1 ? "" : "s");
        else
            fprintf(stderr, "ferry retry: the daemon holds the journal and its API said: %s\n",
                    aerr != NULL ? aerr : "nothing");
        free(aerr);
    } else if (rc < 0) {
        fprintf(stderr, "ferry retry: %s\n", err ? err : ferry_strerror(rc));
    } else {
        rc = journal_job_scan(j, retry_collect, &r);
        for (size_t i = 0; rc >= 0 && i < r.n; i++) {
            r.jobs[i].state = JOURNAL_JOB_PENDING;
            r.jobs[i].attempts = 0;
            rc = journal_job_put(j, &r.jobs[i]);
        }
        if (rc >= 0)
            printf("requeued %zu failed job%s\n", r.n, r.n == 1 ? "" : "s");
        else
            fprintf(stderr, "ferry retry: %s\n", ferry_strerror(rc));
        journal_close(j);
    }
    for (size_t i = 0; i < r.n; i++)
        journal_job_release(&r.jobs[i]);
    free(r.jobs);
    free(err);
    free(dir);
    config_free(cfg);
    return rc < 0 ? 1 : 0;
}

static void usage_journal(FILE *out)
{
    fputs("usage: ferry journal -c FILE COMMAND [ARGS]\n"
          "\n"
          "  ls [--after SEQ] [--limit N] [--json]   entries after SEQ (default: all)\n"
          "  show SEQ                                one entry as JSON\n"
          "  append --source S --repo R --digest D [--tag T] [--media-type M] [--delete]\n"
          "                                          add an entry by hand (through the\n"
          "                                          daemon when it holds the journal)\n"
          "  stats                                   counts and seqs\n"
          "  jobs [--state S] [--dest D] [--json]    job status records (S: PENDING,\n"
          "                                          IN_PROGRESS, COMPLETE, FAILED, SUPERSEDED)\n"
          "\n"
          "ls, show, stats and jobs work while 'ferry serve' runs (read-only access).\n"
          "With --json, ls prints one object per line: seq, event_id, source, action,\n"
          "repository, tag, digest, media_type, received_at, ignored (why the entry\n"
          "changed nothing: the source disagreed; null otherwise).\n",
          out);
}

static cJSON *journal_entry_json(const struct journal_entry *e)
{
    cJSON *j = cJSON_CreateObject();
    char when[40];
    time_t secs = (time_t)(e->received_unix_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    char stamp[48];
    snprintf(stamp, sizeof(stamp), "%s.%03dZ", when, (int)(e->received_unix_ms % 1000));
    cJSON_AddNumberToObject(j, "seq", (double)e->seq);
    cJSON_AddStringToObject(j, "event_id", e->event_id);
    cJSON_AddStringToObject(j, "source", e->source);
    cJSON_AddStringToObject(j, "action", e->action == JOURNAL_DELETE ? "delete" : "push");
    cJSON_AddStringToObject(j, "repository", e->repository);
    if (e->tag != NULL)
        cJSON_AddStringToObject(j, "tag", e->tag);
    else
        cJSON_AddNullToObject(j, "tag");
    if (e->digest != NULL)
        cJSON_AddStringToObject(j, "digest", e->digest);
    else
        cJSON_AddNullToObject(j, "digest");
    if (e->media_type != NULL)
        cJSON_AddStringToObject(j, "media_type", e->media_type);
    else
        cJSON_AddNullToObject(j, "media_type");
    cJSON_AddStringToObject(j, "received_at", stamp);
    if (e->ignored != NULL)
        cJSON_AddStringToObject(j, "ignored", e->ignored);
    else
        cJSON_AddNullToObject(j, "ignored");
    return j;
}

struct journal_ls {
    bool json;
    size_t shown;
};

static int journal_ls_one(const struct journal_entry *e, void *arg)
{
    struct journal_ls *ls = arg;
    if (ls->json) {
        cJSON *j = journal_entry_json(e);
        char *text = xjson_print(j, false);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
    } else {
        if (ls->shown == 0)
            printf("%-8s %-6s %-12s %-30s %-20s %s\n", "SEQ", "ACTION", "SOURCE", "REPOSITORY",
                   "TAG", "DIGEST");
        printf("%-8llu %-6s %-12s %-30s %-20s %s%s%s\n", (unsigned long long)e->seq,
               e->action == JOURNAL_DELETE ? "delete" : "push", e->source, e->repository,
               e->tag ? e->tag : "-", e->digest ? e->digest : "-", e->ignored ? "  " : "",
               e->ignored ? e->ignored : "");
    }
    ls->shown++;
    return 0;
}

/* Hand an entry to the running daemon through its own webhook (generic form). */
static int journal_append_via_daemon(const struct config *cfg, const struct journal_event *ev)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *events = cJSON_AddArrayToObject(doc, "events");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", ev->event_id);
    cJSON_AddStringToObject(e, "action", ev->action == JOURNAL_DELETE ? "delete" : "push");
    cJSON_AddStringToObject(e, "repository", ev->repository);
    if (ev->digest != NULL)
        cJSON_AddStringToObject(e, "digest", ev->digest);
    if (ev->tag != NULL)
        cJSON_AddStringToObject(e, "tag", ev->tag);
    if (ev->media_type != NULL)
        cJSON_AddStringToObject(e, "mediaType", ev->media_type);
    cJSON_AddItemToArray(events, e);
    char *body = xjson_print(doc, false);
    cJSON_Delete(doc);

    char *url = xasprintf("http://%s/v1/events/%s", cfg->listen, ev->source);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    char *auth = NULL;
    if (cfg->webhook_token != NULL) {
        auth = xasprintf("Authorization: Bearer %s", cfg->webhook_token);
        headers = curl_slist_append(headers, auth);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    int rc = 0;
    if (cc != CURLE_OK) {
        fprintf(stderr,
                "ferry journal append: the journal is in use and the daemon at %s did not "
                "answer (%s)\n",
                cfg->listen, curl_easy_strerror(cc));
        rc = FERRY_ECONNECT;
    } else if (status != 200) {
        fprintf(stderr, "ferry journal append: the daemon answered HTTP %ld\n", status);
        rc = FERRY_EHTTP;
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    secret_free(auth);
    free(url);
    free(body);
    return rc;
}

static int journal_do_append(const struct config *cfg, const char *dir, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"source", required_argument, NULL, 's'},
        {"repo", required_argument, NULL, 'r'},
        {"digest", required_argument, NULL, 'd'},
        {"tag", required_argument, NULL, 't'},
        {"media-type", required_argument, NULL, 'm'},
        {"delete", no_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    struct journal_event ev;
    int c;
    memset(&ev, 0, sizeof(ev));
    ev.action = JOURNAL_PUSH;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            ev.source = optarg;
            break;
        case 'r':
            ev.repository = optarg;
            break;
        case 'd':
            ev.digest = optarg;
            break;
        case 't':
            ev.tag = optarg;
            break;
        case 'm':
            ev.media_type = optarg;
            break;
        case 'D':
            ev.action = JOURNAL_DELETE;
            break;
        default:
            return 2;
        }
    }
    if (ev.source == NULL || ev.repository == NULL || (ev.digest == NULL && ev.tag == NULL) ||
        (ev.action == JOURNAL_PUSH && ev.digest == NULL)) {
        fprintf(stderr, "ferry journal append: want --source, --repo and --digest (or --delete "
                        "with --tag)\n");
        return 2;
    }
    if (config_registry_find(cfg, ev.source) == NULL) {
        fprintf(stderr, "ferry journal append: unknown source '%s'\n", ev.source);
        return 2;
    }
    if (!reference_repository_valid(ev.repository) || (ev.digest && !digest_valid(ev.digest)) ||
        (ev.tag && !reference_tag_valid(ev.tag))) {
        fprintf(stderr, "ferry journal append: invalid repository, digest or tag\n");
        return 2;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char *id = xasprintf("manual:%lld.%09ld:%d", (long long)now.tv_sec, now.tv_nsec, (int)getpid());
    ev.event_id = id;

    struct journal *j = NULL;
    char *err = NULL;
    struct journal_options jopts = {0};
    int rc = journal_open(dir, &jopts, &j, &err);
    if (rc == -EBUSY) {
        rc = journal_append_via_daemon(cfg, &ev);
        if (rc == 0)
            printf("appended through the daemon\n");
    } else if (rc < 0) {
        fprintf(stderr, "ferry journal append: %s\n", err ? err : ferry_strerror(rc));
    } else {
        uint64_t seq = 0;
        free(err);
        err = NULL;
        rc = journal_append(j, &ev, 1, &seq, &err);
        if (rc < 0)
            fprintf(stderr, "ferry journal append: %s\n", err ? err : ferry_strerror(rc));
        else
            printf("appended seq %llu\n", (unsigned long long)seq);
        journal_close(j);
    }
    free(err);
    free(id);
    return rc < 0 ? 1 : 0;
}

struct journal_jobs_ls {
    const char *state;
    const char *dest;
    bool json;
};

static int journal_jobs_one(const struct journal_job *job, void *arg)
{
    struct journal_jobs_ls *ls = arg;
    const char *state = journal_job_state_name(job->state);
    if ((ls->state != NULL && strcasecmp(ls->state, state) != 0) ||
        (ls->dest != NULL && strcmp(ls->dest, job->destination) != 0))
        return 0;
    if (!ls->json) {
        printf("%-11s %s %s@%s%s%s attempts=%u%s%s\n", state, job->destination, job->repository,
               job->digest, job->n_tags > 0 ? " tag " : "", job->n_tags > 0 ? job->tags[0] : "",
               job->attempts, job->last_error != NULL ? ": " : "",
               job->last_error != NULL ? job->last_error : "");
        return 0;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "destination", job->destination);
    cJSON_AddStringToObject(o, "repository", job->repository);
    cJSON_AddStringToObject(o, "digest", job->digest);
    cJSON *tags = cJSON_AddArrayToObject(o, "tags");
    for (size_t k = 0; k < job->n_tags; k++)
        cJSON_AddItemToArray(tags, cJSON_CreateString(job->tags[k]));
    cJSON_AddStringToObject(o, "state", state);
    cJSON_AddNumberToObject(o, "attempts", job->attempts);
    if (job->last_error != NULL)
        cJSON_AddStringToObject(o, "last_error", job->last_error);
    else
        cJSON_AddNullToObject(o, "last_error");
    cJSON_AddNumberToObject(o, "seq", (double)job->seq);
    cJSON_AddNumberToObject(o, "bytes", (double)job->bytes);
    cJSON_AddNumberToObject(o, "updated_unix_ms", (double)job->updated_unix_ms);
    char *text = xjson_print(o, false);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
    return 0;
}

/* `ferry journal jobs`: the job status records, for scripts and post-mortems. */
static int journal_do_jobs(struct journal *j, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"state", required_argument, NULL, 's'},
        {"dest", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    struct journal_jobs_ls ls = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 's')
            ls.state = optarg;
        else if (c == 'd')
            ls.dest = optarg;
        else if (c == 'j')
            ls.json = true;
        else
            return 2;
    }
    return journal_job_scan(j, journal_jobs_one, &ls) < 0 ? 1 : 0;
}

static int cmd_journal(int argc, char **argv)
{
    const char *config = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_journal(stdout);
            return 0;
        } else
            break;
    }
    if (config == NULL || i >= argc) {
        fprintf(stderr, "ferry journal: want -c FILE and a command (see 'ferry journal --help')\n");
        return 2;
    }
    const char *sub = argv[i];
    struct config *cfg = NULL;
    char *err = NULL;
    if (config_load(config, &cfg, &err) < 0) {
        fprintf(stderr, "ferry journal: %s\n", err);
        free(err);
        return 2;
    }
    char *dir = xasprintf("%s/journal", cfg->data_dir);
    int rc = 0;
    if (strcmp(sub, "append") == 0) {
        rc = journal_do_append(cfg, dir, argc - i, argv + i);
        goto out;
    }
    if (strcmp(sub, "ls") != 0 && strcmp(sub, "show") != 0 && strcmp(sub, "stats") != 0 &&
        strcmp(sub, "jobs") != 0) {
        fprintf(stderr, "ferry journal: unknown command '%s'\n", sub);
        rc = 2;
        goto out;
    }
    struct journal *j = NULL;
    struct journal_options jopts = {.read_only = true};
    if (journal_open(dir, &jopts, &j, &err) < 0) {
        fprintf(stderr, "ferry journal: %s\n", err);
        rc = 1;
        goto out;
    }
    if (strcmp(sub, "ls") == 0) {
        static const struct option longopts[] = {
            {"after", required_argument, NULL, 'a'},
            {"limit", required_argument, NULL, 'l'},
            {"json", no_argument, NULL, 'j'},
            {NULL, 0, NULL, 0},
        };
        struct journal_ls ls = {0};
        uint64_t after = 0;
        size_t limit = 0;
        int c;
        optind = 1;
        while ((c = getopt_long(argc - i, argv + i, "", longopts, NULL)) != -1) {
            if (c == 'a')
                after = strtoull(optarg, NULL, 10);
            else if (c == 'l')
                limit = strtoull(optarg, NULL, 10);
            else if (c == 'j')
                ls.json = true;
            else
                rc = 2;
        }
        if (rc == 0 && journal_scan(j, after, limit, journal_ls_one, &ls) < 0)
            rc = 1;
    } else if (strcmp(sub, "jobs") == 0) {
        rc = journal_do_jobs(j, argc - i, argv + i);
    } else if (strcmp(sub, "show") == 0) {
        struct journal_entry e;
        if (i + 1 >= argc) {
            fprintf(stderr, "ferry journal show: want SEQ\n");
            rc = 2;
        } else if (journal_get(j, strtoull(argv[i + 1], NULL, 10), &e) < 0) {
            fprintf(stderr, "ferry journal show: no entry %s\n", argv[i + 1]);
            rc = 1;
        } else {
            cJSON *json = journal_entry_json(&e);
            char *text = xjson_print(json, true);
            printf("%s\n", text);
            free(text);
            cJSON_Delete(json);
            journal_entry_release(&e);
        }
    } else {
        struct journal_stats st;
        if (journal_get_stats(j, &st) < 0) {
            rc = 1;
        } else {
            printf("entries %llu\nfirst_seq %llu\nlast_seq %llu\ndedup_keys %llu\n",
                   (unsigned long long)st.entries, (unsigned long long)st.first_seq,
                   (unsigned long long)st.last_seq, (unsigned long long)st.dedup_keys);
        }
    }
    journal_close(j);
out:
    free(err);
    free(dir);
    config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    xalloc_init();
    /*
     * Transfers allocate 128-256 KiB buffers by the hundred: served from the
     * heap and reused, not mapped and unmapped (and their pages zeroed) for
     * each blob, which cost a tenth of a sync's CPU. The heap then holds at
     * most the buffers of the transfers running at once, whatever the number
     * or size of the blobs (copy_large checks the peak).
     */
    mallopt(M_MMAP_THRESHOLD, 8 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
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
    if (argc < 2) {
        usage_main(stderr);
        return 2;
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
    if (strcmp(cmd, "copy") == 0)
        return cmd_copy(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "sync") == 0)
        return cmd_sync(argc - 1, argv + 1);
    if (strcmp(cmd, "retry") == 0)
        return cmd_retry(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return status_main(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(cmd, "journal") == 0)
        return cmd_journal(argc - 1, argv + 1);
    if (strcmp(cmd, "ls") == 0 || strcmp(cmd, "catalog") == 0)
        return cmd_list(argc - 1, argv + 1);
    fprintf(stderr, "ferry: unknown command '%s' (see 'ferry --help')\n", cmd);
    return 2;
}
