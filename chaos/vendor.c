/* vendor.c: the vendors' registry behaviour the proxy plays (see vendor.h). */
#include "chaos/vendor.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/xalloc.h"

/* ------------------------------------------------------------------ paths */

/* The last occurrence of `needle` in the first `len` bytes of `hay`, or NULL. */
static const char *vendor_find_last(const char *hay, size_t len, const char *needle)
{
    size_t nlen = strlen(needle);
    if (nlen > len)
        return NULL;
    for (size_t i = len - nlen + 1; i-- > 0;) {
        if (memcmp(hay + i, needle, nlen) == 0)
            return hay + i;
    }
    return NULL;
}

/* The length of the path of a request target: up to its query. */
static size_t vendor_path_len(const char *target)
{
    return strcspn(target, "?#");
}

/* True when `s` (of `len` bytes) is a non-empty path segment: no slash. */
static bool vendor_segment(const char *s, size_t len)
{
    return len > 0 && memchr(s, '/', len) == NULL;
}

/* Copies target[start, end) to `repo` when it is a valid name that fits. */
static bool vendor_copy_repo(const char *start, const char *end, char *repo, size_t repo_len)
{
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= repo_len)
        return false;
    memcpy(repo, start, n);
    repo[n] = '\0';
    return vendor_repo_name_valid(repo);
}

bool vendor_push_repo(const char *method, const char *target, char *repo, size_t repo_len)
{
    bool post = strcmp(method, "POST") == 0;
    bool put = strcmp(method, "PUT") == 0;
    bool patch = strcmp(method, "PATCH") == 0;
    if (!post && !put && !patch)
        return false;
    size_t len = vendor_path_len(target);
    if (len < 4 || strncmp(target, "/v2/", 4) != 0)
        return false;
    const char *path = target + 4;
    size_t plen = len - 4;

    /* A manifest PUT: /v2/R/manifests/<reference>, the reference a segment. */
    const char *m = vendor_find_last(path, plen, "/manifests/");
    if (put && m != NULL) {
        const char *ref = m + strlen("/manifests/");
        if (vendor_segment(ref, (size_t)(path + plen - ref)))
            return vendor_copy_repo(path, m, repo, repo_len);
    }
    /* Uploads: /v2/R/blobs/uploads[/[<session>]]. */
    const char *u = vendor_find_last(path, plen, "/blobs/uploads");
    if (u == NULL)
        return false;
    const char *rest = u + strlen("/blobs/uploads");
    size_t rlen = (size_t)(path + plen - rest);
    bool ok = rlen == 0 || (rest[0] == '/' && (rlen == 1 || vendor_segment(rest + 1, rlen - 1)));
    if (!ok)
        return false;
    return vendor_copy_repo(path, u, repo, repo_len);
}

bool vendor_is_manifest_get(const char *method, const char *target)
{
    if (strcmp(method, "GET") != 0)
        return false;
    size_t len = vendor_path_len(target);
    if (len < 4 || strncmp(target, "/v2/", 4) != 0)
        return false;
    const char *m = vendor_find_last(target + 4, len - 4, "/manifests/");
    if (m == NULL || m == target + 4)
        return false;
    const char *ref = m + strlen("/manifests/");
    return vendor_segment(ref, (size_t)(target + len - ref));
}

bool vendor_repo_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > VENDOR_REPO_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-' || (c == '/' && name[i + 1] != '/');
        if (!ok)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ repositories */

int vendor_repos_add(struct vendor_repos *repos, const char *name, bool count)
{
    if (!vendor_repo_name_valid(name))
        return FERRY_EINVAL;
    if (vendor_repos_has(repos, name))
        return 0;
    if (repos->n == VENDOR_REPOS_MAX)
        return FERRY_ETOOBIG;
    if (repos->n == repos->cap) {
        repos->cap = repos->cap ? repos->cap * 2 : 16;
        repos->names = xrealloc(repos->names, repos->cap * sizeof(*repos->names));
    }
    repos->names[repos->n++] = xstrdup(name);
    if (count)
        repos->creations++;
    return 1;
}

bool vendor_repos_has(const struct vendor_repos *repos, const char *name)
{
    for (size_t i = 0; i < repos->n; i++) {
        if (strcmp(repos->names[i], name) == 0)
            return true;
    }
    return false;
}

void vendor_repos_release(struct vendor_repos *repos)
{
    for (size_t i = 0; i < repos->n; i++)
        free(repos->names[i]);
    free(repos->names);
    memset(repos, 0, sizeof(*repos));
}

/* ------------------------------------------------------------- rate limit */

void vendor_ratelimit_init(struct vendor_ratelimit *rl, uint64_t limit, uint64_t window_s)
{
    memset(rl, 0, sizeof(*rl));
    rl->limit = limit;
    rl->window_s = window_s;
    rl->remaining = limit;
}

