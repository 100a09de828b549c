#include "common/fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/xalloc.h"

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
