/*
 * copy_transfer.c: one blob's bytes on their way up. The download streams
 * into a ring the upload reads (or, with a spool, into a file every copy of
 * the blob shares); a mount goes first where there is a source for it; the
 * upload never gets the last byte before the download has verified the
 * digest. Nothing is resumed inside libcurl's callbacks: the copy's kick
 * timer does it from the loop.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "replication/copy_int.h"

/* ---- the end of a transfer ---- */

void copy_blob_release_pipe(struct copy_blob *b)
{
    if (b->ring_ready)
        ring_release(&b->ring);
    b->ring_ready = false;
    if (b->sb != NULL) {
        spool_blob_unwait(b->sb, b);
        spool_release(b->sb);
        b->sb = NULL;
    }
}

/* Both halves of a transfer are over: decide what the blob's outcome is. */
static void blob_transfer_settle(struct copy_blob *b)
{
    struct copy *c = b->copy;
    if (b->state == BLOB_DONE || b->download_active || b->upload_active)
        return;
    /* A broken download explains a broken upload better than the upload's own
     * error, unless the upload's failure is what broke it. */
    if (b->download_started && b->download_rc < 0 && !b->download_dropped) {
        copy_blob_finish(b, b->download_fault, b->download_rc, b->download_error);
    } else if (b->sb != NULL && spool_blob_error(b->sb) != NULL && b->upload_rc < 0) {
        /* copy_blob_finish releases the spool blob, and its error text with it. */
        char *why = xstrdup(spool_blob_error(b->sb));
        copy_blob_finish(b, b->upload_fault, b->upload_rc, why);
        free(why);
    } else if (b->upload_rc < 0) {
        copy_blob_finish(b, b->upload_fault, b->upload_rc, b->upload_error);
    } else {
        if (b->outcome == REGISTRY_MOUNTED) {
            c->sum->blobs_mounted++;
        } else {
            c->sum->blobs_copied++;
            c->sum->bytes_copied += (uint64_t)b->size;
        }
        copy_blob_finish(b, COPY_FAULT_NONE, 0, NULL);
    }
}

static void copy_kick(uv_timer_t *timer);

/* Ask the loop to run copy_kick(): nothing is resumed inside libcurl's callbacks. */
static void copy_schedule_kick(struct copy *c)
{
    if (uv_is_active((uv_handle_t *)&c->kick))
        return;
    /* It fails only on a closing handle, and the copy is freed only once done. */
    int rc = uv_timer_start(&c->kick, copy_kick, 0, 0);
    if (rc < 0)
        log_error("copy cannot wake its transfers error=\"%s\"", uv_strerror(rc));
}

/* ---- the download, into the ring or the spool ---- */

static int blob_pipe_sink(const char *data, size_t len, uint64_t offset, void *arg)
{
    struct copy_blob *b = arg;

    if (b->sb != NULL) {
        int rc = spool_blob_write(b->sb, data, len, offset);
        if (rc < 0)
            b->download_fault = COPY_FAULT_LOCAL;
        return rc;
    }

    /* After a restart the upload needs nothing before restart_from. */
    if (offset + len <= b->ring.start)
        return 0;
    if (offset < b->ring.start) {
        size_t drop = (size_t)(b->ring.start - offset);
        data += drop;
        len -= drop;
    }
    if (ring_space(&b->ring) < len) {
        b->download_paused = true;
        return HTTP_SINK_PAUSE;
    }
    ring_write(&b->ring, data, len);
    if (b->upload_deferred && !b->resume_upload) {
        /* The first bytes: the upload may begin (see blob_upload_try). */
        b->resume_upload = true;
        copy_schedule_kick(b->copy);
    }
    if (b->upload_waiting && (ring_end(&b->ring) - b->sent >= COPY_PIPE_WAKE_BYTES ||
                              ring_end(&b->ring) == (uint64_t)b->size)) {
        b->upload_waiting = false;
        b->resume_upload = true;
        copy_schedule_kick(b->copy);
    }
    return 0;
}

static void blob_download_start(struct copy_blob *b);
static void blob_upload_try(struct copy_blob *b);

