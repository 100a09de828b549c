/*
 * Fuzz target for regerror_parse(), regerror_summary() and
 * regerror_explain() (replicator/registry/regerror.h).
 *
 * Input: an error body as a registry (or whatever answers in its place)
 * sends it. What comes back must be safe to log: bounded, one line, valid
 * UTF-8 without control characters.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/regerror.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort unless `s` is valid UTF-8 without C0, DEL, C1, U+2028 or U+2029. */
static void check_text(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    if (len > max)
        abort();
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                abort();
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            cp = c & 0x07;
        } else {
            abort();
        }
        if (i + n > len)
            abort();
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                abort();
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            abort();
        if ((cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 ||
            cp == 0x2029)
            abort();
        i += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    char *code = (char *)1;
    char *message = (char *)1;

    int rc = regerror_parse(body, size, &code, &message);
    if (rc == 0) {
        if (code == NULL || code[0] == '\0' || message == NULL)
            abort();
        check_text(code, REGERROR_MAX_TEXT);
        check_text(message, REGERROR_MAX_TEXT);
    } else if (code != NULL || message != NULL) {
        abort();
    }
    free(code);
    free(message);

    /* Either part alone, as callers that want only the code ask for it. */
    code = NULL;
    if (regerror_parse(body, size, &code, NULL) != rc)
        abort();
    free(code);

    char *summary = regerror_summary(body, size);
    if ((summary != NULL) != (rc == 0))
        abort();
    if (summary != NULL)
        check_text(summary, 2 * REGERROR_MAX_TEXT + 64);
    free(summary);

    /* The plain explanation of a refusal, for the answers that get one. */
    static const struct regerror_request asks[] = {
        {"reg.test", "PUT", "/v2/app/manifests/v1", 401, NULL, NULL, NULL},
        {"reg.test", "POST", "/v2/app/blobs/uploads/", 403, NULL, NULL, NULL},
        {"reg.test", "PUT", "/v2/app/manifests/v1", 404, NULL, NULL, NULL},
        {"reg.test", "GET", "/v2/app/manifests/v1", 429, "30", "100;w=21600", "0;w=21600"},
        {"reg.test", "GET", "/v2/_catalog", 404, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(asks) / sizeof(asks[0]); i++) {
        char *line = regerror_explain(&asks[i], body, size);
        if (line != NULL)
            check_text(line, 4096);
        free(line);
    }
    return 0;
}
