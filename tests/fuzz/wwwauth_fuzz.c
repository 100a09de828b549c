/*
 * Fuzz target for wwwauth_parse() (replicator/registry/wwwauth.h).
 *
 * Input: the value of a WWW-Authenticate header (up to its first NUL byte,
 * as a header reaches the parser). Checks the contract too: a lowercase
 * scheme on success; on failure a zeroed result and a one-line message.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "registry/wwwauth.h"
#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Control characters other than HTAB, which RFC 7230 allows in a quoted string. */
static bool has_control(const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *header = xstrndup((const char *)data, size);
    struct wwwauth w;
    char *err = NULL;

    memset(&w, 0xa5, sizeof(w));
    int rc = wwwauth_parse(&w, header, &err);
    if (rc == 0) {
        if (err != NULL || w.scheme == NULL || w.scheme[0] == '\0')
            abort();
        for (const char *c = w.scheme; *c != '\0'; c++) {
            if (*c >= 'A' && *c <= 'Z')
                abort();
        }
        if (has_control(w.realm) || has_control(w.service) || has_control(w.scope) ||
            has_control(w.error))
            abort();
        wwwauth_release(&w);
        if (w.scheme != NULL || w.realm != NULL || w.service != NULL || w.scope != NULL ||
            w.error != NULL)
            abort();
    } else {
        fuzz_check_message(err);
        if (w.scheme != NULL || w.realm != NULL || w.service != NULL || w.scope != NULL ||
            w.error != NULL)
            abort();
    }
    free(err);
    free(header);
    return 0;
}
