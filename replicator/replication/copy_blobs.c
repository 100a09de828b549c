/*
 * copy_blobs.c: what the destination holds already (the tag, the
 * repository, the manifests), and each blob's way from the queue through
 * the owner's gate (or a HEAD) to its transfer (copy_transfer.c) and its end.
 */
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "replication/copy_int.h"

/* ---- phase 3: what does the destination hold already? ---- */

static void node_checked(int rc, const char *error, const char *bytes, size_t len,
                         const char *media_type, const char *digest, void *arg)
{
    struct copy_node *n = arg;
    struct copy *c = n->copy;
    (void)bytes;
    (void)len;
    (void)media_type;
    (void)digest;
    if (rc == 0)
        n->present = true;
    else if (rc != FERRY_ENOTFOUND)
        copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
    copy_op_finished(c);
}

static void copy_check_repository(struct copy *c);

/* HEAD a manifest at the destination. */
static void copy_head_manifest(struct copy *c, const char *reference, registry_manifest_cb cb,
                               void *arg)
{
    copy_op_started(c);
    registry_manifest_head(c->dst, c->dst_repo, reference, cb, arg);
}

/* HEAD every manifest not known to be there. */
static void copy_check_nodes(struct copy *c)
{
    for (size_t i = 0; i < c->n_nodes && c->rc == 0; i++) {
        struct copy_node *n = c->nodes[i];
        if (!n->present)
            copy_head_manifest(c, n->r->digest, node_checked, n);
    }
}

static void tag_checked(int rc, const char *error, const char *bytes, size_t len,
                        const char *media_type, const char *digest, void *arg)
{
    struct copy *c = arg;
    (void)bytes;
    (void)len;
    (void)media_type;
    if (rc == 0 && digest != NULL) {
        c->dst_tag_digest = xstrdup(digest);
        if (strcmp(digest, c->root->r->digest) == 0)
            c->root->present = true;
        if (c->rc == 0)
            copy_check_nodes(c);
    } else if (rc == FERRY_ENOTFOUND) {
        if (!c->dst_repo_exists)
            copy_check_repository(c);
        else if (!c->trust_missing_tag && c->rc == 0)
            copy_check_nodes(c);
    } else if (rc < 0) {
        copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
    }
    copy_op_finished(c);
}

static void repo_checked(int rc, const char *error, bool exists, int64_t size, void *arg)
{
    struct copy *c = arg;
    (void)size;
    if (rc < 0)
        copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
    else if (!exists)
        c->dst_repo_new = true;
    else if (c->rc == 0 && !(c->trust_missing_tag && c->dst_tag != NULL))
        copy_check_nodes(c);
    copy_op_finished(c);
}

/*
 * Into a repository that does not exist yet no manifest or blob needs a HEAD:
 * one request spares one per manifest and blob. Asked only when the tag is
 * not there (a tag proves the repository exists).
 */
static void copy_check_repository(struct copy *c)
{
    copy_op_started(c);
    registry_repository_exists(c->dst, c->dst_repo, repo_checked, c);
}

/*
 * The tag first: it names the root's digest when nothing changed, and its
 * absence leads to the repository check that spares every other HEAD when
 * the repository is new. The manifests are HEADed after it.
 */
void copy_check_destination(struct copy *c)
{
    if (c->dst_tag != NULL) {
        copy_head_manifest(c, c->dst_tag, tag_checked, c);
    } else {
        copy_check_repository(c);
    }
}

/* ---- blobs: the queue, the gate, the end ---- */

static void blob_start(struct copy_blob *b);

void copy_blob_queue(struct copy *c, struct copy_blob *b)
{
    b->state = BLOB_QUEUED;
    if (c->queue_tail != NULL)
        c->queue_tail->next_queued = b;
    else
        c->queue_head = b;
    c->queue_tail = b;
}

void copy_blob_pump(struct copy *c)
{
    while (c->rc == 0 && c->jobs_running < c->jobs && c->queue_head != NULL) {
        struct copy_blob *b = c->queue_head;
        c->queue_head = b->next_queued;
        if (c->queue_head == NULL)
            c->queue_tail = NULL;
        b->next_queued = NULL;
        c->jobs_running++;
        blob_start(b);
    }
}

void copy_blob_finish(struct copy_blob *b, enum copy_fault fault, int rc, const char *error)
{
    struct copy *c = b->copy;

    b->state = BLOB_DONE;
    copy_blob_release_pipe(b);
    c->jobs_running--;
    if (b->watch != NULL) {
        c->observer->blob_done(c->observer->arg, b->watch, rc == 0);
        b->watch = NULL;
    }
    /* Presence first: the owner's waiters may mount from here at once. */
    if (rc == 0 && c->presence != NULL)
        copy_presence_add(c, b->digest, c->dst_repo);
    if (c->blob_done != NULL && b->in_transfer)
        c->blob_done(c, b->digest, rc == 0, c->blob_arg);
    if (rc < 0 && b->upload_refused && fault == COPY_FAULT_DESTINATION && rc == b->upload_rc) {
        copy_fail_push(c, rc, error);
    } else if (rc < 0) {
        copy_fail(c, fault, rc, error);
    } else {
        for (size_t i = 0; i < b->n_users; i++)
            copy_node_dependency_done(b->users[i]);
    }
    copy_blob_pump(c);
}

