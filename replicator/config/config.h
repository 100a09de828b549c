/*
 * config: Ferry's configuration file (YAML, read with libyaml), loaded once
 * into plain structs that the rest of the replicator reads but never
 * changes. Secrets (registry passwords, the webhook token) are resolved at
 * load time from the environment or from files, so that a loaded config is
 * complete; they never appear in an error message or a log line.
 *
 * The file, with every key and its default:
 *
 *   data_dir: ./ferry-data          # relative to the config file's directory
 *   listen: 127.0.0.1:8780          # host:port or [v6]:port, port 1..65535
 *   webhook_token_env: NAME         # or webhook_token_file: PATH (first line,
 *                                   # trimmed); neither: no token
 *   api_token_env: NAME             # or api_token_file: PATH, or api_token: SECRET
 *                                   # (inline); neither: the API needs no token
 *   metrics_token_env: NAME         # or metrics_token_file: PATH, or metrics_token:
 *                                   # SECRET; /metrics alone (the api_token too)
 *   server_names: [ferry.example.com]  # Host names the listener answers to besides
 *                                   # its listen address (checked without api_token)
 *   tls:                            # the listener speaks HTTPS; both required
 *     cert_file: PATH               # PEM certificate (chain)
 *     key_file: PATH                # PEM private key, unencrypted
 *   max_connections_per_ip: 64      # connections one peer address may hold; 1..1024
 *   request_body_budget: 64MiB      # request bodies held at once, all connections;
 *                                   # webhook_max_body .. 4 GiB
 *   webhook_max_body: 1MiB          # a size, 1 byte .. 64 MiB
 *   poll_interval: 30s              # a duration; 0 polls only at start
 *   poll_concurrency: 16            # 1..64
 *   reconcile_interval: 6h          # every tag of a `webhooks: true` source is
 *                                   # HEADed once per interval, spread over it;
 *                                   # 1s .. 30d
 *   retention: 168h                 # a duration above 0
 *   spool_max: 10GiB                # blobs nobody uses are evicted past this;
 *                                   # a size, 64 MiB .. 16 TiB
 *   engine_window: 4096             # journal entries the engine holds in memory
 *                                   # at once; 1..1000000
 *   retry:                          # when a failed job is tried again
 *     attempts: 5                   # tries in all, the first included; 1..100
 *     base: 1s                      # first backoff; a duration above 0
 *     max: 30s                      # longest backoff; at least base
 *   docker_config: PATH             # the Docker config.json whose auths,
 *                                   # credHelpers and credsStore give the
 *                                   # credentials of a registry that names
 *                                   # none; default $DOCKER_CONFIG/config.json
 *                                   # or ~/.docker/config.json
 *   circuit:                        # when a failing registry is left alone
 *     failures: 5                   # failures in a row that open it; 1..1000
 *     open_for: 30s                 # how long it stays open; above 0
 *   cluster:                        # absent: one node on its own journal
 *     servers: [nats://h:4222]      # required; nats:// or tls://, no
 *                                   # credentials in the URL; at most 32
 *     name: NODE                    # this node; default the host's short name;
 *                                   # [A-Za-z0-9_.-], no '.' first, last or twice
 *     user: USER                    # with password, password_env or
 *     password_env: NAME            # password_file; or token, token_env,
 *     password_file: PATH           # token_file; or creds_file (a NATS
 *     password: SECRET              # .creds file); at most one login
 *     token_env: NAME
 *     token_file: PATH
 *     token: SECRET
 *     creds_file: PATH
 *     tls: false                    # require TLS (ca_file or cert_file imply it)
 *     ca_file: PATH                 # PEM roots of the servers' certificates
 *     cert_file: PATH               # client certificate, with key_file
 *     key_file: PATH
 *     stream: FERRY_JOURNAL         # the journal's stream; [A-Za-z0-9_-], 64
 *     bucket_prefix: ferry          # the buckets' and fences' names start so
 *     replicas: 3                   # of the stream and the buckets; 1..5
 *     duplicate_window: 2m          # the stream drops a repeated event id
 *                                   # this long; 1s..24h
 *     ack_wait: 30s                 # a node's entries go to another this long
 *                                   # after it stops answering; 3s..1h
 *     timeout: 5s                   # of each request to the servers; 100ms..60s
 *   registries:                     # name -> registry
 *     NAME:
 *       url: https://host[:port]    # required; http:// means plain HTTP
 *       username: USER              # with exactly one of password_env,
 *       password_env: NAME          # password_file (first line, trimmed) or
 *       password_file: PATH         # password (inline, warned about when the
 *       password: SECRET            # file is readable by group or others);
 *                                   # a password_file is read again when it
 *                                   # changes and on a 401
 *       credential_helper: NAME     # or: docker-credential-NAME gives them
 *                                   # (ecr-login, gcloud, ...), asked again
 *                                   # before they expire and on a 401
 *       create_repository: [ARGV]   # run (no shell) when a push finds no
 *                                   # repository; {repo} and {registry} are
 *                                   # replaced; then the push is tried again
 *       command_timeout: 30s        # the helper's and the hook's time limit
 *       insecure: false             # skip TLS certificate verification
 *       ca_file: PATH               # extra CA certificates (PEM)
 *       cert_file: PATH             # client certificate, with key_file
 *       key_file: PATH
 *       max_concurrency: 0          # concurrent requests; 0 = Ferry's default
 *       poll: true                  # list it in the poller
 *       webhooks: false             # it notifies Ferry of its pushes: a poll
 *                                   # round lists its repositories and HEADs
 *                                   # only tags the journal does not know;
 *                                   # reconcile_interval catches missed moves
 *       repositories: [a/b]         # to poll when it has no _catalog
 *       upload:                     # how blobs are pushed to it
 *         mode: auto                # auto, monolithic or chunked
 *         chunk_min: 0              # bytes per PATCH, sizes up to 1 GiB; 0 is
 *         chunk_max: 0              # Ferry's default; max >= min when both set
 *       rate_limit: 0               # bytes per second, a size; 0 = unlimited
 *       stall_timeout: 20s          # a request that moves no byte this long
 *                                   # fails (1s..1h): how fast a partition shows
 *   rules:
 *     - name: NAME                  # required, unique
 *       source: REGISTRY            # required, a name from registries
 *       repositories: ["**"]        # globs (glob.h), "!" excludes
 *       tags: ["*"]                 # globs, "!" excludes
 *       deletes: false              # replicate deletions
 *       referrers: true             # copy signatures, SBOMs, attestations
 *       overwrite: true             # move tags that already exist
 *       platforms: []               # "os/arch" or "os/arch/variant" of
 *                                   # [a-z0-9._-]; empty or absent: all
 *       foreign_layers: skip        # skip or copy non-distributable layers
 *       destinations:               # required, at least one
 *         - registry: REGISTRY      # required, a name from registries
 *           repository: "{repo}"    # template: {repo} full name, {name} its
 *                                   # last path element
 *
 * Names of registries and rules are 1 to 64 of [A-Za-z0-9._-], starting with
 * a letter or digit. Every relative path is taken relative to the config
 * file's directory. Durations are a whole number followed by ms, s, m, h or
 * d ("0" alone is allowed too); sizes are a whole number of bytes, optionally
 * followed by B, K or KiB, M or MiB, G or GiB (all powers of 1024). Booleans
 * are true or false, unquoted. Unknown keys, duplicate keys, aliases (*x) and
 * more than one YAML document are errors.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest config file config_load() reads. */
