#include "common/reference.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/xalloc.h"

#define REFERENCE_DEFAULT_REGISTRY "docker.io"

static bool reference_is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool reference_is_alnum(char c)
{
    return reference_is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/*
 * One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*. Every separator must
 * sit between two alphanumeric runs, which is also what rules out "..", "-x"
 * and "x_".
 */
static bool reference_component_valid(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || !reference_is_lower_alnum(s[0]))
        return false;
    while (i < len) {
        while (i < len && reference_is_lower_alnum(s[i]))
            i++;
        if (i == len)
            return true;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < len && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < len && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == len || !reference_is_lower_alnum(s[i]))
            return false;
    }
    return true;
}

/* Why `repository` is not valid, or NULL when it is. */
static const char *reference_repository_problem(const char *repository)
{
    size_t len = strnlen(repository, REFERENCE_MAX_NAME + 1);
    if (len == 0)
        return "repository is empty";
    if (len > REFERENCE_MAX_NAME)
        return "repository is longer than 255 bytes";
    for (size_t i = 0; i < len; i++) {
        if (repository[i] >= 'A' && repository[i] <= 'Z')
            return "repository must be lowercase";
    }
    if (strstr(repository, "..") != NULL)
        return "repository must not contain '..'";
    const char *component = repository;
    for (;;) {
        const char *slash = strchr(component, '/');
        size_t n = slash ? (size_t)(slash - component) : strlen(component);
        if (n == 0)
            return "repository has an empty path component";
        if (!reference_component_valid(component, n))
            return "repository may only hold lowercase letters, digits and single separators "
                   "('.', '_', '__', '-') between them";
        if (slash == NULL)
            return NULL;
        component = slash + 1;
    }
}

bool reference_repository_valid(const char *repository)
{
    return repository != NULL && reference_repository_problem(repository) == NULL;
}

bool reference_tag_valid(const char *tag)
{
    if (tag == NULL)
        return false;
    size_t len = strnlen(tag, REFERENCE_MAX_TAG + 1);
    if (len == 0 || len > REFERENCE_MAX_TAG)
        return false;
    if (!reference_is_alnum(tag[0]) && tag[0] != '_')
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = tag[i];
        if (!reference_is_alnum(c) && c != '_' && c != '.' && c != '-')
            return false;
    }
    return true;
}

/* A port: 1 to 5 digits naming 1..65535. */
static bool reference_port_valid(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return false;
    unsigned long port = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* A DNS name: dot-separated labels of letters, digits and inner hyphens. */
static bool reference_host_valid(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0)
        return false;
    while (i < len) {
        size_t start = i;
        while (i < len && (reference_is_alnum(s[i]) || s[i] == '-'))
            i++;
        if (i == start || s[start] == '-' || s[i - 1] == '-')
            return false;
        if (i == len)
            return true;
        if (s[i] != '.')
            return false;
        i++;
        if (i == len)
            return false;
    }
    return true;
}

/* "host", "host:port", "[v6]" or "[v6]:port". */
static bool reference_registry_valid(const char *s)
{
    size_t len = strlen(s);
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return false;
        size_t inner = (size_t)(close - s - 1);
        bool colon = false;
        if (inner < 2)
            return false;
        for (size_t i = 1; i <= inner; i++) {
            char c = s[i];
            if (c == ':')
                colon = true;
            else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                       c == '.'))
                return false;
        }
        if (!colon)
            return false;
        const char *rest = close + 1;
        if (*rest == '\0')
            return true;
        return *rest == ':' && reference_port_valid(rest + 1, strlen(rest + 1));
    }
    const char *colon = strchr(s, ':');
    if (colon == NULL)
        return reference_host_valid(s, len);
    return reference_host_valid(s, (size_t)(colon - s)) &&
           reference_port_valid(colon + 1, strlen(colon + 1));
}

