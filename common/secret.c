#include "common/secret.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

bool secret_equal(const char *given, const char *want)
{
    size_t a = strlen(given);
    size_t b = strlen(want);
    /* Compare over the expected length always, so a short guess costs the same. */
    char *padded = xcalloc(b + 1, 1);
    memcpy(padded, given, a < b ? a : b);
    bool same = CRYPTO_memcmp(padded, want, b) == 0 && a == b;
    OPENSSL_cleanse(padded, b + 1);
    free(padded);
    return same;
}

void secret_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0)
        OPENSSL_cleanse(p, len);
}

void secret_wipe_str(char *s)
{
    if (s != NULL)
        secret_wipe(s, strlen(s));
}

void secret_free(char *s)
{
    secret_wipe_str(s);
    free(s);
}
