/*
 * fuzz: what the fuzz targets share — the contract check of a one-line
 * error, the optional "Content-Type: VALUE\n" first line, and a scratch file
 * for parsers that read a path.
 */
#ifndef FERRY_FUZZ_H
#define FERRY_FUZZ_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/xalloc.h"

/* A failure's message: present, one line, printable. */
static inline void fuzz_check_message(const char *err)
{
    if (err == NULL || err[0] == '\0')
        abort();
    for (const char *c = err; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            abort();
    }
}

#define FUZZ_CONTENT_TYPE_LINE "Content-Type: "

/*
 * Split an optional first line "Content-Type: VALUE\n" off the input: returns
 * VALUE (caller frees) or NULL, and sets *body and *len to the rest.
 */
static inline char *fuzz_content_type(const uint8_t *data, size_t size, const char **body,
                                      size_t *len)
{
    size_t prefix = strlen(FUZZ_CONTENT_TYPE_LINE);
    *body = (const char *)data;
    *len = size;
    if (size < prefix || memcmp(data, FUZZ_CONTENT_TYPE_LINE, prefix) != 0)
        return NULL;
    const char *newline = memchr(*body, '\n', size);
    if (newline == NULL)
        return NULL;
    char *value = xstrndup(*body + prefix, (size_t)(newline - *body) - prefix);
    *len = size - (size_t)(newline + 1 - *body);
    *body = newline + 1;
    return value;
}

/* One scratch file in a private directory under $TMPDIR, removed at exit. */
static char *fuzz_file_dir;
static char *fuzz_file_path;

static inline void fuzz_file_remove(void)
{
    unlink(fuzz_file_path);
    rmdir(fuzz_file_dir);
    free(fuzz_file_path);
    free(fuzz_file_dir);
}

/* Make the directory (named after `tag`) once; returns the file's path. */
static inline const char *fuzz_file_setup(const char *tag, const char *name)
{
    if (fuzz_file_path != NULL)
        return fuzz_file_path;
    const char *tmp = getenv("TMPDIR");
    fuzz_file_dir = xasprintf("%s/ferry-fuzz-%s.XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp", tag);
    if (mkdtemp(fuzz_file_dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    fuzz_file_path = xasprintf("%s/%s", fuzz_file_dir, name);
    atexit(fuzz_file_remove);
    return fuzz_file_path;
}

/* Replace the scratch file's contents with the input (mode 0600). */
static inline void fuzz_file_write(const uint8_t *data, size_t size)
{
    int fd = open(fuzz_file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("open");
        abort();
    }
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n <= 0) {
            perror("write");
            abort();
        }
        data += n;
        size -= (size_t)n;
    }
    close(fd);
}

#endif
