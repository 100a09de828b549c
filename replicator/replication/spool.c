#include "replication/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errors.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/xalloc.h"

#define SPOOL_WAKE_BYTES (64 * 1024)
/* Directories nftw() may hold open while it empties the spool. */
#define SPOOL_NFTW_FDS 16

struct spool_waiter {
    void (*wake)(void *arg);
    void *arg;
    uint64_t at; /* wake once written passes this */
};

struct spool_blob {
    struct spool *spool;
    char *digest;
    char *path;
    int fd;
    uint64_t size;
    uint64_t written; /* contiguous bytes from 0 */
    bool done;
    int rc;
    char *error;
    int refs;
    uint64_t last_used;
    struct spool_waiter *waiters;
    size_t n_waiters;
    struct spool_blob *next;
};

struct spool {
    char *dir;
    uint64_t cap;
    uint64_t bytes;
    uint64_t downloads;
    uint64_t clock;
    struct spool_blob *blobs;
};

/* Close and remove a spool file; what fails is logged (the next start empties the spool). */
static void spool_file_drop(int fd, const char *path)
{
    if (fd >= 0 && close(fd) < 0)
        log_warn("spool file not closed path=%s error=\"%s\"", path, strerror(errno));
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn("spool file not removed path=%s error=\"%s\"", path, strerror(errno));
}

static int spool_rm(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    /* What cannot be removed is logged and passed over: a new file never reuses its name. */
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    if (rc < 0 && errno != ENOENT)
        log_warn("spool leftover not removed path=%s error=\"%s\"", path, strerror(errno));
    return 0;
}

