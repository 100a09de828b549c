#include "registry/regerror.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/errors.h"
#include "common/xalloc.h"

/*
 * Length of the valid UTF-8 sequence at `s` (1 to 4), or 0 when the bytes
 * there are not one. Overlong forms, surrogates and code points above
 * U+10FFFF are invalid, as RFC 3629 says.
 */
static size_t regerror_utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return n;
}

/*
 * A copy of `s` fit for one log line: see regerror_parse(). Registries put
 * arbitrary text here, and it ends up in Ferry's logs and exit messages.
 */
static char *regerror_sanitize(const char *s)
{
    const unsigned char *in = (const unsigned char *)s;
    char *out = xmalloc(REGERROR_MAX_TEXT + 1);
    size_t n = 0;

    while (*in != '\0') {
        size_t step = 1;
        char replacement = 0;
        if (*in < 0x20 || *in == 0x7f) {
            replacement = ' ';
        } else if (*in >= 0x80) {
            step = regerror_utf8_len(in);
            if (step == 0) {
                step = 1;
                replacement = '?';
            } else if (in[0] == 0xc2 && in[1] <= 0x9f) {
                replacement = ' ';
            } else if (in[0] == 0xe2 && in[1] == 0x80 && (in[2] == 0xa8 || in[2] == 0xa9)) {
                replacement = ' ';
            }
        }
        size_t width = replacement ? 1 : step;
        if (n + width > REGERROR_MAX_TEXT)
            break;
        if (replacement) {
            out[n++] = replacement;
        } else {
            memcpy(out + n, in, step);
            n += step;
        }
        in += step;
    }
    out[n] = '\0';
    return out;
}

/* Parse the body and return its root, or NULL; *rc says why not. */
static cJSON *regerror_load(const char *body, size_t len, int *rc)
{
    *rc = FERRY_EPARSE;
    if (body == NULL || len == 0)
        return NULL;
    if (len > REGERROR_MAX_BODY) {
        *rc = FERRY_ETOOBIG;
        return NULL;
    }
    /* cJSON reads C strings; a NUL inside the body would hide what follows. */
    if (memchr(body, '\0', len) != NULL)
        return NULL;
    char *copy = xstrndup(body, len);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(copy, &end, false);
    if (root != NULL) {
        end += strspn(end, " \t\r\n");
        if (*end != '\0') {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    free(copy);
    if (root != NULL)
        *rc = 0;
    return root;
}

/* The "errors" array and its first error's code, or false when the shape is wrong. */
static bool regerror_first(const cJSON *root, const cJSON **errors, const cJSON **first)
{
    if (!cJSON_IsObject(root))
        return false;
    *errors = cJSON_GetObjectItemCaseSensitive(root, "errors");
    if (!cJSON_IsArray(*errors) || cJSON_GetArraySize(*errors) < 1)
        return false;
    *first = cJSON_GetArrayItem(*errors, 0);
    if (!cJSON_IsObject(*first))
        return false;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(*first, "code");
    return cJSON_IsString(code) && code->valuestring[0] != '\0';
}

int regerror_parse(const char *body, size_t len, char **code, char **message)
{
    const cJSON *errors = NULL, *first = NULL;
    int rc;

    if (code != NULL)
        *code = NULL;
    if (message != NULL)
        *message = NULL;
    cJSON *root = regerror_load(body, len, &rc);
    if (root == NULL)
        return rc;
    if (!regerror_first(root, &errors, &first)) {
        rc = FERRY_EPARSE;
        goto out;
    }
    if (code != NULL)
        *code = regerror_sanitize(cJSON_GetObjectItemCaseSensitive(first, "code")->valuestring);
    if (message != NULL) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(first, "message");
        *message = regerror_sanitize(cJSON_IsString(text) ? text->valuestring : "");
    }
    rc = 0;

out:
    cJSON_Delete(root);
    return rc;
}

char *regerror_summary(const char *body, size_t len)
{
    const cJSON *errors = NULL, *first = NULL;
    char *summary = NULL;
    int rc;

    cJSON *root = regerror_load(body, len, &rc);
    if (root == NULL)
        return NULL;
    if (!regerror_first(root, &errors, &first))
        goto out;
    char *code = regerror_sanitize(cJSON_GetObjectItemCaseSensitive(first, "code")->valuestring);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(first, "message");
    char *message = regerror_sanitize(cJSON_IsString(text) ? text->valuestring : "");
    int more = cJSON_GetArraySize(errors) - 1;
    char *tail = more > 0 ? xasprintf(" (and %d more)", more) : xstrdup("");
    if (message[0] != '\0')
        summary = xasprintf("%s: %s%s", code, message, tail);
    else
        summary = xasprintf("%s%s", code, tail);
    free(code);
    free(message);
    free(tail);

out:
    cJSON_Delete(root);
    return summary;
}

/* ---- refusals said plainly ---- */

/* What a refusal is about, from the most specific reading down. */
enum regerror_kind {
    REGERROR_NONE = 0,
    REGERROR_RATE,         /* 429 / TOOMANYREQUESTS */
    REGERROR_CATALOG,      /* the registry lists no repositories to these credentials */
    REGERROR_QUOTA,        /* a quota or limit on what the registry holds */
    REGERROR_PROJECT,      /* the project (Harbor, Google) does not exist */
    REGERROR_REPO,         /* a push to a repository that does not exist (ECR) */
    REGERROR_UNAUTHORIZED, /* 401 / UNAUTHORIZED */
    REGERROR_DENIED,       /* 403 / DENIED */
};

/* What the request asked, read from its method and path. */
struct regerror_ask {
    char *what; /* "push to HOST/REPO", "the catalog of HOST", ... */
    char *repo; /* the repository, or NULL when the path names none */
    bool push;
    bool delete;
    bool catalog;
};

/* Case-insensitive: does `hay` hold `needle`? */
static bool regerror_has(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay != '\0'; hay++) {
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    }
    return false;
}

