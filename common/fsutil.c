#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
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

static bool fs_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The line read, trimmed of white space, as a fresh secret; or *err. */
static int fs_trim_secret(const struct buf *line, const char *path, char **secret, char **err)
{
    const char *start = line->data != NULL ? line->data : "";
    const char *end = start + line->len;
    while (start < end && fs_is_space(*start))
        start++;
    while (end > start && fs_is_space(end[-1]))
        end--;
    if (end == start) {
        *err = xasprintf("the first line of %s is empty", path);
        return FERRY_EINVAL;
    }
    if (memchr(start, '\0', (size_t)(end - start)) != NULL) {
        *err = xasprintf("%s holds a NUL byte", path);
        return FERRY_EINVAL;
    }
    *secret = xstrndup(start, (size_t)(end - start));
    return 0;
}

int fs_read_secret_line(const char *path, size_t max, char **secret, mode_t *mode, char **err)
{
    struct buf contents;
    struct stat st;
    int rc = 0;

    *secret = NULL;
    *err = NULL;
    if (mode != NULL)
        *mode = 0;
    buf_init(&contents, max);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
    } else {
        if (fstat(fd, &st) < 0)
            rc = -errno;
        else if (mode != NULL)
            *mode = st.st_mode;
        if (rc == 0 && S_ISDIR(st.st_mode))
            rc = -EISDIR;
        else if (rc == 0)
            rc = fs_read_fd(fd, true, &contents);
        (void)close(fd); /* only read from: a failed close loses nothing */
    }
    if (rc == FERRY_ETOOBIG)
        *err = xasprintf("the first line of %s is longer than %zu bytes", path, max);
    else if (rc < 0)
        *err = xasprintf("cannot read %s: %s", path, strerror(-rc));
    else
        rc = fs_trim_secret(&contents, path, secret, err);
    if (contents.data != NULL)
        secret_wipe(contents.data, contents.alloc);
    buf_release(&contents);
    return rc;
}
