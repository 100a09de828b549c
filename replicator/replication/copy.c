/*
 * copy.c: the copy's bookkeeping and the driver of its phases: the ping,
 * the closure resolved at the source (resolve.h), the plan of what each
 * missing manifest waits for, and the copy's start and end. The other
 * phases live in copy_blobs.c, copy_transfer.c and copy_manifests.c (see
 * copy_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/xalloc.h"
#include "replication/copy_int.h"

static void copy_advance(struct copy *c);

/* ---- bookkeeping ---- */

void copy_fail(struct copy *c, enum copy_fault fault, int rc, const char *error)
{
    if (c->rc == 0) {
        c->rc = rc < 0 ? rc : FERRY_EPROTO;
        c->fault = fault;
        c->error = xstrdup(error != NULL ? error : ferry_strerror(rc));
        log_debug("copy failing rc=%d fault=%d error=\"%s\"", rc, (int)fault, c->error);
    }
}

void copy_fail_push(struct copy *c, int rc, const char *error)
{
    bool first = c->rc == 0;
    copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
    if (first && rc == FERRY_ENOREPO)
        c->push_refused = true;
}

enum copy_fault copy_fault(const struct copy *c)
{
    return c->rc < 0 ? c->fault : COPY_FAULT_NONE;
}

bool copy_push_refused(const struct copy *c)
{
    return c->rc < 0 && c->push_refused;
}

void copy_op_started(struct copy *c)
{
    c->outstanding++;
}

void copy_op_finished(struct copy *c)
{
    c->outstanding--;
    copy_advance(c);
}

struct copy_blob *copy_find_blob(struct copy *c, const char *digest)
{
    struct copy_blob *b = NULL;
    HASH_FIND_STR(c->blob_table, digest, b);
    return b;
}

static struct copy_blob *copy_add_blob(struct copy *c, const char *digest, int64_t size)
{
    struct copy_blob *b = copy_find_blob(c, digest);
    if (b != NULL)
        return b;
    b = xcalloc(1, sizeof(*b));
    b->copy = c;
    b->digest = xstrdup(digest);
    b->size = size;
    HASH_ADD_KEYPTR(hh, c->blob_table, b->digest, strlen(b->digest), b);
    if ((c->n_blobs & (c->n_blobs - 1)) == 0) /* grows by doubling */
        c->blobs = xrealloc(c->blobs, (c->n_blobs ? 2 * c->n_blobs : 1) * sizeof(*c->blobs));
    c->blobs[c->n_blobs++] = b;
    return b;
}

void copy_presence_add(struct copy *c, const char *digest, const char *repo)
{
    int rc = presence_add(c->presence, registry_host(c->dst), digest, repo);
    if (rc < 0)
        log_warn("presence cache not updated dest=%s repo=%s digest=%s error=\"%s\"",
                 registry_host(c->dst), repo, digest, ferry_strerror(rc));
}

void copy_presence_forget(struct copy *c, const char *digest, const char *repo)
{
    int rc = presence_forget(c->presence, registry_host(c->dst), digest, repo);
    if (rc < 0)
        log_warn("presence cache entry not dropped dest=%s repo=%s digest=%s error=\"%s\"",
                 registry_host(c->dst), repo, digest, ferry_strerror(rc));
}

/* ---- phase 1: ping both registries (reachability and auth discovery) ---- */

static void src_pinged(int rc, const char *error, void *arg)
{
    struct copy *c = arg;
    if (rc < 0)
        copy_fail(c, COPY_FAULT_SOURCE, rc, error);
    copy_op_finished(c);
}

static void dst_pinged(int rc, const char *error, void *arg)
{
    struct copy *c = arg;
    if (rc < 0)
        copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
    copy_op_finished(c);
}

static void copy_ping(struct copy *c, struct registry *reg, registry_done_cb cb)
{
    copy_op_started(c);
    registry_ping(reg, cb, c);
}

/* ---- phase 2: resolve the closure from the source ---- */

/* A node of the copy for each manifest of the closure, in the order they were found. */
static void copy_take_closure(struct copy *c)
{
    c->n_nodes = resolve_count(c->resolve);
    c->nodes = xcalloc(c->n_nodes, sizeof(*c->nodes));
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *n = xcalloc(1, sizeof(*n));
        n->copy = c;
        n->r = resolve_node_at(c->resolve, i);
        n->r->data = n;
        c->nodes[i] = n;
    }
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *n = c->nodes[i];
        if (n->r->parent != NULL)
            n->parent = n->r->parent->data;
        if (n->r->subject != NULL) {
            n->subject = n->r->subject->data;
            c->has_referrers = true;
            c->sum->referrers++;
        }
    }
    c->root = resolve_root(c->resolve)->data;
    struct resolve_node *index = resolve_platform_index(c->resolve);
    if (index != NULL) {
        /* The index a platform was picked from is not copied. */
        struct copy_node *n = index->data;
        n->present = true;
        n->pushed = true;
    }
}

