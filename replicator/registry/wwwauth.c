#include "registry/wwwauth.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/errors.h"
#include "common/xalloc.h"

struct wwwauth_parser {
    const char *s;
    size_t len;
    size_t pos;
};

static bool wwwauth_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool wwwauth_is_token68_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-._~+/", c) != NULL;
}

static bool wwwauth_at_end(const struct wwwauth_parser *p)
{
    return p->pos >= p->len;
}

static unsigned char wwwauth_peek(const struct wwwauth_parser *p)
{
    return wwwauth_at_end(p) ? '\0' : (unsigned char)p->s[p->pos];
}

static void wwwauth_skip_ows(struct wwwauth_parser *p)
{
    while (!wwwauth_at_end(p) && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

/* Skip the separators of an RFC 7230 list, which may include empty elements. */
static void wwwauth_skip_separators(struct wwwauth_parser *p)
{
    while (!wwwauth_at_end(p) &&
           (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == ','))
        p->pos++;
}

static size_t wwwauth_token(struct wwwauth_parser *p)
{
    size_t start = p->pos;
    while (!wwwauth_at_end(p) && wwwauth_is_tchar((unsigned char)p->s[p->pos]))
        p->pos++;
    return p->pos - start;
}

/*
 * Read a quoted-string at the current position into a fresh unescaped copy.
 * Returns false, leaving *out NULL, when it is unterminated or holds a byte
 * that neither qdtext nor quoted-pair allows.
 */
static bool wwwauth_quoted(struct wwwauth_parser *p, char **out)
{
    size_t n = 0;
    char *value = xmalloc(p->len - p->pos + 1);

    *out = NULL;
    p->pos++; /* the opening quote */
    while (!wwwauth_at_end(p)) {
        unsigned char c = (unsigned char)p->s[p->pos++];
        if (c == '"') {
            value[n] = '\0';
            *out = value;
            return true;
        }
        if (c == '\\') {
            if (wwwauth_at_end(p))
                break;
            c = (unsigned char)p->s[p->pos++];
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            break;
        value[n++] = (char)c;
    }
    free(value);
    return false;
}

/* Keep the value of a parameter Ferry needs; the first occurrence wins. */
static void wwwauth_record(struct wwwauth *w, const char *name, size_t name_len, char *value)
{
    static const char *const names[] = {"realm", "service", "scope", "error"};
    char **slots[] = {&w->realm, &w->service, &w->scope, &w->error};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i]) == name_len && strncasecmp(names[i], name, name_len) == 0) {
            if (*slots[i] == NULL) {
                *slots[i] = value;
                return;
            }
            break;
        }
    }
    free(value);
}

/*
 * Try to read one auth-param (token BWS "=" BWS ( token / quoted-string )).
 * Returns 1 when one was read and recorded, 0 (position unchanged) when the
 * text there is not an auth-param, and FERRY_EPARSE for a broken quoted
 * string.
 */
static int wwwauth_param(struct wwwauth_parser *p, struct wwwauth *w)
{
    size_t start = p->pos;
    size_t name_len = wwwauth_token(p);
    char *value = NULL;

    if (name_len == 0)
        goto not_param;
    wwwauth_skip_ows(p);
    if (wwwauth_peek(p) != '=')
        goto not_param;
    p->pos++;
    wwwauth_skip_ows(p);
    if (wwwauth_peek(p) == '"') {
        if (!wwwauth_quoted(p, &value))
            return FERRY_EPARSE;
    } else {
        size_t value_start = p->pos;
        size_t value_len = wwwauth_token(p);
        if (value_len == 0)
            goto not_param;
        value = xstrndup(p->s + value_start, value_len);
    }
    wwwauth_record(w, p->s + start, name_len, value);
    return 1;

not_param:
    p->pos = start;
    return 0;
}

