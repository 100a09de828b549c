/*
 * copy_manifests.c: the manifests go up once what they name is in (blobs,
 * children, the subject of a referrer); then, where the destination has no
 * referrers API, its sha256-<hex> fallback tag lists the referrers; the tag
 * moves last, asked of the owner's gate first.
 */
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "replication/copy_int.h"

/* ---- manifests ---- */

void copy_node_dependency_done(struct copy_node *n)
{
    if (--n->pending == 0 && !n->present && !n->pushed)
        copy_node_push(n);
}

static void node_now_present(struct copy *c, struct copy_node *n)
{
    c->nodes_unpushed--;
    if (n->parent != NULL && !n->parent->present)
        copy_node_dependency_done(n->parent);
    if (n == c->root) {
        for (size_t i = 0; i < c->n_nodes; i++)
            if (c->nodes[i]->subject != NULL && !c->nodes[i]->present)
                copy_node_dependency_done(c->nodes[i]);
    }
}

static void node_pushed(int rc, const char *error, bool subject_processed, void *arg)
{
    struct copy_node *n = arg;
    struct copy *c = n->copy;
    (void)subject_processed;
    log_debug("manifest pushed digest=%s rc=%d", n->r->digest, rc);
    if (rc < 0) {
        /* BLOB_UNKNOWN and the like: what the presence cache said of this
         * manifest's blobs may be stale, so the next attempt HEADs them. */
        const struct manifest *m = &n->r->m;
        if (c->presence != NULL && m->kind == MANIFEST_IMAGE) {
            copy_presence_forget(c, m->config.digest, c->dst_repo);
            for (size_t i = 0; i < m->n_layers; i++)
                copy_presence_forget(c, m->layers[i].digest, c->dst_repo);
        }
        copy_fail_push(c, rc, error);
    } else {
        n->pushed = true;
        c->sum->manifests_pushed++;
        node_now_present(c, n);
    }
    copy_op_finished(c);
}

static void node_put(struct copy_node *n, const char *reference)
{
    struct copy *c = n->copy;
    log_debug("manifest push digest=%s reference=%s", n->r->digest, reference);
    copy_op_started(c);
    int rc = registry_manifest_put(c->dst, c->dst_repo, reference, n->r->bytes, n->r->len,
                                   n->r->m.media_type, node_pushed, n);
    if (rc < 0) {
        /* Fetched under the same cap: this cannot happen, so it is Ferry's. */
        copy_fail(c, COPY_FAULT_LOCAL, rc, "manifest too large to push");
        copy_op_finished(c);
    }
}

void copy_node_push(struct copy_node *n)
{
    struct copy *c = n->copy;

    if (c->rc < 0)
        return;
    /* With nothing to follow the root, its PUT can name the tag directly:
     * one request instead of two, and the tag still moves last. With a tag
     * gate, the gate is asked first and its answer picks the reference. */
    if (n == c->root && c->dst_tag != NULL && !c->has_referrers) {
        if (c->tag_gate != NULL) {
            c->root_waits_gate = true;
            copy_op_started(c);
            c->tag_gate(c, n->r->digest, c->tag_gate_arg);
            return;
        }
        c->root_by_tag = true;
        node_put(n, c->dst_tag);
        return;
    }
    node_put(n, n->r->digest);
}

/* ---- phase 5: the referrers tag fallback at the destination ---- */

struct fallback_ctx {
    struct copy *c;
    struct copy_node *subject;
    char *tag;
    char *bytes;
};

static void fallback_free(struct fallback_ctx *f)
{
    free(f->tag);
    free(f->bytes);
    free(f);
}

static void fallback_pushed(int rc, const char *error, bool subject_processed, void *arg)
{
    struct fallback_ctx *f = arg;
    struct copy *c = f->c;
    (void)subject_processed;
    if (rc < 0)
        copy_fail_push(c, rc, error);
    else
        c->sum->manifests_pushed++;
    fallback_free(f);
    copy_op_finished(c);
}

/* The destination's listing (a fresh index when it has none), with the subject's referrers. */
static cJSON *fallback_merge(struct fallback_ctx *f, const char *bytes, size_t len, bool *changed)
{
    struct copy *c = f->c;
    cJSON *index = len > 0 ? cJSON_ParseWithLength(bytes, len) : NULL;
    cJSON *list = cJSON_GetObjectItemCaseSensitive(index, "manifests");
    if (index == NULL || !cJSON_IsArray(list)) {
        cJSON_Delete(index);
        index = cJSON_CreateObject();
        cJSON_AddNumberToObject(index, "schemaVersion", 2);
        cJSON_AddStringToObject(index, "mediaType", MEDIA_OCI_INDEX);
        list = cJSON_AddArrayToObject(index, "manifests");
    }
    *changed = false;
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *r = c->nodes[i];
        if (r->subject != f->subject)
            continue;
        bool listed = false;
        const cJSON *d;
        cJSON_ArrayForEach(d, list)
        {
            const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
            if (cJSON_IsString(dg) && strcmp(dg->valuestring, r->r->digest) == 0)
                listed = true;
        }
        if (!listed) {
            cJSON_AddItemToArray(list, cJSON_Duplicate(r->r->descriptor, 1));
            *changed = true;
        }
    }
    return index;
}

