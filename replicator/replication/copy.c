#include "replication/copy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uthash.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/manifest.h"
#include "replication/presence.h"
#include "common/reference.h"
#include "common/ring.h"
#include "replication/spool.h"
#include "common/xalloc.h"

struct copy;
struct copy_node;

/*
 * A blob flows from its download to its upload through a ring of this size:
 * memory stays flat whatever the blob's size. A paused side is woken once a
 * good piece can move, since every pause and resume costs libcurl a round.
 */
#define PIPE_BYTES      (256 * 1024)
#define PIPE_WAKE_BYTES (64 * 1024)

enum blob_state {
    BLOB_IDLE = 0,
    BLOB_QUEUED,
    BLOB_ACTIVE,
    BLOB_DONE,
};

/* One blob the destination may need; shared by every manifest that lists it. */
struct copy_blob {
    struct copy *copy;
    char *digest;
    int64_t size;
    enum blob_state state;
    struct copy_node **users;
    size_t n_users;
    struct copy_blob *next_queued;
    /* The window of the blob between the download and the upload. */
    struct ring ring;
    bool ring_ready;
    bool download_requested;
    bool download_started;
    bool download_active;
    bool download_paused;
    bool download_restart; /* the upload needs bytes the ring has dropped */
    bool download_dropped; /* canceled: the upload it feeds failed */
    uint64_t restart_from; /* ... from this offset */
    bool resume_download;  /* wake requests, carried out from the loop */
    bool resume_upload;
    struct registry_download *download;
    struct spool_blob *sb; /* with a spool: the shared file, instead of the ring */
    bool sb_owner;         /* this copy downloads it */
    bool verified;
    int download_rc;
    char *download_error;
    enum copy_fault download_fault; /* set when the download fails */
    bool upload_active;   /* from the transfer's start, though the upload may begin later */
    bool upload_deferred; /* the upload begins once the source has shown its first bytes */
    bool upload_waiting;
    int upload_rc;
    char *upload_error;
    enum copy_fault upload_fault; /* set when the upload fails */
    enum registry_upload_outcome outcome;
    char *mount_from;
    bool gated;       /* the owner chose: mount_from (or NULL: upload) */
    bool in_transfer; /* reached the transfer step (the owner's blob_done is due) */
    struct registry_upload *upload;
    uint64_t sent;     /* bytes the upload has read so far, for progress */
    void *watch;       /* the observer's handle for this blob (NULL: not watched) */
    UT_hash_handle hh; /* in copy.blob_table by digest */
};

/* One manifest of the image's closure. */
struct copy_node {
    struct copy *copy;
    char *digest;
    char *media_type;
    char *bytes;
    size_t len;
    struct manifest m;
    struct copy_node *parent;  /* the index listing this child */
    struct copy_node *subject; /* for a referrer: the manifest it refers to */
    cJSON *descriptor;         /* for a referrer: its descriptor in the source's list */
    bool referrers_wanted;     /* its referrers are to be listed once the probe is back */
    bool has_referrers;        /* some node of the closure refers to it */
    bool present;              /* already at the destination */
    bool pushed;
    int pending;       /* blobs, children or gates still to come before the PUT */
    UT_hash_handle hh; /* in copy.node_table by digest, once it is known */
};

enum copy_phase {
    PHASE_PING = 0,
    PHASE_RESOLVE,
    PHASE_CHECK,
    PHASE_TRANSFER,
    PHASE_REFERRERS_INDEX,
    PHASE_TAG,
    PHASE_DONE,
};