#define CONFIG_MAX_BYTES (1024 * 1024)
/* Largest password or token file it reads the first line of. */
#define CONFIG_MAX_SECRET_BYTES (64 * 1024)

#define CONFIG_DEFAULT_DATA_DIR         "./ferry-data"
#define CONFIG_DEFAULT_LISTEN           "127.0.0.1:8780"
#define CONFIG_DEFAULT_WEBHOOK_MAX_BODY ((size_t)1024 * 1024)
#define CONFIG_MAX_WEBHOOK_MAX_BODY     ((size_t)64 * 1024 * 1024)
#define CONFIG_DEFAULT_PER_IP           64
#define CONFIG_MAX_PER_IP               1024
#define CONFIG_DEFAULT_BODY_BUDGET      ((size_t)64 * 1024 * 1024)
#define CONFIG_MAX_BODY_BUDGET          ((size_t)4 * 1024 * 1024 * 1024)
/* Largest certificate or key file of tls: config_load() reads. */
#define CONFIG_MAX_PEM_BYTES            (1024 * 1024)
#define CONFIG_DEFAULT_POLL_INTERVAL_MS ((uint64_t)30 * 1000)
#define CONFIG_DEFAULT_RECONCILE_MS     ((uint64_t)6 * 3600 * 1000)
#define CONFIG_MIN_RECONCILE_MS         ((uint64_t)1000)
#define CONFIG_MAX_RECONCILE_MS         ((uint64_t)30 * 24 * 3600 * 1000)
/* Repositories a round has in flight per source (each lists its tags, then
 * HEADs them). A no-op sync of 100,000 tags in 10,000 repositories against
 * Distribution on 2 cores took 135 s at 4 (the registry at 1.6 cores), 100
 * to 107 s at 8 or 16, 119 s at 32. The source client's connection cap (20
 * by default) bounds the load on the registry whatever this is. */
