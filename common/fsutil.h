/*
 * fsutil: small file-system helpers shared by the journal and the replicator
 * (and reading the files that may hold secrets: configs, password files).
 */
#ifndef FERRY_FSUTIL_H
#define FERRY_FSUTIL_H

#include "common/errors.h"

#include <stdbool.h>
#include <sys/types.h>

struct buf;

/**
 * Create `dir` and its missing parents with `mode` (existing ones keep
 * theirs). Returns 0 when `dir` is a directory afterwards, -ENOTDIR when a
 * file stands in the way, or another -errno.
 */
FERRY_MUST_CHECK int fs_mkdir_p(const char *dir, mode_t mode);

/**
 * Read `fd` to its end into `contents` (whose limit caps it), or with
 * `first_line` only up to the first newline (not kept). What passes through
 * Ferry's own stack buffer is wiped afterwards: files read this way may hold
 * secrets. Returns 0, FERRY_ETOOBIG past the buffer's limit, or -errno.
 */
FERRY_MUST_CHECK int fs_read_fd(int fd, bool first_line, struct buf *contents);

/**
 * The first line of the file at `path` (a password or token file), trimmed
 * of white space, into a fresh *secret (wipe it with secret_free()); every
 * other copy of its bytes is wiped. At most `max` bytes are read. *mode
 * (may be NULL) gets the file's mode when it could be opened, else 0.
 * Returns 0, or a code with a one-line *err (caller frees) that names the
 * file and never holds its contents: FERRY_ETOOBIG for a line longer than
 * `max`, FERRY_EINVAL for an empty line or a NUL byte, -errno when it cannot
 * be read.
 */
FERRY_MUST_CHECK int fs_read_secret_line(const char *path, size_t max, char **secret, mode_t *mode,
                                         char **err);

#endif
