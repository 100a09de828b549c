/*
 * digest: content digests as the OCI spec writes them ("sha256:<hex>"), and
 * streaming SHA-256 through OpenSSL so that no blob is held whole to hash it.
 */
#ifndef FERRY_DIGEST_H
#define FERRY_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

/* "sha256:" + 64 hex digits + NUL. */
#define DIGEST_MAX 72

struct digest_ctx {
    void *md; /* EVP_MD_CTX, kept opaque to spare includers OpenSSL's headers */
};

/**
 * True when `digest` is a well-formed sha256 digest: "sha256:" followed by
 * exactly 64 lowercase hex digits. Ferry verifies only what it can hash.
 */
bool digest_valid(const char *digest);

/** Start hashing. Pair with digest_release(). */
void digest_init(struct digest_ctx *ctx);

/** Feed `len` bytes. */
void digest_update(struct digest_ctx *ctx, const void *data, size_t len);

/** Write "sha256:<hex>" of everything fed so far into `out`; the context is spent. */
void digest_final(struct digest_ctx *ctx, char out[DIGEST_MAX]);

/** Free the context; safe after digest_final() and on a released context. */
void digest_release(struct digest_ctx *ctx);

/** Digest of a buffer in one call. */
void digest_of(const void *data, size_t len, char out[DIGEST_MAX]);

#endif
