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

#endif
