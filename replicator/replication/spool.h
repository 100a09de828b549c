/*
 * spool: the engine's content-addressed blob store (DESIGN.md §4).
 *
 * A blob needed by several destinations is downloaded from the source once
 * (single-flight per digest) into <dir>/sha256/ab/<hex>, verified while it
 * streams, and read by every upload that needs it, at its own pace and from
 * any offset: readers may follow a file that is still being written, and an
 * upload that retries reads the file again instead of the source. Memory does
 * not grow with blob size. Files no job holds are evicted, least recently
 * used first, once the spool passes its size cap.
 */
#ifndef FERRY_SPOOL_H
#define FERRY_SPOOL_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct spool;
struct spool_blob;

/* What the spool holds of blobs no one uses when its owner gives no cap. */
#define SPOOL_DEFAULT_CAP_BYTES (10ull * 1024 * 1024 * 1024)

/* Returned by spool_blob_read() when the bytes are not written yet. */
#define SPOOL_WAIT (-1000001)

/**
 * A spool in `dir` (created; files left from an earlier run are removed,
 * since nothing proves they were complete) holding at most `cap_bytes` of
 * blobs no one uses (0: SPOOL_DEFAULT_CAP_BYTES, 10 GiB). Returns 0 or a
 * negative code with *err.
 */
FERRY_MUST_CHECK int spool_new(const char *dir, uint64_t cap_bytes, struct spool **out, char **err);

/** Free the spool; every blob must have been released. */
void spool_free(struct spool *s);

/**
 * Take a reference to the blob `digest` of `size` bytes. *created is true
 * when this call made the entry: the caller must then download it, feeding
 * spool_blob_write() and ending with spool_blob_finish(). A blob whose
 * download failed is dropped from the table, so the next acquire starts over.
 * A new entry reserves its `size` bytes on disk first (evicting blobs nobody
 * holds when room is short). Returns 0 with *out, or a negative code with
 * *err: -ENOSPC when the spool's filesystem has no room for the blob (the
 * caller streams it without the spool), another code when the file cannot be
 * created.
 */
FERRY_MUST_CHECK int spool_acquire(struct spool *s, const char *digest, int64_t size, bool *created,
                                   struct spool_blob **out, char **err);

/** Write downloaded bytes at `offset`; 0 or -errno (e.g. -ENOSPC). */
FERRY_MUST_CHECK int spool_blob_write(struct spool_blob *b, const char *data, size_t len,
                                      uint64_t offset);

/** The download ended: rc 0 when the digest verified, else its error. Wakes every waiter. */
void spool_blob_finish(struct spool_blob *b, int rc, const char *error);

/**
 * Read up to `len` bytes at `offset`. Returns the count; SPOOL_WAIT when they
 * are not there yet (and the last byte is held back until the digest is
 * verified); or the download's error. Register with spool_blob_wait() to be
 * woken.
 */
FERRY_MUST_CHECK ssize_t spool_blob_read(struct spool_blob *b, char *buf, size_t len,
                                         uint64_t offset);

/** The download's error message once it failed, else NULL. */
const char *spool_blob_error(const struct spool_blob *b);

/**
 * Call `wake(arg)` once, when more bytes arrive (at least 64 KiB, or the
 * end) or the download ends. A second wait for the same `arg` before the
 * wake is ignored.
 */
void spool_blob_wait(struct spool_blob *b, void (*wake)(void *arg), void *arg);

/** Forget a waiter registered with `arg` (its owner goes away). */
void spool_blob_unwait(struct spool_blob *b, void *arg);

/** Drop a reference. */
void spool_release(struct spool_blob *b);

/** Bytes on disk, and blobs downloaded so far (for tests and stats). */
uint64_t spool_bytes(const struct spool *s);
uint64_t spool_downloads(const struct spool *s);

#endif
