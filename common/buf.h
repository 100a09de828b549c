/*
 * buf: a growable byte buffer with a hard cap, for everything that grows
 * from network or file input (manifests, token responses, error bodies).
 * The data is always NUL-terminated so that text can be parsed in place.
 */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include "common/errors.h"

#include <stddef.h>

struct buf {
    char *data;   /* NULL until the first append; then NUL-terminated */
    size_t len;   /* bytes held, excluding the terminator */
    size_t alloc; /* bytes allocated */
    size_t limit; /* appends that would pass this many bytes fail */
};

/** Start an empty buffer that refuses to grow past `limit` bytes. */
void buf_init(struct buf *b, size_t limit);

/**
 * Append `len` bytes. Returns 0, or FERRY_ETOOBIG (and appends nothing) when
 * the result would pass the buffer's limit.
 */
FERRY_MUST_CHECK int buf_append(struct buf *b, const void *data, size_t len);

/** Append a NUL-terminated string; as buf_append(). */
FERRY_MUST_CHECK int buf_append_str(struct buf *b, const char *s);

/** Forget the contents but keep the allocation and the limit. */
void buf_reset(struct buf *b);

/** Hand the data (never NULL, NUL-terminated) to the caller and empty the buffer. */
char *buf_detach(struct buf *b, size_t *len);

/** Free the data; the buffer may be initialised again. */
void buf_release(struct buf *b);

#endif
