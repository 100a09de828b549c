#include "registry/httpparse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/xalloc.h"

/* The components of a URI reference, as RFC 3986 appendix B splits them. */
struct httpparse_url {
    const char *scheme; /* NULL when the reference has none */
    size_t scheme_len;
    const char *authority; /* NULL when there is no "//" */
    size_t authority_len;
    const char *path; /* never NULL; may be empty */
    size_t path_len;
    const char *query; /* after '?'; NULL when there is no '?' */
    size_t query_len;
};

/* Printable ASCII only: no space, no control characters, nothing above 0x7e. */
static bool httpparse_url_text_ok(const char *s, size_t *len)
{
    size_t n = strnlen(s, HTTPPARSE_MAX_URL + 1);
    if (n == 0 || n > HTTPPARSE_MAX_URL)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    *len = n;
    return true;
}

static bool httpparse_scheme_char(char c, bool first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

/* Split `s` into its components; false when what precedes ':' is not a scheme. */
static bool httpparse_url_split(const char *s, size_t len, struct httpparse_url *u)
{
    size_t i = 0;
    memset(u, 0, sizeof(*u));

    size_t stop = strcspn(s, ":/?#");
    if (stop < len && s[stop] == ':') {
        if (stop == 0)
            return false;
        for (size_t k = 0; k < stop; k++) {
            if (!httpparse_scheme_char(s[k], k == 0))
                return false;
        }
        u->scheme = s;
        u->scheme_len = stop;
        i = stop + 1;
    }
    if (len - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
        i += 2;
        size_t n = strcspn(s + i, "/?#");
        u->authority = s + i;
        u->authority_len = n;
        i += n;
    }
    size_t n = strcspn(s + i, "?#");
    u->path = s + i;
    u->path_len = n;
    i += n;
    if (i < len && s[i] == '?') {
        i++;
        n = strcspn(s + i, "#");
        u->query = s + i;
        u->query_len = n;
    }
    return true;
}

static bool httpparse_scheme_is_http(const struct httpparse_url *u)
{
    return u->scheme != NULL && ((u->scheme_len == 4 && strncasecmp(u->scheme, "http", 4) == 0) ||
                                 (u->scheme_len == 5 && strncasecmp(u->scheme, "https", 5) == 0));
}

/* Drop the last segment of `out` and the '/' before it (RFC 3986 §5.2.4 C). */
static void httpparse_drop_last_segment(char *out, size_t *n)
{
    while (*n > 0 && out[*n - 1] != '/')
        (*n)--;
    if (*n > 0)
        (*n)--;
}

/*
 * RFC 3986 §5.2.4, on a private copy of the path because some steps rewrite
 * the head of the input. The result is never longer than the input.
 */
static char *httpparse_remove_dot_segments(const char *path, size_t len)
{
    char *copy = xstrndup(path, len);
    char *in = copy;
    char *out = xmalloc(len + 1);
    size_t n = 0;

    while (*in != '\0') {
        if (strncmp(in, "../", 3) == 0) {
            in += 3;
        } else if (strncmp(in, "./", 2) == 0) {
            in += 2;
        } else if (strncmp(in, "/./", 3) == 0) {
            in += 2;
        } else if (strcmp(in, "/.") == 0) {
            in += 1;
            in[0] = '/';
        } else if (strncmp(in, "/../", 4) == 0) {
            in += 3;
            httpparse_drop_last_segment(out, &n);
        } else if (strcmp(in, "/..") == 0) {
            in += 2;
            in[0] = '/';
            httpparse_drop_last_segment(out, &n);
        } else if (strcmp(in, ".") == 0 || strcmp(in, "..") == 0) {
            break;
        } else {
            if (*in == '/')
                out[n++] = *in++;
            while (*in != '\0' && *in != '/')
                out[n++] = *in++;
        }
    }
    out[n] = '\0';
    free(copy);
    return out;
}

char *httpparse_url_resolve(const char *base, const char *ref)
{
    struct httpparse_url b, r;
    size_t base_len, ref_len;
    char *path = NULL;
    char *merged = NULL;
    char *result = NULL;
    const char *query;
    size_t query_len;

    if (base == NULL || ref == NULL || !httpparse_url_text_ok(base, &base_len) ||
        !httpparse_url_text_ok(ref, &ref_len))
        return NULL;
    if (!httpparse_url_split(base, base_len, &b) || !httpparse_scheme_is_http(&b) ||
        b.authority == NULL || b.authority_len == 0)
        return NULL;
    if (!httpparse_url_split(ref, ref_len, &r))
        return NULL;

    if (r.scheme != NULL) {
        /*
         * An absolute URL, typically a presigned object-store URL whose
         * signature covers path and query exactly, so nothing is rewritten.
         */
        if (!httpparse_scheme_is_http(&r) || r.authority == NULL || r.authority_len == 0)
            return NULL;
        size_t end = strcspn(ref, "#");
        return xstrndup(ref, end);
    }

    if (r.authority != NULL) {
        if (r.authority_len == 0)
            return NULL;
        path = httpparse_remove_dot_segments(r.path, r.path_len);
        result = xasprintf("%.*s://%.*s%s%s%.*s", (int)b.scheme_len, b.scheme, (int)r.authority_len,
                           r.authority, path, r.query ? "?" : "", (int)r.query_len,
                           r.query ? r.query : "");
        goto out;
    }

    if (r.path_len == 0) {
        path = xstrndup(b.path, b.path_len);
        query = r.query ? r.query : b.query;
        query_len = r.query ? r.query_len : b.query_len;
    } else {
        if (r.path[0] == '/') {
            path = httpparse_remove_dot_segments(r.path, r.path_len);
        } else {
            /* Merge (§5.2.3): keep the base path up to its last '/'. */
            size_t keep = b.path_len;
            while (keep > 0 && b.path[keep - 1] != '/')
                keep--;
            if (b.path_len == 0)
                merged = xasprintf("/%.*s", (int)r.path_len, r.path);
            else
                merged = xasprintf("%.*s%.*s", (int)keep, b.path, (int)r.path_len, r.path);
            path = httpparse_remove_dot_segments(merged, strlen(merged));
        }
        query = r.query;
        query_len = r.query_len;
    }
    result = xasprintf("%.*s://%.*s%s%s%.*s", (int)b.scheme_len, b.scheme, (int)b.authority_len,
                       b.authority, path, query ? "?" : "", (int)query_len, query ? query : "");

out:
    free(path);
    free(merged);
    if (result != NULL && strlen(result) > HTTPPARSE_MAX_URL) {
        free(result);
        result = NULL;
    }
    return result;
}

static bool httpparse_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *httpparse_skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* True when the space-separated relation types in `rel` include "next". */
static bool httpparse_rel_has_next(const char *rel)
{
    const char *p = rel;
    for (;;) {
        p = httpparse_skip_ows(p);
        if (*p == '\0')
            return false;
        size_t n = strcspn(p, " \t");
        if (n == 4 && strncasecmp(p, "next", 4) == 0)
            return true;
        p += n;
    }
}

/*
 * Read a link-param value (token or quoted-string) at `p` into a fresh
 * unescaped string. Returns the position after it, or NULL when malformed.
 */
static const char *httpparse_param_value(const char *p, char **value)
{
    *value = NULL;
    if (*p == '"') {
        char *v = xmalloc(strlen(p) + 1);
        size_t n = 0;
        p++;
        for (;;) {
            if (*p == '\0') {
                free(v);
                return NULL;
            }
            if (*p == '"')
                break;
            if (*p == '\\') {
                p++;
                if (*p == '\0') {
                    free(v);
                    return NULL;
                }
            }
            v[n++] = *p++;
        }
        v[n] = '\0';
        *value = v;
        return p + 1;
    }
    const char *start = p;
    while (httpparse_is_tchar((unsigned char)*p))
        p++;
    if (p == start)
        return NULL;
    *value = xstrndup(start, (size_t)(p - start));
    return p;
}

char *httpparse_link_next(const char *link_header, const char *base_url)
{
    const char *next = NULL;
    size_t next_len = 0;

    if (link_header == NULL || base_url == NULL)
        return NULL;
    size_t len = strnlen(link_header, HTTPPARSE_MAX_URL + 1);
    if (len > HTTPPARSE_MAX_URL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)link_header[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return NULL;
    }

    /*
     * The whole header is checked before the first next link is used, so that
     * a truncated or garbled header yields nothing rather than half a guess.
     */
    const char *p = link_header;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p != '<')
            return NULL;
        const char *url = p + 1;
        const char *close = strchr(url, '>');
        if (close == NULL)
            return NULL;
        p = close + 1;
        bool rel_seen = false;
        bool is_next = false;
        for (;;) {
            p = httpparse_skip_ows(p);
            if (*p == '\0' || *p == ',')
                break;
            if (*p != ';')
                return NULL;
            p = httpparse_skip_ows(p + 1);
            const char *name = p;
            while (httpparse_is_tchar((unsigned char)*p))
                p++;
            size_t name_len = (size_t)(p - name);
            if (name_len == 0)
                return NULL;
            p = httpparse_skip_ows(p);
            if (*p != '=')
                continue;
            char *value = NULL;
            p = httpparse_param_value(httpparse_skip_ows(p + 1), &value);
            if (p == NULL)
                return NULL;
            /* RFC 8288 §3.3: occurrences of rel after the first are ignored. */
            if (name_len == 3 && strncasecmp(name, "rel", 3) == 0 && !rel_seen) {
                rel_seen = true;
                is_next = httpparse_rel_has_next(value);
            }
            free(value);
        }
        if (is_next && next == NULL) {
            next = url;
            next_len = (size_t)(close - url);
        }
    }
    if (next == NULL)
        return NULL;
    char *target = xstrndup(next, next_len);
    char *resolved = httpparse_url_resolve(base_url, target);
    free(target);
    return resolved;
}

