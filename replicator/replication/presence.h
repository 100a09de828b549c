/*
 * presence: a cache of which repositories of a destination registry are known
 * to hold a blob, so that copying another image that shares a layer can mount
 * it across repositories (POST ?mount=&from=) instead of uploading it again.
 *
 * It lives in RocksDB so that separate `ferry copy` processes share it, but it
 * is only a cache: writes are not synced, a corrupt entry reads as empty, and
 * callers that cannot open it go on without one. A hint from it may be stale;
 * callers tell it with presence_forget() when a registry disagrees.
 *
 * One process at a time holds the cache open (RocksDB's lock). A handle is not
 * safe for concurrent use from several threads: presence_add() and
 * presence_forget() read, modify and write one entry.
 */
#ifndef FERRY_PRESENCE_H
#define FERRY_PRESENCE_H

#include "common/errors.h"

#include <stdbool.h>

/* Repositories remembered per (registry, digest); the oldest fall off. */
#define PRESENCE_MAX_REPOS 16

/* Longest registry, digest or repository name accepted, in bytes. */
#define PRESENCE_MAX_NAME 1024

struct presence;

/**
 * Open the cache in directory `dir`, creating it and any missing parents with
 * mode 0700. On success returns 0, stores the handle in `*out` (free it with
 * presence_close()) and sets `*err` to NULL. On failure returns a negative
 * code, leaves `*out` NULL and stores in `*err` a one-line message that the
 * caller frees: FERRY_EINVAL for a NULL or empty `dir`, -errno when the
 * directory cannot be created, -EBUSY when another process (or another handle
 * in this one) holds the cache's lock, -EIO for any other RocksDB failure
 * (its text is also logged at debug level). Callers then go on without a
 * cache. `err` may be NULL when the message is not wanted.
 */
FERRY_MUST_CHECK int presence_open(const char *dir, struct presence **out, char **err);

/** Close the cache and free the handle; NULL is ignored. Unsynced writes are kept. */
void presence_close(struct presence *p);

/**
 * Remember that repository `repo` on `registry` ("host:port") holds blob
 * `digest`. `repo` moves to the front of that blob's list (no duplicates);
 * beyond PRESENCE_MAX_REPOS entries the least recently added are dropped.
 * Returns 0; FERRY_EINVAL when `p` is NULL or a name is empty, longer than
 * PRESENCE_MAX_NAME bytes or contains a newline; -EIO when RocksDB fails (its
 * text is logged at debug level). A corrupt stored entry is replaced.
 */
FERRY_MUST_CHECK int presence_add(struct presence *p, const char *registry, const char *digest,
                                  const char *repo);

/**
 * A repository other than `not_repo` (which may be NULL) known to hold `digest`
 * on `registry`, the most recently added first. Returns a string the caller
 * frees, or NULL when there is none, when the inputs are invalid as for
 * presence_add(), when the stored entry is corrupt or when RocksDB fails.
 */
char *presence_find(struct presence *p, const char *registry, const char *digest,
                    const char *not_repo);

/**
 * As presence_find() with `repo` as `not_repo`, and *holds (may be NULL) set
 * to whether `repo` itself is known to hold `digest`.
 */
char *presence_lookup(struct presence *p, const char *registry, const char *digest,
                      const char *repo, bool *holds);

/**
 * Forget that `repo` holds `digest` on `registry`, for when the registry
 * answered BLOB_UNKNOWN or a mount from it failed. Forgetting what is not
 * remembered succeeds; a corrupt stored entry is deleted. Returns 0,
 * FERRY_EINVAL for invalid inputs as presence_add(), or -EIO when RocksDB
 * fails.
 */
FERRY_MUST_CHECK int presence_forget(struct presence *p, const char *registry, const char *digest,
                                     const char *repo);

/**
 * The default cache directory: "$XDG_CACHE_HOME/ferry/presence" when
 * XDG_CACHE_HOME is an absolute path (the XDG spec says to ignore a relative
 * one), else "$HOME/.cache/ferry/presence" when HOME is set and not empty;
 * NULL otherwise. The caller frees the string.
 */
char *presence_default_dir(void);

#endif