bool reference_host_is_loopback(const char *hostport)
{
    char host[64];
    const char *end;
    if (hostport == NULL)
        return false;
    if (hostport[0] == '[') {
        end = strchr(hostport, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return false;
        hostport++;
    } else {
        end = strchr(hostport, ':');
        if (end == NULL)
            end = hostport + strlen(hostport);
        else if (strchr(end + 1, ':') != NULL)
            return false; /* a bare IPv6 address needs its brackets */
    }
    size_t len = (size_t)(end - hostport);
    if (len == 0 || len >= sizeof(host))
        return false;
    memcpy(host, hostport, len);
    host[len] = '\0';
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0;
    return false;
}

/* Whether the first path component of a reference names a registry. */
static bool reference_looks_like_registry(const char *s, size_t len)
{
    if (len == 0)
        return false;
    if (s[0] == '[' || memchr(s, '.', len) != NULL || memchr(s, ':', len) != NULL)
        return true;
    return len == 9 && memcmp(s, "localhost", 9) == 0;
}

static int reference_fail(struct reference *ref, char **err, int rc, const char *text,
                          const char *why)
{
    reference_release(ref);
    if (err != NULL) {
        if (text != NULL)
            *err = xasprintf("invalid image reference \"%s\": %s", text, why);
        else
            *err = xasprintf("invalid image reference: %s", why);
    }
    return rc;
}

int reference_parse(struct reference *ref, const char *text, char **err)
{
    if (ref == NULL) {
        if (err != NULL)
            *err = xasprintf("invalid image reference: no reference to fill");
        return FERRY_EINVAL;
    }
    memset(ref, 0, sizeof(*ref));
    if (text == NULL)
        return reference_fail(ref, err, FERRY_EINVAL, NULL, "no text");

    size_t len = strnlen(text, REFERENCE_MAX_TEXT + 1);
    if (len > REFERENCE_MAX_TEXT)
        return reference_fail(ref, err, FERRY_ETOOBIG, NULL, "longer than 4096 bytes");
    if (len == 0)
        return reference_fail(ref, err, FERRY_EPARSE, NULL, "empty");
    /*
     * Only printable ASCII may appear; checking it first means every later
     * message can quote the text without breaking a log line.
     */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c >= 0x7f)
            return reference_fail(ref, err, FERRY_EPARSE, NULL,
                                  "contains whitespace, control or non-ascii characters");
    }

    const char *at = strchr(text, '@');
    size_t name_len = at ? (size_t)(at - text) : len;
    if (at != NULL) {
        if (!digest_valid(at + 1))
            return reference_fail(ref, err, FERRY_EPARSE, text,
                                  "digest must be sha256: followed by 64 lowercase hex digits");
        ref->digest = xstrdup(at + 1);
    }
    if (name_len == 0)
        return reference_fail(ref, err, FERRY_EPARSE, text, "no repository");

    const char *name = text;
    const char *slash = memchr(name, '/', name_len);
    const char *rest = name;
    if (slash != NULL && reference_looks_like_registry(name, (size_t)(slash - name))) {
        ref->registry = xstrndup(name, (size_t)(slash - name));
        rest = slash + 1;
    } else {
        ref->registry = xstrdup(REFERENCE_DEFAULT_REGISTRY);
    }
    size_t rest_len = name_len - (size_t)(rest - name);
    char *path = xstrndup(rest, rest_len);

    /* A colon after the registry can only introduce the tag. */
    char *colon = strrchr(path, ':');
    if (colon != NULL) {
        *colon = '\0';
        if (!reference_tag_valid(colon + 1)) {
            free(path);
            return reference_fail(ref, err, FERRY_EPARSE, text,
                                  "tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}");
        }
        ref->tag = xstrdup(colon + 1);
    }

    if (!reference_registry_valid(ref->registry)) {
        free(path);
        return reference_fail(ref, err, FERRY_EPARSE, text,
                              "registry must be host[:port] or [ipv6]:port");
    }
    const char *problem = reference_repository_problem(path);
    if (problem != NULL) {
        free(path);
        return reference_fail(ref, err, FERRY_EPARSE, text, problem);
    }

    if (strcmp(ref->registry, "index.docker.io") == 0) {
        free(ref->registry);
        ref->registry = xstrdup(REFERENCE_DEFAULT_REGISTRY);
    }
    if (strcmp(ref->registry, REFERENCE_DEFAULT_REGISTRY) == 0 && strchr(path, '/') == NULL) {
        ref->repository = xasprintf("library/%s", path);
        free(path);
    } else {
        ref->repository = path;
    }

    if (strlen(ref->registry) + 1 + strlen(ref->repository) > REFERENCE_MAX_NAME)
        return reference_fail(ref, err, FERRY_EPARSE, text,
                              "registry and repository together are longer than 255 bytes");
    return 0;
}

void reference_release(struct reference *ref)
{
    if (ref == NULL)
        return;
    free(ref->registry);
    free(ref->repository);
    free(ref->tag);
    free(ref->digest);
    memset(ref, 0, sizeof(*ref));
}

char *reference_format(const struct reference *ref)
{
    if (ref == NULL || ref->registry == NULL || ref->repository == NULL)
        return NULL;
    return xasprintf("%s/%s%s%s%s%s", ref->registry, ref->repository, ref->tag ? ":" : "",
                     ref->tag ? ref->tag : "", ref->digest ? "@" : "",
                     ref->digest ? ref->digest : "");
}

char *reference_referrers_tag(const char *digest)
{
    const char *colon = strchr(digest, ':');
    if (colon == NULL)
        return xstrdup(digest);
    return xasprintf("%.*s-%s", (int)(colon - digest), digest, colon + 1);
}

bool reference_is_referrers_tag(const char *tag)
{
    return tag != NULL && strncmp(tag, "sha256-", 7) == 0 && strlen(tag) == 7 + 64 &&
           strspn(tag + 7, "0123456789abcdef") == 64;
}