/*
 * A blob the destination lacks: the owner (the engine) may know that another
 * copy is putting it into this registry right now, and answer later with a
 * repository to mount it from (copy_blob_decide()).
 */
static void blob_need(struct copy_blob *b)
{
    struct copy *c = b->copy;
    if (c->blob_gate == NULL) {
        copy_blob_transfer(b);
        return;
    }
    copy_op_started(c);
    c->blob_gate(c, b->digest, c->dst_repo_new ? COPY_BLOB_NEW_REPO : COPY_BLOB_ABSENT,
                 c->blob_arg);
}

static void blob_head(struct copy_blob *b);

void copy_blob_decide(struct copy *c, const char *digest, const char *mount_from)
{
    struct copy_blob *b = copy_find_blob(c, digest);
    if (b != NULL && b->state == BLOB_ACTIVE && !b->gated) {
        b->gated = true;
        if (c->rc < 0) {
            /* The owner may have started a flight for it on this copy's word:
             * it hears that the blob is not coming, or its waiters wait forever. */
            b->in_transfer = true;
            copy_blob_finish(b, c->fault, c->rc, NULL);
        } else if (mount_from != NULL && strcmp(mount_from, c->dst_repo) == 0) {
            /* Another copy has just put it into this very repository. */
            c->sum->blobs_skipped++;
            copy_blob_finish(b, COPY_FAULT_NONE, 0, NULL);
        } else {
            b->mount_from = xstrdup(mount_from);
            copy_blob_transfer(b);
        }
    }
    copy_op_finished(c);
}

static void blob_confirmed(int rc, const char *error, bool exists, int64_t size, void *arg)
{
    struct copy_blob *b = arg;
    struct copy *c = b->copy;
    (void)size;
    (void)error;
    if (c->rc < 0) {
        copy_blob_finish(b, c->fault, c->rc, NULL);
    } else if (rc == 0 && exists) {
        c->sum->blobs_skipped++;
        copy_blob_finish(b, COPY_FAULT_NONE, 0, NULL);
    } else {
        /* Missing, or the HEAD failed (Distribution may answer one with a
         * 500 while it commits the blob): the HEAD was an economy, the
         * upload is the answer. Gated: no mount. */
        copy_blob_transfer(b);
    }
    copy_op_finished(c);
}

void copy_blob_confirm(struct copy *c, const char *digest)
{
    struct copy_blob *b = copy_find_blob(c, digest);
    if (b != NULL && b->state == BLOB_ACTIVE && !b->gated) {
        b->gated = true;
        b->in_transfer = true; /* the owner's blob_done is due, whatever the HEAD says */
        if (c->rc < 0) {
            copy_blob_finish(b, c->fault, c->rc, NULL);
        } else {
            copy_op_started(c);
            registry_blob_exists(c->dst, c->dst_repo, b->digest, blob_confirmed, b);
        }
    }
    copy_op_finished(c);
}

int64_t copy_blob_size(struct copy *c, const char *digest)
{
    struct copy_blob *b = copy_find_blob(c, digest);
    return b != NULL ? b->size : -1;
}

void copy_blob_check(struct copy *c, const char *digest)
{
    struct copy_blob *b = copy_find_blob(c, digest);
    if (b != NULL && b->state == BLOB_ACTIVE && !b->gated) {
        if (c->rc < 0)
            copy_blob_finish(b, c->fault, c->rc, NULL);
        else
            blob_head(b);
    }
    copy_op_finished(c);
}

static void blob_checked(int rc, const char *error, bool exists, int64_t size, void *arg)
{
    struct copy_blob *b = arg;
    struct copy *c = b->copy;
    (void)size;
    if (rc < 0) {
        copy_blob_finish(b, COPY_FAULT_DESTINATION, rc, error);
    } else if (c->rc < 0) {
        copy_blob_finish(b, c->fault, c->rc, NULL);
    } else if (exists && c->blob_gate != NULL) {
        /* Distribution writes a repository's link non-atomically: a blob
         * another copy is linking right now may look present before it is.
         * The owner answers with this repository once it is whole. */
        copy_op_started(c);
        c->blob_gate(c, b->digest, COPY_BLOB_PRESENT, c->blob_arg);
    } else if (exists) {
        c->sum->blobs_skipped++;
        copy_blob_finish(b, COPY_FAULT_NONE, 0, NULL);
    } else {
        blob_need(b);
    }
    copy_op_finished(c);
}

static void blob_head(struct copy_blob *b)
{
    struct copy *c = b->copy;
    copy_op_started(c);
    registry_blob_exists(c->dst, c->dst_repo, b->digest, blob_checked, b);
}

static void blob_start(struct copy_blob *b)
{
    struct copy *c = b->copy;
    b->state = BLOB_ACTIVE;
    if (c->dst_repo_new) {
        blob_need(b);
    } else if (c->blob_gate != NULL) {
        /* The owner may know without a HEAD (what it put there, what is in flight). */
        copy_op_started(c);
        c->blob_gate(c, b->digest, COPY_BLOB_UNCHECKED, c->blob_arg);
    } else {
        blob_head(b);
    }
}