static void copy_resolved(struct resolve *r, int rc, const char *error, void *arg)
{
    struct copy *c = arg;
    if (rc < 0)
        copy_fail(c, resolve_fault_local(r) ? COPY_FAULT_LOCAL : COPY_FAULT_SOURCE, rc, error);
    else
        copy_take_closure(c);
    copy_op_finished(c);
}

static void copy_resolve(struct copy *c)
{
    struct resolve_spec spec = {
        .src = c->src,
        .repo = c->src_repo,
        .reference = c->src_reference,
        .platform = c->platform,
        .referrers = c->no_referrers ? RESOLVE_REFERRERS_NONE : RESOLVE_REFERRERS_ALL,
        .fetch = c->fetch,
    };
    copy_op_started(c);
    resolve_start(&spec, copy_resolved, c, &c->resolve);
}

/* ---- phase 4: what waits for what ---- */

static void blob_add_user(struct copy_blob *b, struct copy_node *n)
{
    b->users = xrealloc(b->users, (b->n_users + 1) * sizeof(*b->users));
    b->users[b->n_users++] = n;
    n->pending++;
}

/*
 * One blob of a missing manifest. A foreign layer left out is kept in the
 * table (so that it is counted and logged once per copy) but never queued;
 * should another manifest name the same digest as a blob to copy, it is.
 */
static void copy_plan_blob(void *arg, const struct descriptor *d, enum resolve_blob_kind kind)
{
    struct copy_node *n = arg;
    struct copy *c = n->copy;
    struct copy_blob *b = copy_find_blob(c, d->digest);
    if (kind == RESOLVE_BLOB_FOREIGN_SKIPPED) {
        if (b != NULL)
            return;
        b = copy_add_blob(c, d->digest, d->size);
        b->foreign = true;
        c->sum->foreign_layers_skipped++;
        log_info("foreign layer skipped dest=%s repo=%s digest=%s media_type=%s manifest=%s",
                 registry_host(c->dst), c->dst_repo, d->digest, d->media_type, n->r->digest);
        return;
    }
    if (b == NULL) {
        b = copy_add_blob(c, d->digest, d->size);
    } else if (b->foreign) {
        b->foreign = false;
        c->sum->foreign_layers_skipped--;
    }
    blob_add_user(b, n);
}

/* The blobs of missing manifests, past COPY_BLOBS_MAX: false, and the copy failed. */
static bool copy_plan_blobs(struct copy *c)
{
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *n = c->nodes[i];
        if (n->present)
            continue;
        if (c->n_blobs > COPY_BLOBS_MAX) {
            char *msg =
                xasprintf("%s/%s@%s: its manifests name more than %d blobs: refused (the "
                          "cap on one image)",
                          registry_host(c->src), c->src_repo, c->root->r->digest, COPY_BLOBS_MAX);
            copy_fail(c, COPY_FAULT_SOURCE, FERRY_ETOOBIG, msg);
            free(msg);
            return false;
        }
        c->nodes_unpushed++;
        (void)resolve_manifest_blobs(&n->r->m, c->foreign_layers, copy_plan_blob, n);
        /* Referrers go up after their subject's tree is complete. */
        if (n->subject != NULL && !c->root->present)
            n->pending++;
    }
    return true;
}

/* Work out what every manifest that is missing still waits for, and start. */
static void copy_plan_transfer(struct copy *c)
{
    if (!copy_plan_blobs(c)) {
        copy_stop(c);
        return;
    }
    /* An index waits for each of its missing children (one pass, not a scan per index). */
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *n = c->nodes[i];
        if (n->present)
            c->sum->manifests_skipped++;
        else if (n->parent != NULL && !n->parent->present)
            n->parent->pending++;
    }
    /* Manifests with nothing to wait for go first, then the blobs. */
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *n = c->nodes[i];
        if (!n->present && n->pending == 0)
            copy_node_push(n);
    }
    for (size_t i = 0; i < c->n_blobs; i++)
        if (!c->blobs[i]->foreign)
            copy_blob_queue(c, c->blobs[i]);
    copy_blob_pump(c);
}

/* ---- the driver ---- */

void copy_stop(struct copy *c)
{
    c->phase = PHASE_DONE;
    if (c->observer != NULL)
        c->observer->finish(c->observer->arg);
    uv_update_time(c->loop);
    c->sum->seconds = (double)(uv_now(c->loop) - c->start_ms) / 1000.0;
    c->done(c, c->rc, c->error, c->done_arg);
}

/*
 * Called whenever a callback finished. Each phase starts the next only when
 * nothing of its own is outstanding, so every step sees a settled picture.
 */