struct copy {
    uv_loop_t *loop;
    struct copy_summary *sum;
    struct registry *src;
    struct registry *dst;
    char *src_repo;
    char *src_reference; /* tag or digest of the root at the source */
    char *dst_repo;
    char *dst_tag; /* NULL: no tag at the destination */
    char *platform;
    bool no_referrers;
    char *mount_from;
    struct registry_upload_options upload;
    copy_tag_gate_cb tag_gate;
    void *tag_gate_arg;
    copy_blob_gate_cb blob_gate;
    copy_blob_done_cb blob_done;
    void *blob_arg;
    bool tag_superseded;
    copy_done_cb done;
    void *done_arg;
    struct presence *presence;
    const struct copy_observer *observer; /* NULL: nobody watches */
    struct spool *spool;
    enum copy_phase phase;
    int outstanding; /* callbacks still to fire */
    int rc;
    enum copy_fault fault; /* whose fault rc is */
    char *error;
    struct copy_node **nodes;
    size_t n_nodes;
    struct copy_node *node_table; /* by digest */
    struct copy_blob **blobs;
    size_t n_blobs;
    struct copy_blob *blob_table; /* by digest */
    struct copy_node *root;
    bool root_by_tag;     /* the root's PUT named the tag too */
    bool root_waits_gate; /* the root's PUT waits for the tag gate's answer */
    bool has_referrers;   /* some node of the closure is a referrer */
    bool dst_repo_new;    /* the destination repository does not exist yet */
    bool dst_repo_exists; /* the owner says it does: no repository check */
    bool trust_missing_tag;
    int referrers_probe;  /* 0: not asked yet, 1: the first listing is out, 2: back */
    char *dst_tag_digest; /* what the destination tag names now */
    int nodes_unpushed;   /* manifests still to PUT */
    struct copy_blob *queue_head;
    struct copy_blob *queue_tail;
    int jobs_running;
    int jobs;
    uint64_t start_ms;
    uv_timer_t kick; /* starts downloads outside libcurl's callbacks */
};

static void copy_stop(struct copy *c);

static void copy_advance(struct copy *c);

/* ---- bookkeeping ---- */

/* The first failure is the copy's: its code, its text, and whose fault it was. */
static void copy_fail(struct copy *c, enum copy_fault fault, int rc, const char *error)
{
    if (c->rc == 0) {
        c->rc = rc < 0 ? rc : FERRY_EPROTO;
        c->fault = fault;
        c->error = xstrdup(error != NULL ? error : ferry_strerror(rc));
        log_debug("copy failing rc=%d fault=%d error=\"%s\"", rc, (int)fault, c->error);
    }
}

enum copy_fault copy_fault(const struct copy *c)
{
    return c->rc < 0 ? c->fault : COPY_FAULT_NONE;
}

static void copy_op_started(struct copy *c)
{
    c->outstanding++;
}

static void copy_op_finished(struct copy *c)
{
    c->outstanding--;
    copy_advance(c);
}

static struct copy_node *copy_find_node(struct copy *c, const char *digest)
{
    struct copy_node *n = NULL;
    HASH_FIND_STR(c->node_table, digest, n);
    return n;
}

/*
 * A new manifest of the closure, or NULL (and the copy failed) past
 * COPY_MANIFESTS_MAX: a source listing children and referrers without end
 * gets an error naming the limit, not unbounded memory and requests.
 */
static struct copy_node *copy_add_node(struct copy *c, const char *digest)
{
    if (c->n_nodes >= COPY_MANIFESTS_MAX) {
        char *msg =
            xasprintf("%s/%s@%s: its closure (index children and referrers) passes %d "
                      "manifests: refused (the cap on one image)",
                      registry_host(c->src), c->src_repo, c->src_reference, COPY_MANIFESTS_MAX);
        copy_fail(c, COPY_FAULT_SOURCE, FERRY_ETOOBIG, msg);
        free(msg);
        return NULL;
    }
    struct copy_node *n = xcalloc(1, sizeof(*n));
    n->copy = c;
    n->digest = xstrdup(digest);
    if (n->digest[0] != '\0')
        HASH_ADD_KEYPTR(hh, c->node_table, n->digest, strlen(n->digest), n);
    if ((c->n_nodes & (c->n_nodes - 1)) == 0) /* grows by doubling */
        c->nodes = xrealloc(c->nodes, (c->n_nodes ? 2 * c->n_nodes : 1) * sizeof(*c->nodes));
    c->nodes[c->n_nodes++] = n;
    return n;
}

static struct copy_blob *copy_find_blob(struct copy *c, const char *digest)
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
    if ((c->n_blobs & (c->n_blobs - 1)) == 0)
        c->blobs = xrealloc(c->blobs, (c->n_blobs ? 2 * c->n_blobs : 1) * sizeof(*c->blobs));
    c->blobs[c->n_blobs++] = b;
    return b;
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

/* ---- phase 2: resolve the closure from the source ---- */

static void resolve_node(struct copy *c, struct copy_node *n, const char *reference);