uint64_t vendor_ratelimit_reset_in_s(const struct vendor_ratelimit *rl, uint64_t now_ms)
{
    if (!rl->started)
        return 0;
    uint64_t end_ms = rl->window_start_ms + rl->window_s * 1000;
    if (now_ms >= end_ms)
        return 0;
    return (end_ms - now_ms + 999) / 1000;
}

bool vendor_ratelimit_take(struct vendor_ratelimit *rl, uint64_t now_ms, bool pull,
                           uint64_t *retry_after_s)
{
    if (!rl->started || now_ms >= rl->window_start_ms + rl->window_s * 1000) {
        rl->started = true;
        rl->window_start_ms = now_ms;
        rl->remaining = rl->limit;
    }
    if (!pull)
        return false;
    if (rl->remaining > 0) {
        rl->remaining--;
        return false;
    }
    rl->refused++;
    uint64_t wait = vendor_ratelimit_reset_in_s(rl, now_ms);
    *retry_after_s = wait > 0 ? wait : 1;
    return true;
}

void vendor_ratelimit_headers(const struct vendor_ratelimit *rl,
                              char out[VENDOR_RATELIMIT_HEADERS_MAX])
{
    snprintf(out, VENDOR_RATELIMIT_HEADERS_MAX,
             "RateLimit-Limit: %" PRIu64 ";w=%" PRIu64 "\r\nRateLimit-Remaining: %" PRIu64
             ";w=%" PRIu64 "\r\n",
             rl->limit, rl->window_s, rl->remaining, rl->window_s);
}

/* ------------------------------------------------------------------ ETags */

void vendor_etag(const void *body, size_t len, char out[VENDOR_ETAG_MAX])
{
    char digest[DIGEST_MAX];
    digest_of(body, len, digest);
    snprintf(out, VENDOR_ETAG_MAX, "\"%s\"", digest + strlen("sha256:"));
}

bool vendor_etag_matches(const char *if_none_match, const char *etag)
{
    const char *s = if_none_match;
    size_t elen = strlen(etag);
    while (*s != '\0') {
        s += strspn(s, " \t,");
        size_t n = strcspn(s, ",");
        size_t t = n;
        while (t > 0 && (s[t - 1] == ' ' || s[t - 1] == '\t'))
            t--;
        if (t == 1 && s[0] == '*')
            return true;
        const char *tag = s;
        if (t > 2 && strncmp(tag, "W/", 2) == 0) {
            tag += 2;
            t -= 2;
        }
        if (t > 0 && t == elen && memcmp(tag, etag, elen) == 0)
            return true;
        s += n;
    }
    return false;
}

/* ----------------------------------------------------------------- errors */

struct vendor_code {
    const char *code;
    const char *message;
};

/* Distribution's error codes and their messages (registry/api/errcode, api/v2). */
static const struct vendor_code vendor_codes[] = {
    {"UNAUTHORIZED", "authentication required"},
    {"DENIED", "requested access to the resource is denied"},
    {"NAME_UNKNOWN", "repository name not known to registry"},
    {"MANIFEST_UNKNOWN", "manifest unknown"},
    {"BLOB_UNKNOWN", "blob unknown to registry"},
    {"BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"},
    {"UNSUPPORTED", "The operation is unsupported."},
    {"TOOMANYREQUESTS", "too many requests"},
    {"UNAVAILABLE", "service unavailable"},
    {"UNKNOWN", "unknown error"},
    {"NOT_FOUND", "not found"},
};

/* The code of a 404 for `target`, by what its path names. */
static const char *vendor_not_found_code(const char *target)
{
    size_t len = vendor_path_len(target);
    if (vendor_find_last(target, len, "/manifests/"))
        return "MANIFEST_UNKNOWN";
    if (vendor_find_last(target, len, "/blobs/uploads"))
        return "BLOB_UPLOAD_UNKNOWN";
    if (vendor_find_last(target, len, "/blobs/"))
        return "BLOB_UNKNOWN";
    if (vendor_find_last(target, len, "/tags/list"))
        return "NAME_UNKNOWN";
    return "NOT_FOUND";
}

void vendor_error_for(int status, const char *target, const char *code, const char **code_out,
                      const char **message_out)
{
    if (code == NULL || code[0] == '\0') {
        switch (status) {
        case 401:
            code = "UNAUTHORIZED";
            break;
        case 403:
            code = "DENIED";
            break;
        case 404:
            code = vendor_not_found_code(target);
            break;
        case 405:
            code = "UNSUPPORTED";
            break;
        case 429:
            code = "TOOMANYREQUESTS";
            break;
        case 502:
        case 503:
        case 504:
            code = "UNAVAILABLE";
            break;
        default:
            code = "UNKNOWN";
            break;
        }
    }
    *code_out = code;
    *message_out = "injected by ferry-chaos-proxy";
    for (size_t i = 0; i < sizeof(vendor_codes) / sizeof(vendor_codes[0]); i++) {
        if (strcmp(vendor_codes[i].code, code) == 0) {
            *message_out = vendor_codes[i].message;
            break;
        }
    }
}