static void copy_advance(struct copy *c)
{
    if (c->outstanding > 0 || c->phase == PHASE_DONE)
        return;
    if (c->rc < 0) {
        copy_stop(c);
        return;
    }
    log_debug("copy phase done phase=%d nodes=%zu blobs=%zu", (int)c->phase, c->n_nodes,
              c->n_blobs);
    switch (c->phase) {
    case PHASE_PING:
        c->phase = PHASE_RESOLVE;
        copy_resolve(c);
        break;
    case PHASE_RESOLVE:
        c->phase = PHASE_CHECK;
        snprintf(c->sum->digest, sizeof(c->sum->digest), "%s", c->root->r->digest);
        copy_check_destination(c);
        break;
    case PHASE_CHECK:
        c->phase = PHASE_TRANSFER;
        copy_plan_transfer(c);
        break;
    case PHASE_TRANSFER:
        if (c->nodes_unpushed > 0) {
            copy_fail(c, COPY_FAULT_LOCAL, FERRY_EPROTO, "internal error: manifests left unpushed");
            copy_stop(c);
            return;
        }
        c->phase = PHASE_REFERRERS_INDEX;
        copy_update_referrers_index(c);
        break;
    case PHASE_REFERRERS_INDEX:
        c->phase = PHASE_TAG;
        copy_push_tag(c);
        break;
    case PHASE_TAG:
        copy_stop(c);
        return;
    case PHASE_DONE:
        return;
    }
    /* A phase that had nothing to do moves on at once. */
    if (c->outstanding == 0)
        copy_advance(c);
}

int copy_start(uv_loop_t *loop, const struct copy_spec *spec, struct copy_summary *summary,
               copy_done_cb done, void *arg, struct copy **out)
{
    struct copy *c = xcalloc(1, sizeof(*c));
    memset(summary, 0, sizeof(*summary));
    int rc = uv_timer_init(loop, &c->kick);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->kick.data = c;
    c->loop = loop;
    c->sum = summary;
    c->src = spec->src;
    c->dst = spec->dst;
    c->src_repo = xstrdup(spec->src_repo);
    c->src_reference = xstrdup(spec->src_reference);
    c->dst_repo = xstrdup(spec->dst_repo);
    c->dst_tag = xstrdup(spec->dst_tag);
    c->platform = xstrdup(spec->platform);
    c->no_referrers = spec->no_referrers;
    c->fetch = spec->fetch;
    c->foreign_layers = spec->foreign_layers;
    c->mount_from = xstrdup(spec->mount_from);
    c->upload = spec->upload;
    c->upload.mount_from = NULL;
    c->presence = spec->presence;
    c->spool = spec->spool;
    c->observer = spec->observer;
    c->tag_gate = spec->tag_gate;
    c->tag_gate_arg = spec->tag_gate_arg;
    c->blob_gate = spec->blob_gate;
    c->blob_done = spec->blob_done;
    c->blob_arg = spec->blob_arg;
    c->jobs = spec->jobs > 0 ? spec->jobs : COPY_DEFAULT_JOBS;
    c->done = done;
    c->done_arg = arg;
    c->start_ms = uv_now(loop);
    c->phase = PHASE_PING;
    if (out != NULL)
        *out = c;
    c->dst_repo_exists = spec->dst_repo_exists;
    c->trust_missing_tag = spec->trust_missing_tag;
    /* Held while the pings start (none with skip_ping: the phases move on at once). */
    copy_op_started(c);
    if (!spec->skip_ping) {
        copy_ping(c, c->src, src_pinged);
        copy_ping(c, c->dst, dst_pinged);
    }
    copy_op_finished(c);
    return 0;
}

const char *copy_dst_repo(const struct copy *c)
{
    return c->dst_repo;
}

static void copy_free_nodes(struct copy *c)
{
    HASH_CLEAR(hh, c->blob_table);
    for (size_t i = 0; i < c->n_nodes; i++)
        free(c->nodes[i]);
    free(c->nodes);
    resolve_free(c->resolve);
    for (size_t i = 0; i < c->n_blobs; i++) {
        struct copy_blob *b = c->blobs[i];
        copy_blob_release_pipe(b);
        free(b->digest);
        free(b->users);
        free(b->download_error);
        free(b->upload_error);
        free(b->mount_from);
        free(b);
    }
    free(c->blobs);
}

static void copy_closed(uv_handle_t *handle)
{
    struct copy *c = handle->data;
    copy_free_nodes(c);
    free(c->src_repo);
    free(c->src_reference);
    free(c->dst_repo);
    free(c->dst_tag);
    free(c->platform);
    free(c->mount_from);
    free(c->error);
    free(c->dst_tag_digest);
    free(c);
}

void copy_free(struct copy *c)
{
    uv_close((uv_handle_t *)&c->kick, copy_closed);
}