static bool platform_matches(const struct descriptor *d, const char *platform)
{
    char want[128];
    snprintf(want, sizeof(want), "%s", platform);
    char *os = want;
    char *arch = strchr(os, '/');
    if (arch == NULL)
        return false;
    *arch++ = '\0';
    char *variant = strchr(arch, '/');
    if (variant != NULL)
        *variant++ = '\0';
    if (d->platform_os == NULL || d->platform_arch == NULL)
        return false;
    if (strcmp(d->platform_os, os) != 0 || strcmp(d->platform_arch, arch) != 0)
        return false;
    return variant == NULL ||
           (d->platform_variant != NULL && strcmp(d->platform_variant, variant) == 0);
}

static void referrers_listed(int rc, const char *error, const char *bytes, size_t len,
                             const char *media_type, const char *digest, void *arg);

struct resolve_ctx {
    struct copy *c;
    struct copy_node *n;
    bool probe;
};

static void resolve_referrers(struct copy *c, struct copy_node *subject, bool probe)
{
    struct resolve_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->c = c;
    ctx->n = subject;
    ctx->probe = probe;
    copy_op_started(c);
    if (registry_referrers(c->src, c->src_repo, subject->digest, referrers_listed, ctx) < 0) {
        free(ctx);
        copy_fail(c, COPY_FAULT_LOCAL, FERRY_EINVAL, "cannot list referrers");
        copy_op_finished(c);
    }
}

static void node_fetched(int rc, const char *error, const char *bytes, size_t len,
                         const char *media_type, const char *digest, void *arg)
{
    struct resolve_ctx *ctx = arg;
    struct copy *c = ctx->c;
    struct copy_node *n = ctx->n;
    char *perr = NULL;

    free(ctx);
    if (rc < 0) {
        copy_fail(c, COPY_FAULT_SOURCE, rc, error);
        copy_op_finished(c);
        return;
    }
    if (c->rc < 0) {
        copy_op_finished(c);
        return;
    }
    if (n->digest[0] == '\0') {
        /* The root, asked for by tag: now its digest is known. */
        free(n->digest);
        n->digest = xstrdup(digest);
        HASH_ADD_KEYPTR(hh, c->node_table, n->digest, strlen(n->digest), n);
    }
    n->bytes = xmalloc(len + 1);
    memcpy(n->bytes, bytes, len);
    n->bytes[len] = '\0';
    n->len = len;
    rc = manifest_parse(&n->m, bytes, len, media_type, &perr);
    if (rc < 0) {
        char *msg = xasprintf("manifest %s: %s", n->digest, perr ? perr : ferry_strerror(rc));
        copy_fail(c, COPY_FAULT_SOURCE, rc, msg);
        free(msg);
        free(perr);
        copy_op_finished(c);
        return;
    }
    n->media_type = xstrdup(n->m.media_type);

    if (n == c->root && n->m.kind == MANIFEST_INDEX && c->platform != NULL) {
        /* Pick one platform: its manifest becomes the root. */
        const struct descriptor *pick = NULL;
        for (size_t i = 0; i < n->m.n_manifests && pick == NULL; i++)
            if (platform_matches(&n->m.manifests[i], c->platform))
                pick = &n->m.manifests[i];
        if (pick == NULL) {
            char *msg = xasprintf("%s/%s:%s has no manifest for platform %s", registry_host(c->src),
                                  c->src_repo, c->src_reference, c->platform);
            copy_fail(c, COPY_FAULT_SOURCE, FERRY_ENOTFOUND, msg);
            free(msg);
        } else {
            struct copy_node *child = copy_find_node(c, pick->digest);
            if (child == NULL)
                child = copy_add_node(c, pick->digest);
            c->root = child;
            /* The index itself is not copied. */
            n->present = true;
            n->pushed = true;
            resolve_node(c, child, child->digest);
        }
        copy_op_finished(c);
        return;
    }
    if (n->m.kind == MANIFEST_INDEX && c->n_nodes + n->m.n_manifests > COPY_MANIFESTS_MAX) {
        /* Refused before a single child is asked for. */
        char *msg = xasprintf("%s/%s@%s: an index of %zu children passes the cap of %d "
                              "manifests on one image: refused",
                              registry_host(c->src), c->src_repo, n->digest, n->m.n_manifests,
                              COPY_MANIFESTS_MAX);
        copy_fail(c, COPY_FAULT_SOURCE, FERRY_ETOOBIG, msg);
        free(msg);
    } else if (n->m.kind == MANIFEST_INDEX) {
        for (size_t i = 0; i < n->m.n_manifests; i++) {
            const struct descriptor *d = &n->m.manifests[i];
            if (copy_find_node(c, d->digest) != NULL)
                continue;
            if (strcmp(d->digest, n->digest) == 0) {
                copy_fail(c, COPY_FAULT_SOURCE, FERRY_EPARSE, "an index lists itself");
                break;
            }
            struct copy_node *child = copy_add_node(c, d->digest);
            if (child == NULL)
                break;
            child->parent = n;
            resolve_node(c, child, child->digest);
        }
    }
    /* The first listing learns whether the source has a referrers API; the
     * others wait for it rather than all asking an API that may not exist. */
    if (!c->no_referrers && n->subject == NULL && c->rc == 0) {
        if (c->referrers_probe == 0) {
            c->referrers_probe = 1;
            resolve_referrers(c, n, true);
        } else if (c->referrers_probe == 1) {
            n->referrers_wanted = true;
        } else {
            resolve_referrers(c, n, false);
        }
    }
    copy_op_finished(c);
}

