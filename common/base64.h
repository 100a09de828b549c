/*
 * base64: the encoding of Basic credentials, Docker config "auth" entries,
 * JWT segments and ECR tokens. Both directions work on secrets: nothing is
 * left behind but the result, which the caller wipes (secret_free()).
 */
#ifndef FERRY_BASE64_H
#define FERRY_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/** Standard base64 (RFC 4648 section 4) of `len` bytes, padded. Caller frees. Never NULL. */
char *base64_encode(const void *data, size_t len);

/**
 * Base64 with the URL alphabet ('-', '_'; RFC 4648 section 5), unpadded:
 * a name made safe for a NATS subject token. Caller frees. Never NULL.
 */
char *base64url_encode(const void *data, size_t len);

/**
 * Decode `len` characters of base64, padded or not, into a fresh C string;
 * with `url`, the URL alphabet ('-', '_', RFC 4648 section 5) is taken too.
 * NULL for a character outside the alphabet, an impossible length or
 * padding, or a decoded NUL byte (the result is text).
 */
char *base64_decode_text(const char *in, size_t len, bool url);

#endif