#define CONFIG_DEFAULT_POLL_CONCURRENCY      16
#define CONFIG_DEFAULT_STALL_TIMEOUT_MS      ((uint64_t)20 * 1000)
#define CONFIG_MIN_STALL_TIMEOUT_MS          ((uint64_t)1000)
#define CONFIG_MAX_STALL_TIMEOUT_MS          ((uint64_t)3600 * 1000)
#define CONFIG_DEFAULT_COMMAND_TIMEOUT_MS    ((uint64_t)30 * 1000)
#define CONFIG_MIN_COMMAND_TIMEOUT_MS        ((uint64_t)100)
#define CONFIG_MAX_COMMAND_TIMEOUT_MS        ((uint64_t)600 * 1000)
#define CONFIG_MAX_HOOK_ARGS                 64
#define CONFIG_DEFAULT_SPOOL_MAX             ((uint64_t)10 * 1024 * 1024 * 1024)
#define CONFIG_MIN_SPOOL_MAX                 ((uint64_t)64 * 1024 * 1024)
#define CONFIG_MAX_SPOOL_MAX                 ((uint64_t)16 * 1024 * 1024 * 1024 * 1024)
#define CONFIG_MAX_POLL_CONCURRENCY          64
#define CONFIG_DEFAULT_RETENTION_MS          ((uint64_t)7 * 24 * 3600 * 1000)
#define CONFIG_DEFAULT_REGISTRY_CONCURRENCY  4 /* jobs or requests at once per registry */
#define CONFIG_MAX_REGISTRY_CONCURRENCY      1024
#define CONFIG_DEFAULT_ENGINE_WINDOW         4096
#define CONFIG_MAX_ENGINE_WINDOW             1000000
#define CONFIG_DEFAULT_RETRY_ATTEMPTS        5
#define CONFIG_MAX_RETRY_ATTEMPTS            100
#define CONFIG_DEFAULT_RETRY_BASE_MS         ((uint64_t)1000)
#define CONFIG_DEFAULT_RETRY_MAX_MS          ((uint64_t)30 * 1000)
#define CONFIG_DEFAULT_CIRCUIT_FAILURES      5
#define CONFIG_MAX_CIRCUIT_FAILURES          1000
#define CONFIG_DEFAULT_CIRCUIT_OPEN_MS       ((uint64_t)30 * 1000)
#define CONFIG_DEFAULT_CLUSTER_STREAM        "FERRY_JOURNAL"
#define CONFIG_DEFAULT_CLUSTER_PREFIX        "ferry"
#define CONFIG_DEFAULT_CLUSTER_REPLICAS      3
#define CONFIG_MAX_CLUSTER_REPLICAS          5
#define CONFIG_MAX_CLUSTER_SERVERS           32
#define CONFIG_DEFAULT_CLUSTER_DUPLICATES_MS ((uint64_t)2 * 60 * 1000)
#define CONFIG_MAX_CLUSTER_DUPLICATES_MS     ((uint64_t)24 * 3600 * 1000)
#define CONFIG_DEFAULT_CLUSTER_ACK_WAIT_MS   ((uint64_t)30 * 1000)
#define CONFIG_MIN_CLUSTER_ACK_WAIT_MS       ((uint64_t)3000)
#define CONFIG_MAX_CLUSTER_ACK_WAIT_MS       ((uint64_t)3600 * 1000)
#define CONFIG_DEFAULT_CLUSTER_TIMEOUT_MS    ((uint64_t)5 * 1000)
#define CONFIG_MAX_CLUSTER_TIMEOUT_MS        ((uint64_t)60 * 1000)
/* Largest upload chunk_min or chunk_max (the cap registry.c puts on OCI-Chunk-Min-Length). */
#define CONFIG_MAX_UPLOAD_CHUNK ((uint64_t)1024 * 1024 * 1024)
/* A registry's poll: */
#define CONFIG_DEFAULT_REGISTRY_POLL true
/* A rule's keys left out of the file. */
#define CONFIG_DEFAULT_RULE_REPOSITORIES "**" /* the one glob of repositories: */
#define CONFIG_DEFAULT_RULE_TAGS         "*"  /* the one glob of tags: */
#define CONFIG_DEFAULT_RULE_DELETES      false
#define CONFIG_DEFAULT_RULE_REFERRERS    true
#define CONFIG_DEFAULT_RULE_OVERWRITE    true
#define CONFIG_DEFAULT_RULE_FOREIGN      false /* foreign_layers: skip */
/* A destination's repository: template. */
#define CONFIG_DEFAULT_DESTINATION_REPOSITORY "{repo}"