static bool regerror_code_is(const char *code, const char *want)
{
    return code != NULL && strcmp(code, want) == 0;
}

/* The last occurrence of `needle` in `path`, or NULL. */
static const char *regerror_last(const char *path, const char *needle)
{
    const char *last = NULL;
    for (const char *p = strstr(path, needle); p != NULL; p = strstr(p + 1, needle))
        last = p;
    return last;
}

/*
 * The repository of a /v2/REPO/{manifests,blobs,tags/list,referrers}/...
 * path (the marker that comes last wins: a repository may hold those words
 * as components), or NULL.
 */
static char *regerror_path_repo(const char *path, bool *tags)
{
    static const char *const markers[] = {"/manifests/", "/blobs/", "/tags/list", "/referrers/"};
    const char *cut = NULL;
    *tags = false;
    if (strncmp(path, "/v2/", 4) != 0)
        return NULL;
    for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++) {
        const char *m = regerror_last(path + 3, markers[i]);
        if (m != NULL && (cut == NULL || m > cut)) {
            cut = m;
            *tags = i == 2;
        }
    }
    if (cut == NULL || cut <= path + 4)
        return NULL;
    return xstrndup(path + 4, (size_t)(cut - (path + 4)));
}

static void regerror_ask_read(const struct regerror_request *rq, struct regerror_ask *ask)
{
    const char *m = rq->method;
    bool tags = false;
    memset(ask, 0, sizeof(*ask));
    ask->repo = regerror_path_repo(rq->path, &tags);
    ask->push = strcmp(m, "PUT") == 0 || strcmp(m, "POST") == 0 || strcmp(m, "PATCH") == 0;
    ask->delete = strcmp(m, "DELETE") == 0;
    ask->catalog = strcmp(rq->path, "/v2/_catalog") == 0;
    if (ask->catalog)
        ask->what = xasprintf("listing the catalog of %s", rq->registry);
    else if (ask->repo == NULL && strcmp(rq->path, "/v2/") == 0)
        ask->what = xasprintf("access to %s", rq->registry);
    else if (ask->repo == NULL)
        ask->what = xasprintf("request %s %s%s", m, rq->registry, rq->path);
    else if (ask->push)
        ask->what = xasprintf("push to %s/%s", rq->registry, ask->repo);
    else if (ask->delete)
        ask->what = xasprintf("delete at %s/%s", rq->registry, ask->repo);
    else if (tags)
        ask->what = xasprintf("tag listing of %s/%s", rq->registry, ask->repo);
    else
        ask->what = xasprintf("pull from %s/%s", rq->registry, ask->repo);
}