/* Try to read a token68 that fills the rest of its challenge. */
static bool wwwauth_token68(struct wwwauth_parser *p)
{
    size_t start = p->pos;
    while (!wwwauth_at_end(p) && wwwauth_is_token68_char((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos == start)
        return false;
    while (wwwauth_peek(p) == '=')
        p->pos++;
    size_t after = p->pos;
    wwwauth_skip_ows(p);
    if (wwwauth_at_end(p) || wwwauth_peek(p) == ',') {
        p->pos = after;
        return true;
    }
    p->pos = start;
    return false;
}

/*
 * Past optional white space: the end of the header (1), or a comma and the
 * separators after it (0); anything else is FERRY_EPARSE.
 */
static int wwwauth_comma(struct wwwauth_parser *p)
{
    wwwauth_skip_ows(p);
    if (wwwauth_at_end(p))
        return 1;
    if (wwwauth_peek(p) != ',')
        return FERRY_EPARSE;
    wwwauth_skip_separators(p);
    return 0;
}

/*
 * Parse one challenge into `w`. On success the position is at the start of
 * the next challenge or at the end of the header.
 */
static int wwwauth_challenge(struct wwwauth_parser *p, struct wwwauth *w)
{
    size_t start = p->pos;
    size_t scheme_len = wwwauth_token(p);
    int rc;

    if (scheme_len == 0)
        return FERRY_EPARSE;
    w->scheme = xstrndup(p->s + start, scheme_len);
    for (char *c = w->scheme; *c; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    }

    if (wwwauth_at_end(p) || wwwauth_peek(p) == ',')
        goto next;
    if (wwwauth_peek(p) != ' ' && wwwauth_peek(p) != '\t')
        return FERRY_EPARSE;
    wwwauth_skip_ows(p);
    if (wwwauth_at_end(p) || wwwauth_peek(p) == ',')
        goto next;

    rc = wwwauth_param(p, w);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (!wwwauth_token68(p))
            return FERRY_EPARSE;
        goto next;
    }
    for (;;) {
        rc = wwwauth_comma(p);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        if (wwwauth_at_end(p))
            return 0;
        rc = wwwauth_param(p, w);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            /* Not name=value: this token is the scheme of the next challenge. */
            return 0;
        }
    }

next:
    rc = wwwauth_comma(p);
    return rc < 0 ? rc : 0;
}

static int wwwauth_priority(const struct wwwauth *w)
{
    if (strcmp(w->scheme, "bearer") == 0)
        return 3;
    if (strcmp(w->scheme, "basic") == 0)
        return 2;
    return 1;
}

int wwwauth_parse(struct wwwauth *out, const char *header, char **err)
{
    struct wwwauth best = {0};
    struct wwwauth current = {0};
    struct wwwauth_parser p = {0};
    int best_priority = 0;
    int rc = 0;

    if (out == NULL || header == NULL) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        if (err != NULL)
            *err = xasprintf("no www-authenticate header to parse");
        return FERRY_EINVAL;
    }
    memset(out, 0, sizeof(*out));

    p.s = header;
    p.len = strnlen(header, WWWAUTH_MAX_HEADER + 1);
    if (p.len > WWWAUTH_MAX_HEADER) {
        if (err != NULL)
            *err = xasprintf("www-authenticate header is longer than %d bytes", WWWAUTH_MAX_HEADER);
        return FERRY_ETOOBIG;
    }
    for (size_t i = 0; i < p.len; i++) {
        unsigned char c = (unsigned char)header[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            if (err != NULL)
                *err = xasprintf("www-authenticate header has a control character at byte %zu", i);
            return FERRY_EPARSE;
        }
    }

    wwwauth_skip_separators(&p);
    if (wwwauth_at_end(&p)) {
        if (err != NULL)
            *err = xasprintf("www-authenticate header holds no challenge");
        return FERRY_EPARSE;
    }
    while (!wwwauth_at_end(&p)) {
        rc = wwwauth_challenge(&p, &current);
        if (rc < 0) {
            if (err != NULL)
                *err = xasprintf("malformed www-authenticate header at byte %zu", p.pos);
            goto out;
        }
        int priority = wwwauth_priority(&current);
        if (priority > best_priority) {
            wwwauth_release(&best);
            best = current;
            best_priority = priority;
        } else {
            wwwauth_release(&current);
        }
        memset(&current, 0, sizeof(current));
    }
    *out = best;
    memset(&best, 0, sizeof(best));
    rc = 0;

out:
    wwwauth_release(&current);
    wwwauth_release(&best);
    return rc;
}

void wwwauth_release(struct wwwauth *w)
{
    if (w == NULL)
        return;
    free(w->scheme);
    free(w->realm);
    free(w->service);
    free(w->scope);
    free(w->error);
    memset(w, 0, sizeof(*w));
}