/* How blobs are pushed to a registry; the values are registry.h's registry_upload_mode. */
enum config_upload_mode {
    CONFIG_UPLOAD_AUTO = 0,       /* Ferry chooses */
    CONFIG_UPLOAD_MONOLITHIC = 1, /* POST, then one PUT with the whole blob */
    CONFIG_UPLOAD_CHUNKED = 2,    /* POST, PATCHes of chunk_min..chunk_max bytes, PUT */
};
#define CONFIG_DEFAULT_UPLOAD_MODE CONFIG_UPLOAD_AUTO

struct config_registry {
    char *name;
    char *url;           /* as written, without a trailing '/' */
    char *host;          /* "host[:port]" or "[v6][:port]", taken from url */
    bool plain_http;     /* url is http:// */
    char *username;      /* NULL when the config names no credentials */
    char *password;      /* resolved secret, or NULL exactly when username is */
    bool insecure;       /* skip TLS verification */
    char *ca_file;       /* NULL or a readable path */
    char *cert_file;     /* NULL or a readable path; set exactly when key_file is */
    char *key_file;      /* NULL or a readable path */
    int max_concurrency; /* 0 = default */
    bool poll;           /* default true */
    bool webhooks;       /* it sends Ferry its notifications; default false */
    char **repositories; /* for registries without _catalog; valid names */
    size_t n_repositories;
    int upload_mode;           /* an enum config_upload_mode; default CONFIG_UPLOAD_AUTO */
    uint64_t upload_chunk_min; /* bytes; 0 (default): Ferry's default */
    uint64_t upload_chunk_max; /* bytes; 0 (default): Ferry's default; else >= a set chunk_min */
    uint64_t rate_limit;       /* bytes per second; 0 (default): unlimited */
    uint64_t stall_timeout_ms; /* default CONFIG_DEFAULT_STALL_TIMEOUT_MS */
    char *password_file;       /* the password's file, read again when it changes; or NULL */
    char *credential_helper;   /* docker-credential-<this> gives the credentials; or NULL */
    char **create_repository;  /* argv run when a push finds no repository; NULL and 0: none */
    size_t n_create_repository;
    uint64_t command_timeout_ms; /* the helper's and the hook's time; default 30 s */
    char *docker_config;         /* the config's docker_config (NULL: Docker's own path), for a
                                    registry that names no credentials */
};