static void resolve_node(struct copy *c, struct copy_node *n, const char *reference)
{
    struct resolve_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->c = c;
    ctx->n = n;
    copy_op_started(c);
    if (registry_manifest_get(c->src, c->src_repo, reference, node_fetched, ctx) < 0) {
        free(ctx);
        copy_fail(c, COPY_FAULT_LOCAL, FERRY_EINVAL, "cannot fetch manifest");
        copy_op_finished(c);
    }
}

static void referrers_listed(int rc, const char *error, const char *bytes, size_t len,
                             const char *media_type, const char *digest, void *arg)
{
    struct resolve_ctx *ctx = arg;
    struct copy *c = ctx->c;
    struct copy_node *subject = ctx->n;
    (void)media_type;
    (void)digest;

    if (ctx->probe) {
        c->referrers_probe = 2;
        for (size_t i = 0; i < c->n_nodes; i++) {
            if (c->nodes[i]->referrers_wanted) {
                c->nodes[i]->referrers_wanted = false;
                resolve_referrers(c, c->nodes[i], false);
            }
        }
    }
    free(ctx);
    if (rc < 0) {
        copy_fail(c, COPY_FAULT_SOURCE, rc, error);
        copy_op_finished(c);
        return;
    }
    if (len == 0 || c->rc < 0) {
        copy_op_finished(c);
        return;
    }
    cJSON *index = cJSON_ParseWithLength(bytes, len);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(index, "manifests");
    if (!cJSON_IsArray(list)) {
        char *msg = xasprintf("referrers of %s: not an image index", subject->digest);
        copy_fail(c, COPY_FAULT_SOURCE, FERRY_EPARSE, msg);
        free(msg);
        cJSON_Delete(index);
        copy_op_finished(c);
        return;
    }
    if (cJSON_GetArraySize(list) > COPY_REFERRERS_MAX) {
        char *msg = xasprintf("%s/%s@%s lists %d referrers: refused (the cap is %d per manifest)",
                              registry_host(c->src), c->src_repo, subject->digest,
                              cJSON_GetArraySize(list), COPY_REFERRERS_MAX);
        copy_fail(c, COPY_FAULT_SOURCE, FERRY_ETOOBIG, msg);
        free(msg);
        cJSON_Delete(index);
        copy_op_finished(c);
        return;
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, list)
    {
        const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
        if (!cJSON_IsString(dg) || !digest_valid(dg->valuestring)) {
            char *msg =
                xasprintf("referrers of %s: a descriptor has no valid digest", subject->digest);
            copy_fail(c, COPY_FAULT_SOURCE, FERRY_EPARSE, msg);
            free(msg);
            break;
        }
        if (copy_find_node(c, dg->valuestring) != NULL)
            continue;
        struct copy_node *r = copy_add_node(c, dg->valuestring);
        if (r == NULL)
            break;
        r->subject = subject;
        subject->has_referrers = true;
        c->has_referrers = true;
        r->descriptor = cJSON_Duplicate(d, 1);
        c->sum->referrers++;
        resolve_node(c, r, r->digest);
    }
    cJSON_Delete(index);
    copy_op_finished(c);
}

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