static enum regerror_kind regerror_classify(const struct regerror_request *rq,
                                            const struct regerror_ask *ask, const char *code,
                                            const char *message)
{
    long st = rq->status;
    if (st < 400 || st > 499)
        return REGERROR_NONE;
    if (st == 429 || regerror_code_is(code, "TOOMANYREQUESTS"))
        return REGERROR_RATE;
    if (ask->catalog && (st == 401 || st == 403 || st == 404 || st == 405))
        return REGERROR_CATALOG;
    if (regerror_has(message, "quota") || regerror_has(message, "LimitExceeded") ||
        regerror_has(message, "maximum allowed number") ||
        (regerror_has(message, "exceed") && regerror_has(message, "limit")))
        return REGERROR_QUOTA;
    if (regerror_has(message, "project") &&
        (regerror_has(message, "not found") || regerror_has(message, "does not exist") ||
         regerror_has(message, "deleted")))
        return REGERROR_PROJECT;
    if (ask->push && ask->repo != NULL && regerror_code_is(code, "NAME_UNKNOWN"))
        return REGERROR_REPO;
    if (st == 401 || regerror_code_is(code, "UNAUTHORIZED"))
        return REGERROR_UNAUTHORIZED;
    if (st == 403 || regerror_code_is(code, "DENIED"))
        return REGERROR_DENIED;
    return REGERROR_NONE;
}

/* The leading decimal of a header value (digits only: the rest is not trusted), or -1. */
static long long regerror_header_number(const char *value, const char **rest)
{
    long long n = 0;
    const char *p = value;
    if (value == NULL)
        return -1;
    p += strspn(p, " \t");
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > 1000000000LL)
            return -1;
        n = n * 10 + (*p - '0');
    }
    if (rest != NULL)
        *rest = p;
    return n;
}

/* The window of a RateLimit header ("100;w=21600"), or -1. */
static long long regerror_header_window(const char *value)
{
    const char *rest = NULL;
    if (regerror_header_number(value, &rest) < 0)
        return -1;
    rest += strspn(rest, " \t");
    if (strncmp(rest, ";w=", 3) != 0)
        return -1;
    return regerror_header_number(rest + 3, NULL);
}

/* What to do about a 429: Docker Hub's pull limit, or any other registry's throttle. */
static char *regerror_rate_advice(const struct regerror_request *rq, const char *message)
{
    long long retry = regerror_header_number(rq->retry_after, NULL);
    long long limit = regerror_header_number(rq->ratelimit_limit, NULL);
    long long window = regerror_header_window(rq->ratelimit_limit);
    long long remaining = regerror_header_number(rq->ratelimit_remaining, NULL);
    char wait[64];
    if (retry >= 0)
        snprintf(wait, sizeof(wait), "wait %lld s", retry);
    else if (remaining == 0 && window > 0)
        snprintf(wait, sizeof(wait), "wait up to %lld s (the limit's window)", window);
    else
        snprintf(wait, sizeof(wait), "wait before trying again");
    if (limit >= 0 || regerror_has(message, "pull rate limit")) {
        char spent[96] = "";
        if (limit >= 0 && window > 0)
            snprintf(spent, sizeof(spent), " (%lld pulls per %lld s)", limit, window);
        else if (limit >= 0)
            snprintf(spent, sizeof(spent), " (%lld pulls)", limit);
        return xasprintf("the pull limit%s is spent: log in for a higher limit or %s", spent, wait);
    }
    return xasprintf("too many requests: lower max_concurrency or rate_limit for %s, or %s",
                     rq->registry, wait);
}