struct config_destination {
    char *registry;   /* a name from config.registries */
    char *repository; /* template; default "{repo}" */
};

struct config_rule {
    char *name;
    char *source;        /* a name from config.registries */
    char **repositories; /* globs, at least one without '!'; default {"**"} */
    size_t n_repositories;
    char **tags; /* globs, at least one without '!'; default {"*"} */
    size_t n_tags;
    bool deletes;                            /* default false */
    bool referrers;                          /* default true */
    bool overwrite;                          /* default true */
    struct config_destination *destinations; /* at least one */
    size_t n_destinations;
    char **platforms; /* "os/arch" or "os/arch/variant"; NULL and 0 (default): all */
    size_t n_platforms;
    bool foreign_layers; /* copy non-distributable layers too; default false (skip them) */
};

/*
 * cluster: N equal nodes sharing a NATS JetStream (DESIGN.md, "Running as a
 * cluster"); absent, Ferry is one node on its own RocksDB journal.
 */
struct config_cluster {
    char **servers; /* nats:// or tls:// URLs, at least one */
    size_t n_servers;
    char *name;                   /* this node's name; default: the host's name */
    char *user;                   /* NULL, or with password */
    char *password;               /* resolved secret or NULL */
    char *token;                  /* resolved secret or NULL; exclusive with user */
    char *creds_file;             /* a NATS .creds file; exclusive with user and token */
    char *ca_file;                /* PEM roots of the servers' certificates; implies TLS */
    char *cert_file, *key_file;   /* a client certificate, both or neither; implies TLS */
    bool tls;                     /* require TLS */
    char *stream;                 /* the journal's stream; default CONFIG_DEFAULT_CLUSTER_STREAM */
    char *bucket_prefix;          /* default CONFIG_DEFAULT_CLUSTER_PREFIX */
    int replicas;                 /* of the stream and the buckets, 1..5; default 3 */
    uint64_t duplicate_window_ms; /* default CONFIG_DEFAULT_CLUSTER_DUPLICATES_MS */
    uint64_t ack_wait_ms;         /* default CONFIG_DEFAULT_CLUSTER_ACK_WAIT_MS */
    uint64_t timeout_ms;          /* of each request; default CONFIG_DEFAULT_CLUSTER_TIMEOUT_MS */
};

