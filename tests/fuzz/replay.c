/*
 * replay: runs a fuzz target's LLVMFuzzerTestOneInput() on every file of
 * the directories given, so that ctest replays each seed corpus and every
 * regression input with gcc, in the plain build and under ASan+UBSan,
 * without clang or libFuzzer.
 *
 *   fuzz_replay_NAME DIR [DIR...]
 *
 * A directory that does not exist is skipped (a target may have no
 * regressions yet); at least one input must be found in all. Files are
 * replayed in name order, so that a failure is reproducible. Exits 0 when
 * every input ran; a finding aborts the process as it would under libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libFuzzer's default -max_len is far below this; a corpus file is small. */
#define REPLAY_MAX_INPUT (8 * 1024 * 1024)

static int replay_names_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read `path` whole into a fresh buffer (never NULL, even when empty). */
static int replay_read(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    int rc = 0;
    if (f == NULL)
        return -errno;
    size_t alloc = 4096;
    size_t len = 0;
    uint8_t *buf = xmalloc(alloc);
    for (;;) {
        if (len == alloc) {
            if (alloc >= REPLAY_MAX_INPUT) {
                rc = -EFBIG;
                break;
            }
            alloc *= 2;
            buf = xrealloc(buf, alloc);
        }
        size_t n = fread(buf + len, 1, alloc - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                rc = -EIO;
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    /*
     * An exact-size copy, so that ASan catches a target that reads one byte
     * past the input, as libFuzzer's own copy would.
     */
    *data = xmalloc(len > 0 ? len : 1);
    memcpy(*data, buf, len);
    *size = len;
    free(buf);
    return 0;
}

/* Replay every regular file of `dir`; adds to *count. -1 on a read error. */
static int replay_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    size_t alloc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 64;
            names = xrealloc(names, alloc * sizeof(*names));
        }
        names[n++] = xasprintf("%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), replay_names_compare);

    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        uint8_t *data = NULL;
        size_t size = 0;
        int read_rc = replay_read(names[i], &data, &size);
        if (read_rc < 0) {
            fprintf(stderr, "replay: cannot read %s: %s\n", names[i], strerror(-read_rc));
            rc = -1;
            continue;
        }
        /* Named before it runs: if it crashes, the log says which input did it. */
        printf("replay: %s (%zu bytes)\n", names[i], size);
        fflush(stdout);
        LLVMFuzzerTestOneInput(data, size);
        free(data);
        (*count)++;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [DIR...]\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (replay_dir(argv[i], &count) < 0)
            rc = 1;
    }
    if (count == 0) {
        fprintf(stderr, "replay: no input found in the directories given\n");
        return 1;
    }
    printf("replay: %zu inputs ran\n", count);
    return rc;
}