int spool_new(const char *dir, uint64_t cap_bytes, struct spool **out, char **err)
{
    /* Files of an earlier run may be partial: start empty. */
    if (nftw(dir, spool_rm, SPOOL_NFTW_FDS, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        log_warn("spool not emptied dir=%s error=\"%s\"", dir, strerror(errno));
    int rc = fs_mkdir_p(dir, 0700);
    if (rc < 0) {
        *err = xasprintf("spool %s: %s", dir, ferry_strerror(rc));
        return rc;
    }
    struct spool *s = xcalloc(1, sizeof(*s));
    s->dir = xstrdup(dir);
    s->cap = cap_bytes ? cap_bytes : SPOOL_DEFAULT_CAP_BYTES;
    *out = s;
    return 0;
}

static void spool_blob_destroy(struct spool_blob *b)
{
    struct spool *s = b->spool;
    struct spool_blob **pp = &s->blobs;
    while (*pp != NULL && *pp != b)
        pp = &(*pp)->next;
    if (*pp != NULL)
        *pp = b->next;
    spool_file_drop(b->fd, b->path);
    s->bytes -= b->written;
    free(b->digest);
    free(b->path);
    free(b->error);
    free(b->waiters);
    free(b);
}

void spool_free(struct spool *s)
{
    if (s == NULL)
        return;
    while (s->blobs != NULL)
        spool_blob_destroy(s->blobs);
    free(s->dir);
    free(s);
}

/* Over the cap: drop complete blobs nobody holds, least recently used first. */
static void spool_evict(struct spool *s)
{
    while (s->bytes > s->cap) {
        struct spool_blob *victim = NULL;
        for (struct spool_blob *b = s->blobs; b != NULL; b = b->next)
            if (b->refs == 0 && b->done && (victim == NULL || b->last_used < victim->last_used))
                victim = b;
        if (victim == NULL)
            return;
        spool_blob_destroy(victim);
    }
}

/* Room is short: drop every complete blob nobody holds. */
static void spool_evict_unused(struct spool *s)
{
    struct spool_blob *b = s->blobs;
    while (b != NULL) {
        struct spool_blob *next = b->next;
        if (b->refs == 0 && b->done)
            spool_blob_destroy(b);
        b = next;
    }
}

/* Reserve the blob's bytes, so that a full disk shows now, before a byte is
 * downloaded, and never halfway. 0, -ENOSPC, or 0 where the filesystem
 * cannot reserve (the writes then report a full disk themselves). */
static int spool_reserve(int fd, uint64_t size)
{
    if (size == 0)
        return 0;
    if (fallocate(fd, 0, 0, (off_t)size) == 0)
        return 0;
    return errno == ENOSPC ? -ENOSPC : 0;
}

int spool_acquire(struct spool *s, const char *digest, int64_t size, bool *created,
                  struct spool_blob **out, char **err)
{
    *created = false;
    *out = NULL;
    for (struct spool_blob *b = s->blobs; b != NULL; b = b->next) {
        if (strcmp(b->digest, digest) == 0 && !(b->done && b->rc < 0)) {
            b->refs++;
            b->last_used = ++s->clock;
            *out = b;
            return 0;
        }
    }
    const char *hex = strchr(digest, ':');
    hex = hex != NULL ? hex + 1 : digest;
    char *sub = xasprintf("%s/sha256/%.2s", s->dir, hex);
    int rc = fs_mkdir_p(sub, 0700);
    free(sub);
    if (rc < 0) {
        *err = xasprintf("spool %s: %s", s->dir, ferry_strerror(rc));
        return rc;
    }
    /* A generation suffix: a failed download's file may still be open. */
    char *path =
        xasprintf("%s/sha256/%.2s/%s.%llu", s->dir, hex, hex, (unsigned long long)s->downloads);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        *err = xasprintf("spool file %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    uint64_t want = size > 0 ? (uint64_t)size : 0;
    rc = spool_reserve(fd, want);
    if (rc == -ENOSPC) {
        spool_evict_unused(s);
        rc = spool_reserve(fd, want);
    }
    if (rc < 0) {
        spool_file_drop(fd, path);
        free(path);
        *err = xasprintf("spool %s has no room for %s (%llu bytes): %s", s->dir, digest,
                         (unsigned long long)want, strerror(-rc));
        return rc;
    }
    struct spool_blob *b = xcalloc(1, sizeof(*b));
    b->spool = s;
    b->digest = xstrdup(digest);
    b->path = path;
    b->fd = fd;
    b->size = want;
    b->refs = 1;
    b->last_used = ++s->clock;
    b->next = s->blobs;
    s->blobs = b;
    s->downloads++;
    *created = true;
    *out = b;
    return 0;
}

static void spool_blob_wake(struct spool_blob *b, bool all)
{
    /* Waiters may register again from their wake: work on a copy. */
    struct spool_waiter *list = b->waiters;
    size_t n = b->n_waiters;
    b->waiters = NULL;
    b->n_waiters = 0;
    for (size_t i = 0; i < n; i++) {
        if (all || b->written >= list[i].at) {
            list[i].wake(list[i].arg);
        } else {
            b->waiters = xrealloc(b->waiters, (b->n_waiters + 1) * sizeof(*b->waiters));
            b->waiters[b->n_waiters++] = list[i];
        }
    }
    free(list);
}

int spool_blob_write(struct spool_blob *b, const char *data, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(b->fd, data + done, len - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)n;
    }
    if (offset + len > b->written) {
        b->spool->bytes += offset + len - b->written;
        b->written = offset + len;
    }
    if (b->n_waiters > 0)
        spool_blob_wake(b, false);
    return 0;
}

void spool_blob_finish(struct spool_blob *b, int rc, const char *error)
{
    b->done = true;
    b->rc = rc;
    if (rc < 0)
        b->error = xstrdup(error != NULL ? error : ferry_strerror(rc));
    spool_blob_wake(b, true);
    spool_evict(b->spool);
}

ssize_t spool_blob_read(struct spool_blob *b, char *buf, size_t len, uint64_t offset)
{
    if (b->done && b->rc < 0)
        return b->rc;
    uint64_t avail = b->written;
    /* The last byte waits for the verified digest. */
    if (!b->done && b->size > 0 && avail >= b->size)
        avail = b->size - 1;
    if (offset >= avail)
        return b->done ? 0 : SPOOL_WAIT;
    size_t n = len < avail - offset ? len : (size_t)(avail - offset);
    ssize_t got = pread(b->fd, buf, n, (off_t)offset);
    if (got < 0)
        return -errno;
    if (got == 0)
        return SPOOL_WAIT;
    return got;
}

const char *spool_blob_error(const struct spool_blob *b)
{
    return b->done && b->rc < 0 ? b->error : NULL;
}

void spool_blob_wait(struct spool_blob *b, void (*wake)(void *arg), void *arg)
{
    for (size_t i = 0; i < b->n_waiters; i++)
        if (b->waiters[i].arg == arg)
            return;
    if (b->done) {
        wake(arg);
        return;
    }
    b->waiters = xrealloc(b->waiters, (b->n_waiters + 1) * sizeof(*b->waiters));
    uint64_t at = b->written + SPOOL_WAKE_BYTES;
    if (b->size > 0 && at > b->size)
        at = b->size;
    b->waiters[b->n_waiters++] = (struct spool_waiter){.wake = wake, .arg = arg, .at = at};
}

void spool_blob_unwait(struct spool_blob *b, void *arg)
{
    for (size_t i = 0; i < b->n_waiters; i++) {
        if (b->waiters[i].arg == arg) {
            b->waiters[i] = b->waiters[--b->n_waiters];
            return;
        }
    }
}

void spool_release(struct spool_blob *b)
{
    if (b == NULL)
        return;
    b->last_used = ++b->spool->clock;
    if (--b->refs > 0)
        return;
    if (b->done && b->rc < 0) {
        spool_blob_destroy(b);
        return;
    }
    spool_evict(b->spool);
}

uint64_t spool_bytes(const struct spool *s)
{
    return s->bytes;
}

uint64_t spool_downloads(const struct spool *s)
{
    return s->downloads;
}