struct config {
    char *path;          /* the file as given to config_load() */
    char *dir;           /* its directory ("." for a bare file name) */
    char *data_dir;      /* absolute, or relative to the working directory */
    char *listen;        /* "host:port" or "[v6]:port"; see config_split_listen() */
    char *webhook_token; /* resolved secret or NULL */
    char *api_token;     /* resolved secret or NULL: the HTTP API needs no token */
    char *metrics_token; /* resolved secret or NULL: /metrics takes the api_token alone */
    char **server_names; /* Host names besides the listen address; NULL and 0: none */
    size_t n_server_names;
    char *tls_cert_file; /* NULL, or with tls_key_file: the listener speaks HTTPS */
    char *tls_key_file;
    char *tls_cert_pem;         /* tls_cert_file's contents, checked to hold a certificate */
    char *tls_key_pem;          /* tls_key_file's (a secret), checked to match the certificate */
    int max_connections_per_ip; /* default CONFIG_DEFAULT_PER_IP */
    size_t request_body_budget; /* default CONFIG_DEFAULT_BODY_BUDGET, >= webhook_max_body */
    size_t webhook_max_body;
    uint64_t poll_interval_ms; /* 0: poll only at start */
    int poll_concurrency;
    uint64_t reconcile_ms; /* default CONFIG_DEFAULT_RECONCILE_MS */
    uint64_t retention_ms;
    uint64_t spool_max_bytes; /* default CONFIG_DEFAULT_SPOOL_MAX */
    int engine_window;        /* entries in memory; default CONFIG_DEFAULT_ENGINE_WINDOW */
    int retry_attempts;       /* tries per job, the first included; default 5, 1..100 */
    uint64_t retry_base_ms;   /* default 1000, above 0 */
    uint64_t retry_max_ms;    /* default 30000, >= retry_base_ms */
    int circuit_failures;     /* default 5, 1..1000 */
    uint64_t circuit_open_ms; /* default 30000, above 0 */
    char *docker_config;      /* config.json for registries without credentials; NULL: Docker's */
    struct config_registry *registries;
    size_t n_registries;
    struct config_rule *rules; /* in file order */
    size_t n_rules;
    struct config_cluster *cluster; /* NULL: one node */
};

/**
 * Read and check the config file at `path` (see the top of this header) and
 * resolve its secrets: the *_env keys with config_secret_take_env() (the
 * variable leaves the environment; a reload finds the value kept), the
 * *_file keys with config_secret_read_file(). Logs a warning when the file
 * holds an inline password and is readable by group or others, and when a
 * secret file is. A secret that starts with "change-me" (the placeholders
 * deploy/k8s ships) is refused.
 *
 * Returns 0 and sets *out to a config the caller frees with config_free().
 * Otherwise *out is NULL and, when `err` is not NULL, *err receives one line
 * the caller frees, "FILE:LINE: KEY: problem" for a problem inside the file
 * (KEY is a path such as "registries.eu-west.url" or
 * "rules[0].destinations[1].registry"; it is left out for YAML syntax
 * errors), never holding a secret:
 *  - FERRY_EPARSE for a YAML syntax error or invalid UTF-8;
 *  - FERRY_EINVAL for anything else wrong inside the file: unknown or
 *    duplicate keys, wrong types, bad values, unknown registries, duplicate
 *    names, missing keys, an environment variable that is not set or empty,
 *    a password, token or certificate file that cannot be read, a secret
 *    that is the shipped placeholder ("... is the shipped placeholder; set
 *    a real secret"); also when
 *    `path` or `out` is NULL;
 *  - FERRY_ETOOBIG when the file is larger than CONFIG_MAX_BYTES;
 *  - a negative errno when the file cannot be read ("FILE: problem").
 */
FERRY_MUST_CHECK int config_load(const char *path, struct config **out, char **err);

/**
 * Read the secret on the first line of the file at `path`, trimmed of
 * surrounding white space, into a fresh *secret the caller wipes
 * with secret_free(); at most CONFIG_MAX_SECRET_BYTES are read, and
 * every other copy of the bytes is wiped. Logs one warning naming the file
 * when group or others may read it. Returns 0; otherwise *secret is NULL and
 * *err a line the caller frees, naming the file but never its contents: a
 * negative errno when it cannot be read, FERRY_ETOOBIG for a longer line,
 * FERRY_EINVAL for an empty line or a NUL byte.
 */
FERRY_MUST_CHECK int config_secret_read_file(const char *path, char **secret, char **err);

/**
 * The value of environment variable `name` in a fresh string the caller
 * wipes and frees, taken out of the environment: the variable is unset and
 * its bytes in the environment block overwritten, so that child processes
 * and /proc/PID/environ do not carry it. The value is kept for the life of
 * the process, so asking again once the variable is gone (a config reload)
 * gives the same value; a variable set again since wins. Returns NULL when
 * the variable is neither set nor kept. Not thread-safe: call it from the
 * thread that loads configs.
 */