/* HEAD every manifest not known to be there. */
static void copy_check_nodes(struct copy *c)
{
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *n = c->nodes[i];
        if (n->present)
            continue;
        copy_op_started(c);
        registry_manifest_head(c->dst, c->dst_repo, n->digest, node_checked, n);
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
        if (strcmp(digest, c->root->digest) == 0)
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
static void copy_check_destination(struct copy *c)
{
    if (c->dst_tag != NULL) {
        copy_op_started(c);
        registry_manifest_head(c->dst, c->dst_repo, c->dst_tag, tag_checked, c);
    } else {
        copy_check_repository(c);
    }
}

/* ---- phase 4: blobs, then manifests ---- */

static void blob_start(struct copy_blob *b);
static void node_push(struct copy_node *n);
static void copy_kick(uv_timer_t *timer);

static void node_dependency_done(struct copy_node *n)
{
    if (--n->pending == 0 && !n->present && !n->pushed)
        node_push(n);
}

static void node_now_present(struct copy *c, struct copy_node *n)
{
    c->nodes_unpushed--;
    if (n->parent != NULL && !n->parent->present)
        node_dependency_done(n->parent);
    if (n == c->root) {
        for (size_t i = 0; i < c->n_nodes; i++)
            if (c->nodes[i]->subject != NULL && !c->nodes[i]->present)
                node_dependency_done(c->nodes[i]);
    }
}

static void node_pushed(int rc, const char *error, bool subject_processed, void *arg)
{
    struct copy_node *n = arg;
    struct copy *c = n->copy;
    (void)subject_processed;
    log_debug("manifest pushed digest=%s rc=%d", n->digest, rc);
    if (rc < 0) {
        /* BLOB_UNKNOWN and the like: what the presence cache said of this
         * manifest's blobs may be stale, so the next attempt HEADs them. */
        if (c->presence != NULL && n->m.kind == MANIFEST_IMAGE) {
            const char *host = registry_host(c->dst);
            presence_forget(c->presence, host, n->m.config.digest, c->dst_repo);
            for (size_t i = 0; i < n->m.n_layers; i++)
                presence_forget(c->presence, host, n->m.layers[i].digest, c->dst_repo);
        }
        copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
    } else {
        n->pushed = true;
        c->sum->manifests_pushed++;
        node_now_present(c, n);
    }
    copy_op_finished(c);
}

static bool copy_has_referrers(const struct copy *c)
{
    return c->has_referrers;
}

static void node_put(struct copy_node *n, const char *reference)
{
    struct copy *c = n->copy;
    log_debug("manifest push digest=%s reference=%s", n->digest, reference);
    copy_op_started(c);
    int rc = registry_manifest_put(c->dst, c->dst_repo, reference, n->bytes, n->len, n->media_type,
                                   node_pushed, n);
    if (rc < 0) {
        /* Fetched under the same cap: this cannot happen, so it is Ferry's. */
        copy_fail(c, COPY_FAULT_LOCAL, rc, "manifest too large to push");
        copy_op_finished(c);
    }
}

static void node_push(struct copy_node *n)
{
    struct copy *c = n->copy;

    if (c->rc < 0)
        return;
    /* With nothing to follow the root, its PUT can name the tag directly:
     * one request instead of two, and the tag still moves last. With a tag
     * gate, the gate is asked first and its answer picks the reference. */
    if (n == c->root && c->dst_tag != NULL && !copy_has_referrers(c)) {
        if (c->tag_gate != NULL) {
            c->root_waits_gate = true;
            copy_op_started(c);
            c->tag_gate(c, n->digest, c->tag_gate_arg);
            return;
        }
        c->root_by_tag = true;
        node_put(n, c->dst_tag);
        return;
    }
    node_put(n, n->digest);
}

static void blob_queue(struct copy *c, struct copy_blob *b)
{
    b->state = BLOB_QUEUED;
    if (c->queue_tail != NULL)
        c->queue_tail->next_queued = b;
    else
        c->queue_head = b;
    c->queue_tail = b;
}

static void blob_pump(struct copy *c)
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

static void blob_release_pipe(struct copy_blob *b)
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

/* The blob is settled (or failed): free its slot and tell its manifests. */
static void blob_finish(struct copy_blob *b, enum copy_fault fault, int rc, const char *error)
{
    struct copy *c = b->copy;

    b->state = BLOB_DONE;
    blob_release_pipe(b);
    c->jobs_running--;
    if (b->watch != NULL) {
        c->observer->blob_done(c->observer->arg, b->watch, rc == 0);
        b->watch = NULL;
    }
    /* Presence first: the owner's waiters may mount from here at once. */
    if (rc == 0 && c->presence != NULL)
        presence_add(c->presence, registry_host(c->dst), b->digest, c->dst_repo);
    if (c->blob_done != NULL && b->in_transfer)
        c->blob_done(c, b->digest, rc == 0, c->blob_arg);
    if (rc < 0) {
        copy_fail(c, fault, rc, error);
    } else {
        for (size_t i = 0; i < b->n_users; i++)
            node_dependency_done(b->users[i]);
    }
    blob_pump(c);
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
        blob_finish(b, b->download_fault, b->download_rc, b->download_error);
    } else if (b->sb != NULL && spool_blob_error(b->sb) != NULL && b->upload_rc < 0) {
        /* blob_finish releases the spool blob, and its error text with it. */
        char *why = xstrdup(spool_blob_error(b->sb));
        blob_finish(b, b->upload_fault, b->upload_rc, why);
        free(why);
    } else if (b->upload_rc < 0) {
        blob_finish(b, b->upload_fault, b->upload_rc, b->upload_error);
    } else {
        if (b->outcome == REGISTRY_MOUNTED) {
            c->sum->blobs_mounted++;
        } else {
            c->sum->blobs_copied++;
            c->sum->bytes_copied += (uint64_t)b->size;
        }
        blob_finish(b, COPY_FAULT_NONE, 0, NULL);
    }
}