static void blob_download_done(int rc, const char *error, void *arg)
{
    struct copy_blob *b = arg;
    log_debug("download done digest=%s rc=%d", b->digest, rc);
    b->download_active = false;
    b->download = NULL;
    b->download_paused = false;
    if (rc == FERRY_ECANCELED && b->download_restart && b->upload_active) {
        /* The upload went back past what the ring holds: fetch again. */
        b->download_restart = false;
        ring_reset(&b->ring, b->restart_from);
        blob_download_start(b);
        copy_op_finished(b->copy);
        return;
    }
    b->download_rc = rc;
    if (rc < 0) {
        b->download_error = xstrdup(error);
        if (b->download_fault == COPY_FAULT_NONE)
            b->download_fault = COPY_FAULT_SOURCE;
    } else {
        b->verified = true;
    }
    if (b->sb != NULL && b->sb_owner)
        spool_blob_finish(b->sb, rc, error);
    if (b->upload_deferred) {
        /* The whole blob came before the upload began (small or empty), or
         * none of it: begin the upload now, or fail without one. */
        blob_upload_try(b);
    } else if (b->upload_active && b->upload_waiting) {
        /* Wake the upload: it either sends the last byte now or learns of the failure. */
        b->upload_waiting = false;
        b->resume_upload = true;
        copy_schedule_kick(b->copy);
    }
    blob_transfer_settle(b);
    copy_op_finished(b->copy);
}

static void blob_download_start(struct copy_blob *b)
{
    struct copy *c = b->copy;
    log_debug("download start digest=%s size=%lld from=%llu", b->digest, (long long)b->size,
              (unsigned long long)b->ring.start);
    b->download_started = true;
    b->download_active = true;
    b->verified = false;
    copy_op_started(c);
    int rc = registry_blob_get(c->src, c->src_repo, b->digest, b->size, blob_pipe_sink, b,
                               blob_download_done, b, &b->download);
    if (rc < 0) {
        b->download_active = false;
        b->download_rc = rc;
        b->download_fault = COPY_FAULT_LOCAL;
        b->download_error = xasprintf("cannot download %s", b->digest);
        /* Copies reading the spool would wait for it forever. */
        if (b->sb != NULL && b->sb_owner)
            spool_blob_finish(b->sb, rc, b->download_error);
        copy_op_finished(c);
    }
}

static void copy_kick(uv_timer_t *timer)
{
    struct copy *c = timer->data;
    for (size_t i = 0; i < c->n_blobs; i++) {
        struct copy_blob *b = c->blobs[i];
        if (b->state != BLOB_ACTIVE)
            continue;
        if (b->upload_deferred) {
            if (b->resume_upload) {
                b->resume_upload = false;
                blob_upload_try(b);
            }
            continue;
        }
        if (b->download_dropped && b->download_active) {
            registry_download_cancel(b->download);
            continue;
        }
        if (b->download_requested && !b->download_started && b->upload_active) {
            if (b->ring_ready)
                ring_reset(&b->ring, b->restart_from);
            blob_download_start(b);
        }
        if (b->download_restart && b->download_active) {
            /* Its callback restarts it (see blob_download_done). */
            registry_download_cancel(b->download);
            continue;
        }
        if (b->download_restart && !b->download_active && b->upload_active) {
            b->download_restart = false;
            ring_reset(&b->ring, b->restart_from);
            blob_download_start(b);
        }
        if (b->resume_download && b->download_active) {
            b->resume_download = false;
            b->download_paused = false;
            registry_download_resume(b->download);
        }
        if (b->resume_upload && b->upload_active && b->upload != NULL) {
            b->resume_upload = false;
            registry_upload_resume(b->upload);
        }
    }
}

static void blob_spool_wake(void *arg)
{
    struct copy_blob *b = arg;
    b->resume_upload = true;
    copy_schedule_kick(b->copy);
}

/*
 * Take the blob's spool entry: the first copy that needs the blob downloads
 * it (sb_owner), every other copy (other destinations, retries) reads what
 * is there and waits for the rest. A spool without room is an economy lost,
 * not a failure: the blob then streams from the source through a ring of its
 * own, as it would without a spool. 0, or a negative code with *err.
 */
static int blob_spool_take(struct copy_blob *b, char **err)
{
    struct copy *c = b->copy;
    bool created = false;

    *err = NULL;
    int rc = spool_acquire(c->spool, b->digest, b->size, &created, &b->sb, err);
    if (rc == -ENOSPC) {
        log_warn("spool full, streaming from the source instead digest=%s dest=%s error=\"%s\"",
                 b->digest, registry_host(c->dst), *err);
        free(*err);
        *err = NULL;
        ring_init(&b->ring, COPY_PIPE_BYTES);
        b->ring_ready = true;
        return 0;
    }
    if (rc < 0) {
        log_error("%s", *err);
        b->upload_fault = COPY_FAULT_LOCAL;
        return rc;
    }
    b->sb_owner = created;
    return 0;
}

/*
 * Read the spool. Its failure is either the owner's download, whose code it
 * keeps (Ferry's own codes, from the source; -errno, from the owner's spool
 * file), or this read's own (-errno).
 */
static ssize_t blob_spool_read(struct copy_blob *b, char *buf, size_t len, uint64_t offset)
{
    ssize_t n = spool_blob_read(b->sb, buf, len, offset);
    if (n < 0 && n != SPOOL_WAIT)
        b->upload_fault = spool_blob_error(b->sb) != NULL && n <= FERRY_ERRBASE ? COPY_FAULT_SOURCE
                                                                                : COPY_FAULT_LOCAL;
    return n;
}