static void fallback_current(int rc, const char *error, const char *bytes, size_t len,
                             const char *media_type, const char *digest, void *arg)
{
    struct fallback_ctx *f = arg;
    struct copy *c = f->c;
    bool changed = false;
    (void)media_type;
    (void)digest;

    if (rc < 0) {
        copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
        goto out;
    }
    /* A registry with a referrers API keeps its own list. */
    if (!registry_referrers_api_missing(c->dst))
        goto out;
    cJSON *index = fallback_merge(f, bytes, len, &changed);
    if (changed)
        f->bytes = xjson_print(index, false);
    cJSON_Delete(index);
    if (changed) {
        copy_op_started(c);
        rc = registry_manifest_put(c->dst, c->dst_repo, f->tag, f->bytes, strlen(f->bytes),
                                   MEDIA_OCI_INDEX, fallback_pushed, f);
        if (rc < 0) {
            copy_fail(c, COPY_FAULT_LOCAL, rc, "referrers index too large to push");
            copy_op_finished(c);
            goto out;
        }
        copy_op_finished(c);
        return;
    }
out:
    fallback_free(f);
    copy_op_finished(c);
}

void copy_update_referrers_index(struct copy *c)
{
    for (size_t i = 0; i < c->n_nodes && c->rc == 0; i++) {
        struct copy_node *subject = c->nodes[i];
        if (!subject->r->has_referrers)
            continue;
        struct fallback_ctx *f = xcalloc(1, sizeof(*f));
        f->c = c;
        f->subject = subject;
        f->tag = reference_referrers_tag(subject->r->digest);
        copy_op_started(c);
        int rc = registry_referrers(c->dst, c->dst_repo, subject->r->digest, fallback_current, f);
        if (rc < 0) {
            copy_fail(c, COPY_FAULT_LOCAL, rc, "cannot list the destination's referrers");
            fallback_free(f);
            copy_op_finished(c);
        }
    }
}

/* ---- phase 6: the tag ---- */

static void tag_pushed(int rc, const char *error, bool subject_processed, void *arg)
{
    struct copy *c = arg;
    (void)subject_processed;
    if (rc < 0)
        copy_fail_push(c, rc, error);
    else
        c->sum->manifests_pushed++;
    copy_op_finished(c);
}

static void copy_put_tag(struct copy *c)
{
    struct resolve_node *root = c->root->r;
    copy_op_started(c);
    int rc = registry_manifest_put(c->dst, c->dst_repo, c->dst_tag, root->bytes, root->len,
                                   root->m.media_type, tag_pushed, c);
    if (rc < 0) {
        copy_fail(c, COPY_FAULT_LOCAL, rc, "manifest too large to push");
        copy_op_finished(c);
    }
}

void copy_push_tag(struct copy *c)
{
    if (c->dst_tag == NULL || c->root_by_tag || c->tag_superseded)
        return;
    if (c->tag_gate != NULL) {
        /* The owner decides (the source's tag, its fence), even when the tag
         * looked in place: its answer orders this job with the others that
         * move the tag. It answers with copy_tag_decide(). */
        copy_op_started(c);
        c->tag_gate(c, c->root->r->digest, c->tag_gate_arg);
        return;
    }
    if (c->dst_tag_digest != NULL && strcmp(c->dst_tag_digest, c->root->r->digest) == 0)
        return;
    copy_put_tag(c);
}

void copy_tag_decide(struct copy *c, int rc, const char *error, enum copy_tag_verdict verdict)
{
    bool root = c->root_waits_gate;
    c->root_waits_gate = false;
    if (rc < 0) {
        /* The owner's own verdict (its journal, its fence): the owner knows better. */
        copy_fail(c, COPY_FAULT_LOCAL, rc, error != NULL ? error : "the tag's gate failed");
    } else if (root) {
        /* The root's own PUT: by tag unless left alone, else by digest. */
        bool by_tag = verdict != COPY_TAG_LEAVE;
        c->root_by_tag = by_tag;
        c->tag_superseded = !by_tag;
        node_put(c->root, by_tag ? c->dst_tag : c->root->r->digest);
    } else if (verdict == COPY_TAG_MOVE) {
        copy_put_tag(c);
    } else if (verdict == COPY_TAG_LEAVE) {
        c->tag_superseded = true;
    }
    copy_op_finished(c);
}

bool copy_tag_superseded(const struct copy *c)
{
    return c->tag_superseded;
}

const char *copy_dst_tag_digest(const struct copy *c)
{
    return c->dst_tag_digest;
}