/* What to do, for a refusal of `kind`. */
static char *regerror_advice(enum regerror_kind kind, const struct regerror_request *rq,
                             const struct regerror_ask *ask, const char *message)
{
    const char *h = rq->registry;
    const char *r = ask->repo;
    switch (kind) {
    case REGERROR_RATE:
        return regerror_rate_advice(rq, message);
    case REGERROR_CATALOG:
        return xasprintf("%s lists no repositories to these credentials (Docker Hub, GHCR, ECR and "
                         "GAR offer no catalog to most users): name the repositories in the "
                         "registry's repositories list",
                         h);
    case REGERROR_QUOTA:
        return xasprintf("a quota of %s is used up (ECR: images per repository, "
                         "LimitExceededException; Harbor, Quay, ACR: the project's, namespace's "
                         "or registry's storage): delete old images or raise the quota",
                         h);
    case REGERROR_PROJECT: {
        const char *slash = r ? strchr(r, '/') : NULL;
        int plen = slash ? (int)(slash - r) : (r ? (int)strlen(r) : 0);
        return xasprintf("the project%s%.*s%s does not exist at %s (Harbor: create the project; "
                         "Google: check the project id), or set create_repository",
                         r ? " '" : "", plen, r ? r : "", r ? "'" : "", h);
    }
    case REGERROR_REPO:
        return xasprintf("%s does not exist at %s, which does not create repositories on push "
                         "(ECR: aws ecr create-repository --repository-name %s), or set "
                         "create_repository",
                         r, h, r);
    case REGERROR_UNAUTHORIZED:
        return xasprintf("%s did not accept the credentials (none were sent, or they are wrong or "
                         "expired): check the credentials configured for %s",
                         h, h);
    case REGERROR_DENIED:
        if (r != NULL && ask->push)
            return xasprintf("the credentials lack push rights for %s, or the repository/project "
                             "does not exist (ECR: create it or set create_repository; Harbor: "
                             "create the project; GAR: create the repository; GHCR: a token "
                             "with write:packages)",
                             r);
        if (r != NULL && ask->delete)
            return xasprintf("the credentials lack delete rights for %s, or %s does not allow "
                             "deletes",
                             r, h);
        if (r != NULL)
            return xasprintf("the credentials lack pull rights for %s, or it does not exist at %s",
                             r, h);
        return xasprintf("the credentials lack the rights for this request at %s", h);
    default:
        return NULL;
    }
}

char *regerror_explain(const struct regerror_request *request, const char *body, size_t len)
{
    char *code = NULL, *message = NULL, *advice = NULL, *text = NULL, *said = NULL;
    struct regerror_ask ask;

    if (request == NULL || request->registry == NULL || request->method == NULL ||
        request->path == NULL)
        return NULL;
    if (regerror_parse(body, len, &code, &message) < 0)
        message = xstrdup("");
    regerror_ask_read(request, &ask);
    enum regerror_kind kind = regerror_classify(request, &ask, code, message);
    advice = regerror_advice(kind, request, &ask, message);
    if (advice == NULL)
        goto out;
    /* The registry's own words: its code and message, or the bare status when it gave none. */
    bool rate = kind == REGERROR_RATE;
    if (code != NULL && message[0] != '\0')
        said = xasprintf(rate ? "%s: %s" : "%s (%s)", code, message);
    else if (code != NULL)
        said = xstrdup(code);
    else
        said = xasprintf("HTTP %ld", request->status);
    if (rate)
        text = xasprintf("rate limited by %s (%s) on %s: %s [%s %s: HTTP %ld]", request->registry,
                         said, ask.what, advice, request->method, request->path, request->status);
    else
        text = xasprintf("%s refused: %s: %s [%s %s: HTTP %ld]", ask.what, said, advice,
                         request->method, request->path, request->status);

out:
    free(code);
    free(message);
    free(advice);
    free(said);
    free(ask.what);
    free(ask.repo);
    return text;
}