/* Ask the loop to run copy_kick(): nothing is resumed inside libcurl's callbacks. */
static void copy_schedule_kick(struct copy *c)
{
    if (!uv_is_active((uv_handle_t *)&c->kick))
        uv_timer_start(&c->kick, copy_kick, 0, 0);
}

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
    if (b->upload_waiting && (ring_end(&b->ring) - b->sent >= PIPE_WAKE_BYTES ||
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
        ring_init(&b->ring, PIPE_BYTES);
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
    if (b->download_paused && ring_space(&b->ring) >= PIPE_WAKE_BYTES) {
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
        /* Unless its source callback failed it, the destination did. */
        if (b->upload_fault == COPY_FAULT_NONE)
            b->upload_fault = COPY_FAULT_DESTINATION;
        blob_download_drop(b);
    }
    if (rc < 0 && b->mount_from != NULL && b->copy->presence != NULL)
        presence_forget(b->copy->presence, registry_host(b->copy->dst), b->digest, b->mount_from);
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
static void blob_transfer(struct copy_blob *b)
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
        ring_init(&b->ring, PIPE_BYTES);
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

/*
 * A blob the destination lacks: the owner (the engine) may know that another
 * copy is putting it into this registry right now, and answer later with a
 * repository to mount it from (copy_blob_decide()).
 */
static void blob_need(struct copy_blob *b)
{
    struct copy *c = b->copy;
    if (c->blob_gate == NULL) {
        blob_transfer(b);
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
            blob_finish(b, c->fault, c->rc, NULL);
        } else if (mount_from != NULL && strcmp(mount_from, c->dst_repo) == 0) {
            /* Another copy has just put it into this very repository. */
            c->sum->blobs_skipped++;
            blob_finish(b, COPY_FAULT_NONE, 0, NULL);
        } else {
            b->mount_from = xstrdup(mount_from);
            blob_transfer(b);
        }
    }
    copy_op_finished(c);
}

void copy_blob_check(struct copy *c, const char *digest)
{
    struct copy_blob *b = copy_find_blob(c, digest);
    if (b != NULL && b->state == BLOB_ACTIVE && !b->gated) {
        if (c->rc < 0)
            blob_finish(b, c->fault, c->rc, NULL);
        else
            blob_head(b);
    }
    copy_op_finished(c);
}

const char *copy_dst_repo(const struct copy *c)
{
    return c->dst_repo;
}

static void blob_checked(int rc, const char *error, bool exists, int64_t size, void *arg)
{
    struct copy_blob *b = arg;
    struct copy *c = b->copy;
    (void)size;
    if (rc < 0) {
        blob_finish(b, COPY_FAULT_DESTINATION, rc, error);
    } else if (c->rc < 0) {
        blob_finish(b, c->fault, c->rc, NULL);
    } else if (exists && c->blob_gate != NULL) {
        /* Distribution writes a repository's link non-atomically: a blob
         * another copy is linking right now may look present before it is.
         * The owner answers with this repository once it is whole. */
        copy_op_started(c);
        c->blob_gate(c, b->digest, COPY_BLOB_PRESENT, c->blob_arg);
    } else if (exists) {
        c->sum->blobs_skipped++;
        blob_finish(b, COPY_FAULT_NONE, 0, NULL);
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

static void blob_add_user(struct copy_blob *b, struct copy_node *n)
{
    b->users = xrealloc(b->users, (b->n_users + 1) * sizeof(*b->users));
    b->users[b->n_users++] = n;
    n->pending++;
}

static void copy_plan_transfer(struct copy *c)
{
    /* Work out what every manifest that is missing still waits for. */
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *n = c->nodes[i];
        if (n->present)
            continue;
        if (c->n_blobs > COPY_BLOBS_MAX) {
            char *msg =
                xasprintf("%s/%s@%s: its manifests name more than %d blobs: refused (the "
                          "cap on one image)",
                          registry_host(c->src), c->src_repo, c->root->digest, COPY_BLOBS_MAX);
            copy_fail(c, COPY_FAULT_SOURCE, FERRY_ETOOBIG, msg);
            free(msg);
            copy_stop(c);
            return;
        }
        c->nodes_unpushed++;
        if (n->m.kind == MANIFEST_IMAGE) {
            blob_add_user(copy_add_blob(c, n->m.config.digest, n->m.config.size), n);
            for (size_t j = 0; j < n->m.n_layers; j++)
                blob_add_user(copy_add_blob(c, n->m.layers[j].digest, n->m.layers[j].size), n);
        }
        /* Referrers go up after their subject's tree is complete. */
        if (n->subject != NULL && !c->root->present)
            n->pending++;
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
            node_push(n);
    }
    for (size_t i = 0; i < c->n_blobs; i++)
        blob_queue(c, c->blobs[i]);
    blob_pump(c);
}

/* ---- phase 5: the referrers tag fallback at the destination ---- */

struct fallback_ctx {
    struct copy *c;
    struct copy_node *subject;
    char *tag;
    char *bytes;
};

static void fallback_pushed(int rc, const char *error, bool subject_processed, void *arg)
{
    struct fallback_ctx *f = arg;
    (void)subject_processed;
    if (rc < 0)
        copy_fail(f->c, COPY_FAULT_DESTINATION, rc, error);
    else
        f->c->sum->manifests_pushed++;
    struct copy *c = f->c;
    free(f->tag);
    free(f->bytes);
    free(f);
    copy_op_finished(c);
}

static void fallback_current(int rc, const char *error, const char *bytes, size_t len,
                             const char *media_type, const char *digest, void *arg)
{
    struct fallback_ctx *f = arg;
    struct copy *c = f->c;
    (void)media_type;
    (void)digest;

    if (rc < 0) {
        copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
        goto out;
    }
    /* A registry with a referrers API keeps its own list. */
    if (!registry_referrers_api_missing(c->dst))
        goto out;
    cJSON *index = len > 0 ? cJSON_ParseWithLength(bytes, len) : NULL;
    cJSON *list = cJSON_GetObjectItemCaseSensitive(index, "manifests");
    if (index == NULL || !cJSON_IsArray(list)) {
        cJSON_Delete(index);
        index = cJSON_CreateObject();
        cJSON_AddNumberToObject(index, "schemaVersion", 2);
        cJSON_AddStringToObject(index, "mediaType", MEDIA_OCI_INDEX);
        list = cJSON_AddArrayToObject(index, "manifests");
    }
    bool changed = false;
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *r = c->nodes[i];
        if (r->subject != f->subject)
            continue;
        bool listed = false;
        const cJSON *d;
        cJSON_ArrayForEach(d, list)
        {
            const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
            if (cJSON_IsString(dg) && strcmp(dg->valuestring, r->digest) == 0)
                listed = true;
        }
        if (!listed) {
            cJSON_AddItemToArray(list, cJSON_Duplicate(r->descriptor, 1));
            changed = true;
        }
    }
    if (changed) {
        f->bytes = xjson_print(index, false);
        copy_op_started(c);
        registry_manifest_put(c->dst, c->dst_repo, f->tag, f->bytes, strlen(f->bytes),
                              MEDIA_OCI_INDEX, fallback_pushed, f);
        cJSON_Delete(index);
        copy_op_finished(c);
        return;
    }
    cJSON_Delete(index);
out:
    free(f->tag);
    free(f);
    copy_op_finished(c);
}

static void copy_update_referrers_index(struct copy *c)
{
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *subject = c->nodes[i];
        if (!subject->has_referrers)
            continue;
        struct fallback_ctx *f = xcalloc(1, sizeof(*f));
        f->c = c;
        f->subject = subject;
        f->tag = reference_referrers_tag(subject->digest);
        copy_op_started(c);
        registry_referrers(c->dst, c->dst_repo, subject->digest, fallback_current, f);
    }
}