/* Read 1*DIGIT into *value; false on no digits or on overflow. */
static bool httpparse_u64(const char **p, uint64_t *value)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *p = s;
    *value = v;
    return true;
}

int httpparse_range_end(const char *range, uint64_t *next_offset)
{
    uint64_t start, end;

    if (range == NULL || next_offset == NULL)
        return FERRY_EINVAL;
    const char *p = range;
    if (strncasecmp(p, "bytes=", 6) == 0)
        p += 6;
    if (!httpparse_u64(&p, &start) || start != 0)
        return FERRY_EPARSE;
    if (*p++ != '-')
        return FERRY_EPARSE;
    if (!httpparse_u64(&p, &end) || *p != '\0' || end == UINT64_MAX)
        return FERRY_EPARSE;
    *next_offset = end + 1;
    return 0;
}

static const char *const httpparse_months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const httpparse_days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const httpparse_long_days[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                  "Friday", "Saturday", "Sunday"};

static bool httpparse_lit(const char **p, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

/* Exactly `count` digits. */
static bool httpparse_ndigits(const char **p, int count, int *value)
{
    int v = 0;
    for (int i = 0; i < count; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += count;
    *value = v;
    return true;
}

static bool httpparse_one_of(const char **p, const char *const *names, int count)
{
    for (int i = 0; i < count; i++) {
        if (httpparse_lit(p, names[i]))
            return true;
    }
    return false;
}

static int httpparse_month(const char **p)
{
    for (int i = 0; i < 12; i++) {
        if (httpparse_lit(p, httpparse_months[i]))
            return i + 1;
    }
    return 0;
}

/* "HH:MM:SS"; a leap second is allowed as RFC 5322 does. */
static bool httpparse_clock(const char **p, int *h, int *m, int *s)
{
    return httpparse_ndigits(p, 2, h) && httpparse_lit(p, ":") && httpparse_ndigits(p, 2, m) &&
           httpparse_lit(p, ":") && httpparse_ndigits(p, 2, s) && *h <= 23 && *m <= 59 && *s <= 60;
}

/* Parse the three HTTP date formats of RFC 7231 §7.1.1.1 into Unix seconds. */
static bool httpparse_http_date(const char *s, int64_t now_unix, int64_t *out)
{
    const char *p = s;
    int day = 0, month = 0, year = 0, h = 0, m = 0, sec = 0;

    if (httpparse_one_of(&p, httpparse_long_days, 7)) {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT". */
        int yy;
        if (!httpparse_lit(&p, ", ") || !httpparse_ndigits(&p, 2, &day) ||
            !httpparse_lit(&p, "-") || (month = httpparse_month(&p)) == 0 ||
            !httpparse_lit(&p, "-") || !httpparse_ndigits(&p, 2, &yy) || !httpparse_lit(&p, " ") ||
            !httpparse_clock(&p, &h, &m, &sec) || !httpparse_lit(&p, " GMT"))
            return false;
        /* A two-digit year more than 50 years ahead belongs to the last century. */
        int this_year = clock_year_of(now_unix);
        year = this_year - this_year % 100 + yy;
        if (year > this_year + 50)
            year -= 100;
    } else if (httpparse_one_of(&p, httpparse_days, 7)) {
        if (httpparse_lit(&p, ", ")) {
            /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT". */
            if (!httpparse_ndigits(&p, 2, &day) || !httpparse_lit(&p, " ") ||
                (month = httpparse_month(&p)) == 0 || !httpparse_lit(&p, " ") ||
                !httpparse_ndigits(&p, 4, &year) || !httpparse_lit(&p, " ") ||
                !httpparse_clock(&p, &h, &m, &sec) || !httpparse_lit(&p, " GMT"))
                return false;
        } else {
            /* asctime: "Sun Nov  6 08:49:37 1994". */
            if (!httpparse_lit(&p, " ") || (month = httpparse_month(&p)) == 0 ||
                !httpparse_lit(&p, " "))
                return false;
            if (*p == ' ') {
                p++;
                if (!httpparse_ndigits(&p, 1, &day))
                    return false;
            } else if (!httpparse_ndigits(&p, 2, &day)) {
                return false;
            }
            if (!httpparse_lit(&p, " ") || !httpparse_clock(&p, &h, &m, &sec) ||
                !httpparse_lit(&p, " ") || !httpparse_ndigits(&p, 4, &year))
                return false;
        }
    } else {
        return false;
    }
    if (*p != '\0')
        return false;

    if (day < 1 || day > clock_days_in_month(year, month))
        return false;
    *out = clock_days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec;
    return true;
}

int httpparse_retry_after(const char *value, int64_t now_unix, uint64_t *delay_ms)
{
    char *text = NULL;
    int rc = FERRY_EPARSE;

    if (value == NULL || delay_ms == NULL)
        return FERRY_EINVAL;
    const char *start = httpparse_skip_ows(value);
    size_t len = strnlen(start, 256);
    if (len == 256)
        return FERRY_EPARSE;
    while (len > 0 && (start[len - 1] == ' ' || start[len - 1] == '\t'))
        len--;
    if (len == 0)
        return FERRY_EPARSE;
    text = xstrndup(start, len);

    if (text[0] >= '0' && text[0] <= '9') {
        /* delta-seconds; a value too large for uint64_t saturates. */
        uint64_t seconds = 0;
        for (const char *p = text; *p != '\0'; p++) {
            if (*p < '0' || *p > '9')
                goto out;
            uint64_t d = (uint64_t)(*p - '0');
            seconds = seconds > (UINT64_MAX - d) / 10 ? UINT64_MAX : seconds * 10 + d;
        }
        *delay_ms = seconds > UINT64_MAX / 1000 ? UINT64_MAX : seconds * 1000;
        rc = 0;
        goto out;
    }

    int64_t when;
    if (!httpparse_http_date(text, now_unix, &when))
        goto out;
    if (when <= now_unix) {
        *delay_ms = 0;
    } else {
        /* Unsigned subtraction: the true difference fits even when now is far negative. */
        uint64_t seconds = (uint64_t)when - (uint64_t)now_unix;
        *delay_ms = seconds > UINT64_MAX / 1000 ? UINT64_MAX : seconds * 1000;
    }
    rc = 0;

out:
    free(text);
    return rc;
}

bool httpparse_header_is(const char *line, size_t len, const char *name, const char **value,
                         size_t *value_len)
{
    if (line == NULL || name == NULL)
        return false;
    const char *colon = memchr(line, ':', len);
    if (colon == NULL)
        return false;
    size_t name_len = (size_t)(colon - line);
    if (name_len == 0 || name_len != strlen(name))
        return false;
    for (size_t i = 0; i < name_len; i++) {
        char a = line[i], b = name[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (char)(b - 'A' + 'a');
        if (a != b)
            return false;
    }
    const char *v = colon + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    if (value != NULL && value_len != NULL) {
        *value = v;
        *value_len = (size_t)(end - v);
    }
    return true;
}
