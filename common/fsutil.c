#include "common/fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/secret.h"
#include "common/xalloc.h"

/* How much of a file one read() takes. */
#define FS_READ_CHUNK 16384

/*
 * Each prefix is created in turn. A prefix that already exists as a
 * directory is fine whatever mkdir() says about it, since mkdir() may report
 * EACCES rather than EEXIST for a directory we cannot write.
 */
int fs_mkdir_p(const char *dir, mode_t mode)
{
    char *path = xstrdup(dir);
    size_t len = strlen(path);
    struct stat st;
    int rc = 0;

    for (size_t i = 1; i <= len; i++) {
        if ((path[i] != '/' && path[i] != '\0') || path[i - 1] == '/')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, mode) < 0) {
            int saved_errno = errno;
            if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
                rc = saved_errno == EEXIST ? -ENOTDIR : -saved_errno;
                goto out;
            }
        }
        path[i] = saved;
    }
    if (stat(dir, &st) < 0)
        rc = -errno;
    else if (!S_ISDIR(st.st_mode))
        rc = -ENOTDIR;
out:
    free(path);
    return rc;
}

int fs_read_fd(int fd, bool first_line, struct buf *contents)
{
    char chunk[FS_READ_CHUNK];
    int rc = 0;

    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        char *newline = first_line ? memchr(chunk, '\n', (size_t)n) : NULL;
        if (newline != NULL)
            n = newline - chunk;
        rc = buf_append(contents, chunk, (size_t)n);
        if (rc < 0 || newline != NULL)
            break;
    }
    secret_wipe(chunk, sizeof(chunk));
    return rc;
}