/* ---- phase 6: the tag ---- */

static void tag_pushed(int rc, const char *error, bool subject_processed, void *arg)
{
    struct copy *c = arg;
    (void)subject_processed;
    if (rc < 0)
        copy_fail(c, COPY_FAULT_DESTINATION, rc, error);
    else
        c->sum->manifests_pushed++;
    copy_op_finished(c);
}

static void copy_put_tag(struct copy *c)
{
    copy_op_started(c);
    registry_manifest_put(c->dst, c->dst_repo, c->dst_tag, c->root->bytes, c->root->len,
                          c->root->media_type, tag_pushed, c);
}

static void copy_push_tag(struct copy *c)
{
    if (c->dst_tag == NULL || c->root_by_tag || c->tag_superseded)
        return;
    if (c->tag_gate != NULL) {
        /* The owner decides (the source's tag, its fence), even when the tag
         * looked in place: its answer orders this job with the others that
         * move the tag. It answers with copy_tag_decide(). */
        copy_op_started(c);
        c->tag_gate(c, c->root->digest, c->tag_gate_arg);
        return;
    }
    if (c->dst_tag_digest != NULL && strcmp(c->dst_tag_digest, c->root->digest) == 0)
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
        node_put(c->root, by_tag ? c->dst_tag : c->root->digest);
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

/* ---- the driver ---- */

static void copy_stop(struct copy *c)
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
    case PHASE_PING: {
        c->phase = PHASE_RESOLVE;
        bool by_digest = strchr(c->src_reference, ':') != NULL;
        c->root = copy_add_node(c, by_digest ? c->src_reference : "");
        resolve_node(c, c->root, c->src_reference);
        break;
    }
    case PHASE_RESOLVE:
        c->phase = PHASE_CHECK;
        snprintf(c->sum->digest, sizeof(c->sum->digest), "%s", c->root->digest);
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

static void copy_free_nodes(struct copy *c)
{
    HASH_CLEAR(hh, c->node_table);
    HASH_CLEAR(hh, c->blob_table);
    for (size_t i = 0; i < c->n_nodes; i++) {
        struct copy_node *n = c->nodes[i];
        free(n->digest);
        free(n->media_type);
        free(n->bytes);
        if (n->m.kind != 0)
            manifest_release(&n->m);
        cJSON_Delete(n->descriptor);
        free(n);
    }
    free(c->nodes);
    for (size_t i = 0; i < c->n_blobs; i++) {
        struct copy_blob *b = c->blobs[i];
        blob_release_pipe(b);
        free(b->digest);
        free(b->users);
        free(b->download_error);
        free(b->upload_error);
        free(b->mount_from);
        free(b);
    }
    free(c->blobs);
}

int copy_start(uv_loop_t *loop, const struct copy_spec *spec, struct copy_summary *summary,
               copy_done_cb done, void *arg, struct copy **out)
{
    struct copy *c = xcalloc(1, sizeof(*c));
    memset(summary, 0, sizeof(*summary));
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
    c->jobs = spec->jobs > 0 ? spec->jobs : 8;
    c->done = done;
    c->done_arg = arg;
    uv_timer_init(loop, &c->kick);
    c->kick.data = c;
    c->start_ms = uv_now(loop);
    c->phase = PHASE_PING;
    if (out != NULL)
        *out = c;
    c->dst_repo_exists = spec->dst_repo_exists;
    c->trust_missing_tag = spec->trust_missing_tag;
    if (spec->skip_ping) {
        /* The phase machine moves on from PING at once. */
        copy_op_started(c);
        copy_op_finished(c);
        return 0;
    }
    copy_op_started(c);
    registry_ping(c->src, src_pinged, c);
    copy_op_started(c);
    registry_ping(c->dst, dst_pinged, c);
    return 0;
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

/* ---- copy_run: one copy on a loop of its own, for `ferry copy` ---- */