static ssize_t blob_pipe_source(char *buf, size_t len, uint64_t offset, void *arg);

/*
 * With a spool the upload reads the shared file. An upload that began before
 * its source did (a mount the registry turned into an upload) takes the
 * spool entry here, and its owner starts the download from the loop.
 */
static ssize_t blob_spool_source(char *buf, size_t len, uint64_t offset, void *arg)
{
    struct copy_blob *b = arg;
    struct copy *c = b->copy;

    if (b->ring_ready) /* the spool had no room for it: the ring after all */
        return blob_pipe_source(buf, len, offset, arg);
    if (b->sb == NULL) {
        char *err = NULL;
        int rc = blob_spool_take(b, &err);
        free(err);
        if (rc < 0)
            return rc;
        if (b->ring_ready)
            return blob_pipe_source(buf, len, offset, arg);
        if (b->sb_owner) {
            /* Not inside libcurl's callback: the loop starts it. */
            b->download_requested = true;
            copy_schedule_kick(c);
        }
    }
    ssize_t n = blob_spool_read(b, buf, len, offset);
    if (n == SPOOL_WAIT) {
        b->upload_waiting = true;
        spool_blob_wait(b->sb, blob_spool_wake, b);
        return HTTP_SOURCE_WAIT;
    }
    if (n > 0 && offset + (uint64_t)n > b->sent) {
        b->sent = offset + (uint64_t)n;
        if (b->watch != NULL)
            c->observer->blob_moved(c->observer->arg, b->watch, b->sent);
    }
    return n;
}

/*
 * The upload reads what the download has put in the ring. It never gets the
 * blob's last byte before the download has verified the digest, so a blob
 * that turns out corrupt is never completed at the destination.
 */
static ssize_t blob_pipe_source(char *buf, size_t len, uint64_t offset, void *arg)
{
    struct copy_blob *b = arg;
    struct copy *c = b->copy;

    if (!b->download_started || b->download_restart) {
        if (!b->download_started && !b->download_requested) {
            b->download_requested = true;
            b->restart_from = offset;
            copy_schedule_kick(c);
        }
        b->upload_waiting = true;
        return HTTP_SOURCE_WAIT;
    }
    if (!b->download_active && b->download_rc < 0)
        return b->download_rc;
    if (offset < b->ring.start) {
        /* A retry went back to bytes the ring has let go: download again. */
        b->download_restart = true;
        b->restart_from = offset;
        b->upload_waiting = true;
        copy_schedule_kick(c);
        return HTTP_SOURCE_WAIT;
    }
    uint64_t avail = ring_end(&b->ring);
    if (!b->verified && b->size > 0 && avail >= (uint64_t)b->size)
        avail = (uint64_t)b->size - 1;
    if (offset >= avail) {
        b->upload_waiting = true;
        return HTTP_SOURCE_WAIT;
    }
    size_t want = len;
    if (want > avail - offset)
        want = (size_t)(avail - offset);
    size_t got = ring_read(&b->ring, buf, want, offset);
    /* Sent bytes are dropped; a retry that wants them back downloads again. */
    ring_consume(&b->ring, offset + got);
    if (offset + got > b->sent) {
        b->sent = offset + got;
        if (b->watch != NULL)
            c->observer->blob_moved(c->observer->arg, b->watch, b->sent);
    }
    if (b->download_paused && ring_space(&b->ring) >= COPY_PIPE_WAKE_BYTES) {
        b->download_paused = false;
        b->resume_download = true;
        copy_schedule_kick(c);
    }
    return (ssize_t)got;
}

/*
 * The upload failed while its download runs: a full ring would hold the
 * download paused for ever, so it is canceled (from the loop).
 */
static void blob_download_drop(struct copy_blob *b)
{
    if (b->download_active && b->sb == NULL) {
        b->download_dropped = true;
        copy_schedule_kick(b->copy);
    }
}

static void blob_upload_done(int rc, const char *error, enum registry_upload_outcome how, void *arg)
{
    struct copy_blob *b = arg;
    log_debug("upload done digest=%s rc=%d how=%d", b->digest, rc, (int)how);
    b->upload_active = false;
    b->upload = NULL;
    b->upload_rc = rc;
    b->outcome = how;
    if (rc < 0) {
        b->upload_error = xstrdup(error);
        /* Unless its source callback failed it, the destination did: maybe
         * by refusing a push into a repository it does not have. */
        if (b->upload_fault == COPY_FAULT_NONE) {
            b->upload_fault = COPY_FAULT_DESTINATION;
            b->upload_refused = rc == FERRY_ENOREPO;
        }
        blob_download_drop(b);
    }
    if (rc < 0 && b->mount_from != NULL && b->copy->presence != NULL)
        copy_presence_forget(b->copy, b->digest, b->mount_from);
    blob_transfer_settle(b);
    copy_op_finished(b->copy);
}

