#include "registry/regerror.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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