char *config_secret_take_env(const char *name);

/**
 * Make c->data_dir (0700, with its missing parents) or, when it exists and
 * group or others may use it, change it to 0700 with a warning saying so.
 * Returns 0 when it is a directory afterwards (a mode that cannot be
 * changed is only warned about), or fs_mkdir_p()'s error.
 */
FERRY_MUST_CHECK int config_data_dir_prepare(const struct config *c);

/** Free `c` and everything it holds, wiping the secrets first; NULL is fine. */
void config_free(struct config *c);

/** The registry named `name`, or NULL when there is none (or either is NULL). */
const struct config_registry *config_registry_find(const struct config *c, const char *name);

/**
 * True when `rule` selects `repository` (glob_select() over its
 * repositories) and, unless `tag` is NULL, `tag` (over its tags). The
 * source registry is not looked at.
 */
bool config_rule_selects(const struct config_rule *rule, const char *repository, const char *tag);

/** True when some rule whose source is `source` selects `repository`. */
bool config_repository_selected(const struct config *c, const char *source, const char *repository);

/** True when some rule whose source is `source` selects both `repository` and `tag`. */
bool config_tag_selected(const struct config *c, const char *source, const char *repository,
                         const char *tag);

/**
 * Does some rule send what `source` says of `repository` (and `tag`, NULL for
 * a digest alone) to registry `dest`, into its repository `dst_repo`? With
 * `is_delete`, only rules that propagate deletes count.
 */
bool config_sends(const struct config *c, const char *source, const char *repository,
                  const char *tag, bool is_delete, const char *dest, const char *dst_repo);

/**
 * Parse a duration: a whole number followed by "ms", "s", "m", "h" or "d",
 * or "0" alone ("500ms", "30s", "5m", "1h", "7d"). No sign, space, fraction
 * or compound form ("1h30m"). Returns 0 and sets *ms; FERRY_EPARSE for
 * anything else, FERRY_ETOOBIG when the result passes UINT64_MAX
 * milliseconds, FERRY_EINVAL for a NULL argument. *ms is untouched on failure.
 */
FERRY_MUST_CHECK int config_parse_duration(const char *text, uint64_t *ms);

/**
 * Parse a size: a whole number of bytes, optionally followed by "B", "K" or
 * "KiB", "M" or "MiB", "G" or "GiB" (powers of 1024: "1M" is 1048576). No
 * sign, space or fraction. Returns 0 and sets *bytes; FERRY_EPARSE for
 * anything else, FERRY_ETOOBIG when the result passes SIZE_MAX,
 * FERRY_EINVAL for a NULL argument. *bytes is untouched on failure.
 */
FERRY_MUST_CHECK int config_parse_size(const char *text, size_t *bytes);

/**
 * Split a listen address, "host:port" or "[v6]:port", into a fresh *host
 * without brackets (the caller frees it) and *port. The host is non-empty,
 * of [A-Za-z0-9.-] or, in brackets, [0-9A-Fa-f:.]; the port is 1..65535.
 * Returns 0, or FERRY_EPARSE (both outputs untouched); FERRY_EINVAL for a
 * NULL `text`. `host` may be NULL when only checking.
 */
FERRY_MUST_CHECK int config_split_listen(const char *text, char **host, int *port);

/**
 * The repository that destination `d` gives to source repository
 * `repository`: its template with every "{repo}" replaced by `repository`
 * and every "{name}" by its last path element ("mirror/{name}" makes
 * "team/app" into "mirror/app"). Returns a fresh string the caller frees, or
 * NULL when either argument is NULL, `repository` is not a valid repository
 * name, or the result is not one (reference_repository_valid()).
 */
char *config_destination_repository(const struct config_destination *d, const char *repository);

#endif