/* Open the upload (or the mount) at the destination; its source reads the ring or the spool. */
static void blob_upload_begin(struct copy_blob *b)
{
    struct copy *c = b->copy;
    struct registry_upload_options up = c->upload;

    b->upload_deferred = false;
    up.mount_from = b->mount_from;
    /* The owner chose it: it knows the blob is there (its flight, a hint). */
    up.mount_retry = b->gated && b->mount_from != NULL;
    int rc = registry_blob_upload(c->dst, c->dst_repo, b->digest, (uint64_t)b->size,
                                  c->spool != NULL ? blob_spool_source : blob_pipe_source, b, &up,
                                  blob_upload_done, b, &b->upload);
    if (rc < 0) {
        b->upload_active = false;
        b->upload_rc = rc;
        b->upload_fault = COPY_FAULT_LOCAL;
        b->upload_error = xasprintf("cannot upload %s", b->digest);
        blob_download_drop(b);
        blob_transfer_settle(b);
        copy_op_finished(c);
    }
}

/* The source failed before the upload began: the blob fails, and no session was opened. */
static void blob_upload_abandon(struct copy_blob *b, enum copy_fault fault, int rc,
                                const char *error)
{
    b->upload_deferred = false;
    b->upload_active = false;
    b->upload_rc = rc;
    b->upload_fault = fault;
    b->upload_error = xstrdup(error != NULL ? error : ferry_strerror(rc));
    blob_transfer_settle(b);
    copy_op_finished(b->copy);
}

/*
 * A deferred upload begins once its source has shown its first bytes, or
 * has ended (an empty or small blob), so that a blob the source cannot give
 * (a garbage-collected layer answers 404) fails before a session is opened
 * at the destination, where it would be left behind. The ring's download
 * wakes it through copy_kick() (or blob_download_done()); the spool wakes
 * it once 64 KiB are written or the download ended.
 */
static void blob_upload_try(struct copy_blob *b)
{
    if (!b->upload_deferred)
        return;
    if (b->sb == NULL) {
        if (b->download_active && ring_end(&b->ring) == 0)
            return;
        if (!b->download_active && b->download_rc < 0) {
            blob_upload_abandon(b, b->download_fault, b->download_rc, b->download_error);
            return;
        }
        blob_upload_begin(b);
        return;
    }
    char byte;
    ssize_t n = blob_spool_read(b, &byte, 1, 0);
    if (n == SPOOL_WAIT) {
        spool_blob_wait(b->sb, blob_spool_wake, b);
        return;
    }
    if (n < 0) {
        blob_upload_abandon(b, b->upload_fault, (int)n, spool_blob_error(b->sb));
        return;
    }
    blob_upload_begin(b);
}

/*
 * The blob goes up. A mount's POST is the mount, so it goes first; should
 * the registry answer 202 (not mounted, upload here), the upload's source
 * callback starts the download lazily. Any other upload waits for its source
 * (see blob_upload_try()); the upload half counts as running from here on.
 */
void copy_blob_transfer(struct copy_blob *b)
{
    struct copy *c = b->copy;

    b->in_transfer = true;
    /* A mount source, unless the owner chose: the flag, the same registry's
     * source repository, or the presence cache. */
    if (!b->gated) {
        if (c->mount_from != NULL)
            b->mount_from = xstrdup(c->mount_from);
        else if (strcmp(registry_host(c->src), registry_host(c->dst)) == 0 &&
                 strcmp(c->src_repo, c->dst_repo) != 0)
            b->mount_from = xstrdup(c->src_repo);
        else if (c->presence != NULL)
            b->mount_from =
                presence_find(c->presence, registry_host(c->dst), b->digest, c->dst_repo);
    }

    if (c->spool == NULL) {
        ring_init(&b->ring, COPY_PIPE_BYTES);
        b->ring_ready = true;
    }
    if (c->observer != NULL)
        b->watch = c->observer->blob_start(c->observer->arg, b->digest, (uint64_t)b->size);
    b->upload_active = true;
    copy_op_started(c);
    if (b->mount_from != NULL) {
        blob_upload_begin(b);
        return;
    }
    b->upload_deferred = true;
    if (c->spool != NULL) {
        char *err = NULL;
        int rc = blob_spool_take(b, &err);
        if (rc < 0) {
            blob_upload_abandon(b, COPY_FAULT_LOCAL, rc, err);
            free(err);
            return;
        }
    }
    /* Without the spool (or without room in it), or as its owner: download. */
    if (b->sb == NULL || b->sb_owner)
        blob_download_start(b);
    blob_upload_try(b);
}
