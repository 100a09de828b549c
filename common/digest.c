#include "common/digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "common/xalloc.h"

bool digest_valid(const char *digest)
{
    if (digest == NULL || strncmp(digest, "sha256:", 7) != 0)
        return false;
    const char *hex = digest + 7;
    size_t n = 0;
    for (; hex[n] != '\0'; n++) {
        char c = hex[n];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        if (n >= 64)
            return false;
    }
    return n == 64;
}

void digest_init(struct digest_ctx *ctx)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        /* OpenSSL fails here only when it cannot allocate. */
        xmalloc(SIZE_MAX);
    }
    ctx->md = md;
}

void digest_update(struct digest_ctx *ctx, const void *data, size_t len)
{
    EVP_DigestUpdate(ctx->md, data, len);
}

void digest_final(struct digest_ctx *ctx, char out[DIGEST_MAX])
{
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned int rawlen = 0;
    EVP_DigestFinal_ex(ctx->md, raw, &rawlen);
    memcpy(out, "sha256:", 7);
    for (unsigned int i = 0; i < rawlen && i < 32; i++)
        snprintf(out + 7 + i * 2, 3, "%02x", raw[i]);
    out[7 + 64] = '\0';
}

void digest_release(struct digest_ctx *ctx)
{
    if (ctx->md != NULL)
        EVP_MD_CTX_free(ctx->md);
    ctx->md = NULL;
}

void digest_of(const void *data, size_t len, char out[DIGEST_MAX])
{
    struct digest_ctx ctx;
    digest_init(&ctx);
    digest_update(&ctx, data, len);
    digest_final(&ctx, out);
    digest_release(&ctx);
}
