/*
 * fsutil: small file-system helpers shared by the journal and the replicator.
 */
#ifndef FERRY_FSUTIL_H
#define FERRY_FSUTIL_H

#include <sys/types.h>

/**
 * Create `dir` and its missing parents with `mode` (existing ones keep
 * theirs). Returns 0 when `dir` is a directory afterwards, -ENOTDIR when a
 * file stands in the way, or another -errno.
 */
int fs_mkdir_p(const char *dir, mode_t mode);

#endif
