/*
 * resolve: one image's closure at its source, found by digest (see
 * resolve.h). Requests go out as soon as what names them arrives; the
 * resolution ends when none is outstanding.
 */
#include "replication/resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

/* A node with what only the resolver needs of it. */
struct resolve_entry {
    struct resolve_node node;
    bool referrers_wanted; /* its referrers are to be listed once the probe is back */
    UT_hash_handle hh;     /* in resolve.table by digest, once it is known */
};

enum referrers_probe {
    PROBE_NOT_ASKED = 0,
    PROBE_OUT, /* the first listing is out: the others wait for it */
    PROBE_BACK,
};

struct resolve {
    struct registry *src;
    struct resolve_fetch fetch;
    char *repo;
    char *reference;
    char *platform;
    enum resolve_referrers referrers;
    bool lenient;
    struct resolve_entry **entries;
    size_t n_entries;
    struct resolve_entry *table; /* by digest */
    struct resolve_node *root;
    struct resolve_node *platform_index;
    enum referrers_probe probe;
    cJSON **listings; /* the referrers listings the descriptors point into */
    size_t n_listings;
    int outstanding; /* callbacks still to fire, and one while starting */
    int rc;
    char *error;
    bool local;
    resolve_done_cb done;
    void *done_arg;
};

/* What one request is about. */
struct resolve_ctx {
    struct resolve *r;
    struct resolve_node *n;
    bool probe; /* the first referrers listing */
};

static void resolve_fetch_manifest(struct resolve *r, struct resolve_node *n,
                                   const char *reference);

static struct resolve_entry *entry_of(struct resolve_node *n)
{
    return (struct resolve_entry *)((char *)n - offsetof(struct resolve_entry, node));
}

/* ---- bookkeeping ---- */

/* The first failure is the resolution's. */
static void resolve_fail(struct resolve *r, bool local, int rc, const char *error)
{
    if (r->rc != 0)
        return;
    r->rc = rc < 0 ? rc : FERRY_EPROTO;
    r->local = local;
    r->error = xstrdup(error != NULL ? error : ferry_strerror(rc));
    log_debug("resolve failing rc=%d error=\"%s\"", rc, r->error);
}

static void resolve_op_started(struct resolve *r)
{
    r->outstanding++;
}

static void resolve_op_finished(struct resolve *r)
{
    if (--r->outstanding > 0)
        return;
    /* The last thing done with `r`: its owner may free it in `done`. */
    r->done(r, r->rc, r->error, r->done_arg);
}

struct resolve_node *resolve_find(const struct resolve *r, const char *digest)
{
    struct resolve_entry *e = NULL;
    HASH_FIND_STR(r->table, digest, e);
    return e != NULL ? &e->node : NULL;
}

/*
 * A new manifest of the closure, or NULL (and the resolution failed) past
 * RESOLVE_MANIFESTS_MAX: a source listing children and referrers without end
 * gets an error naming the limit, not unbounded memory and requests. An
 * empty digest is the root asked for by tag, known once it is fetched.
 */
static struct resolve_node *resolve_add(struct resolve *r, const char *digest)
{
    if (r->n_entries >= RESOLVE_MANIFESTS_MAX) {
        char *msg = xasprintf("%s/%s@%s: its closure (index children and referrers) passes %d "
                              "manifests: refused (the cap on one image)",
                              registry_host(r->src), r->repo, r->reference, RESOLVE_MANIFESTS_MAX);
        resolve_fail(r, false, FERRY_ETOOBIG, msg);
        free(msg);
        return NULL;
    }
    struct resolve_entry *e = xcalloc(1, sizeof(*e));
    e->node.digest = xstrdup(digest);
    if (digest[0] != '\0')
        HASH_ADD_KEYPTR(hh, r->table, e->node.digest, strlen(e->node.digest), e);
    if ((r->n_entries & (r->n_entries - 1)) == 0) /* grows by doubling */
        r->entries =
            xrealloc(r->entries, (r->n_entries ? 2 * r->n_entries : 1) * sizeof(*r->entries));
    r->entries[r->n_entries++] = e;
    return &e->node;
}

/* ---- referrers ---- */

static void referrers_listed(int rc, const char *error, const char *bytes, size_t len,
                             const char *media_type, const char *digest, void *arg);

static void resolve_list_referrers(struct resolve *r, struct resolve_node *subject, bool probe)
{
    struct resolve_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->r = r;
    ctx->n = subject;
    ctx->probe = probe;
    resolve_op_started(r);
    int rc = r->fetch.referrers != NULL
                 ? r->fetch.referrers(r->fetch.arg, r->repo, subject->digest, referrers_listed, ctx)
                 : registry_referrers(r->src, r->repo, subject->digest, referrers_listed, ctx);
    if (rc < 0) {
        free(ctx);
        resolve_fail(r, true, FERRY_EINVAL, "cannot list referrers");
        resolve_op_finished(r);
    }
}

/*
 * The first listing learns whether the source has a referrers API; the
 * others wait for it rather than all asking an API that may not exist.
 */
static void resolve_want_referrers(struct resolve *r, struct resolve_node *n)
{
    if (r->referrers == RESOLVE_REFERRERS_NONE || n->subject != NULL || r->rc < 0)
        return;
    if (r->referrers == RESOLVE_REFERRERS_ROOT && n != r->root)
        return;
    if (r->probe == PROBE_NOT_ASKED) {
        r->probe = PROBE_OUT;
        resolve_list_referrers(r, n, true);
    } else if (r->probe == PROBE_OUT) {
        entry_of(n)->referrers_wanted = true;
    } else {
        resolve_list_referrers(r, n, false);
    }
}

int resolve_referrers_parse(const char *bytes, size_t len, const char *subject, cJSON **index,
                            const cJSON **list, char **err)
{
    *err = NULL;
    *list = NULL;
    *index = cJSON_ParseWithLength(bytes, len);
    const cJSON *manifests = cJSON_GetObjectItemCaseSensitive(*index, "manifests");
    if (!cJSON_IsArray(manifests)) {
        *err = xasprintf("referrers of %s: not an image index", subject);
        goto fail;
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, manifests)
    {
        const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
        if (!cJSON_IsString(dg) || !digest_valid(dg->valuestring)) {
            *err = xasprintf("referrers of %s: a descriptor has no valid digest", subject);
            goto fail;
        }
    }
    *list = manifests;
    return 0;
fail:
    cJSON_Delete(*index);
    *index = NULL;
    return FERRY_EPARSE;
}

/* Each referrer listed becomes a node of the closure, fetched when the caller wants them all. */
static void resolve_add_referrers(struct resolve *r, struct resolve_node *subject,
                                  const cJSON *list)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, list)
    {
        const char *digest = cJSON_GetObjectItemCaseSensitive(d, "digest")->valuestring;
        if (resolve_find(r, digest) != NULL)
            continue;
        struct resolve_node *ref = resolve_add(r, digest);
        if (ref == NULL)
            break;
        ref->subject = subject;
        ref->descriptor = d;
        subject->has_referrers = true;
        if (r->referrers == RESOLVE_REFERRERS_ALL)
            resolve_fetch_manifest(r, ref, ref->digest);
    }
}

/* A listing is read: cap it, then take its referrers (or, lenient, note why not). */
static void resolve_read_referrers(struct resolve *r, struct resolve_node *subject,
                                   const char *bytes, size_t len)
{
    cJSON *index = NULL;
    const cJSON *list = NULL;
    char *err = NULL;
    int rc = resolve_referrers_parse(bytes, len, subject->digest, &index, &list, &err);
    if (rc < 0 && r->lenient) {
        subject->referrers_rc = rc;
        subject->referrers_error = err;
        return;
    }
    if (rc < 0) {
        resolve_fail(r, false, rc, err);
    } else if (cJSON_GetArraySize(list) > RESOLVE_REFERRERS_MAX) {
        char *msg = xasprintf("%s/%s@%s lists %d referrers: refused (the cap is %d per manifest)",
                              registry_host(r->src), r->repo, subject->digest,
                              cJSON_GetArraySize(list), RESOLVE_REFERRERS_MAX);
        resolve_fail(r, false, FERRY_ETOOBIG, msg);
        free(msg);
        cJSON_Delete(index);
    } else {
        /* The descriptors point into the listing: it lives as long as the nodes. */
        r->listings = xrealloc(r->listings, (r->n_listings + 1) * sizeof(*r->listings));
        r->listings[r->n_listings++] = index;
        resolve_add_referrers(r, subject, list);
    }
    free(err);
}

static void referrers_listed(int rc, const char *error, const char *bytes, size_t len,
                             const char *media_type, const char *digest, void *arg)
{
    struct resolve_ctx *ctx = arg;
    struct resolve *r = ctx->r;
    struct resolve_node *subject = ctx->n;
    (void)media_type;
    (void)digest;

    if (ctx->probe) {
        r->probe = PROBE_BACK;
        for (size_t i = 0; i < r->n_entries; i++) {
            if (r->entries[i]->referrers_wanted) {
                r->entries[i]->referrers_wanted = false;
                resolve_list_referrers(r, &r->entries[i]->node, false);
            }
        }
    }
    free(ctx);
    if (rc < 0)
        resolve_fail(r, false, rc, error);
    else if (len > 0 && r->rc == 0)
        resolve_read_referrers(r, subject, bytes, len);
    resolve_op_finished(r);
}

/* ---- manifests ---- */

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

/* The root is an index and the caller wants one platform: its manifest becomes the root. */
static void resolve_pick_platform(struct resolve *r, struct resolve_node *index)
{
    const struct descriptor *pick = NULL;
    for (size_t i = 0; i < index->m.n_manifests && pick == NULL; i++)
        if (platform_matches(&index->m.manifests[i], r->platform))
            pick = &index->m.manifests[i];
    if (pick == NULL) {
        char *msg = xasprintf("%s/%s:%s has no manifest for platform %s", registry_host(r->src),
                              r->repo, r->reference, r->platform);
        resolve_fail(r, false, FERRY_ENOTFOUND, msg);
        free(msg);
        return;
    }
    struct resolve_node *child = resolve_find(r, pick->digest);
    if (child == NULL)
        child = resolve_add(r, pick->digest);
    if (child == NULL)
        return;
    r->root = child;
    r->platform_index = index;
    resolve_fetch_manifest(r, child, child->digest);
}

/* Every child of an index joins the closure, refused before one is asked for past the cap. */
static void resolve_add_children(struct resolve *r, struct resolve_node *index)
{
    if (r->n_entries + index->m.n_manifests > RESOLVE_MANIFESTS_MAX) {
        char *msg = xasprintf("%s/%s@%s: an index of %zu children passes the cap of %d "
                              "manifests on one image: refused",
                              registry_host(r->src), r->repo, index->digest, index->m.n_manifests,
                              RESOLVE_MANIFESTS_MAX);
        resolve_fail(r, false, FERRY_ETOOBIG, msg);
        free(msg);
        return;
    }
    for (size_t i = 0; i < index->m.n_manifests; i++) {
        const struct descriptor *d = &index->m.manifests[i];
        if (resolve_find(r, d->digest) != NULL)
            continue;
        if (strcmp(d->digest, index->digest) == 0) {
            resolve_fail(r, false, FERRY_EPARSE, "an index lists itself");
            return;
        }
        struct resolve_node *child = resolve_add(r, d->digest);
        if (child == NULL)
            return;
        child->parent = index;
        resolve_fetch_manifest(r, child, child->digest);
    }
}

/*
 * A manifest the source could not give or that does not parse: lenient,
 * the closure keeps it unparsed (but for a missing root, which there is
 * nothing to check against); strict, the resolution fails.
 */
static bool resolve_keep_unparsed(struct resolve *r, struct resolve_node *n, int rc,
                                  const char *error, bool fetched)
{
    if (!r->lenient || (!fetched && (n == r->root || rc != FERRY_ENOTFOUND)))
        return false;
    n->rc = rc;
    n->error = xstrdup(error != NULL ? error : ferry_strerror(rc));
    return true;
}

/* Keep the manifest's bytes, with its digest when it was asked for by tag, and parse them. */
static int resolve_take(struct resolve *r, struct resolve_node *n, const char *bytes, size_t len,
                        const char *media_type, const char *digest, char **msg)
{
    char *perr = NULL;
    if (n->digest[0] == '\0') {
        /* The root, asked for by tag: now its digest is known. */
        struct resolve_entry *e = entry_of(n);
        free(n->digest);
        n->digest = xstrdup(digest);
        HASH_ADD_KEYPTR(hh, r->table, n->digest, strlen(n->digest), e);
    }
    n->bytes = xmalloc(len + 1);
    memcpy(n->bytes, bytes, len);
    n->bytes[len] = '\0';
    n->len = len;
    int rc = manifest_parse(&n->m, bytes, len, media_type, &perr);
    if (rc < 0)
        *msg = xasprintf("manifest %s: %s", n->digest, perr ? perr : ferry_strerror(rc));
    free(perr);
    return rc;
}

static void manifest_fetched(int rc, const char *error, const char *bytes, size_t len,
                             const char *media_type, const char *digest, void *arg)
{
    struct resolve_ctx *ctx = arg;
    struct resolve *r = ctx->r;
    struct resolve_node *n = ctx->n;
    char *msg = NULL;

    free(ctx);
    if (rc < 0) {
        if (!resolve_keep_unparsed(r, n, rc, error, false))
            resolve_fail(r, false, rc, error);
        goto out;
    }
    if (r->rc < 0)
        goto out;
    rc = resolve_take(r, n, bytes, len, media_type, digest, &msg);
    if (rc < 0 && !resolve_keep_unparsed(r, n, rc, msg, true)) {
        resolve_fail(r, false, rc, msg);
        goto out;
    }
    if (rc == 0 && n == r->root && n->m.kind == MANIFEST_INDEX && r->platform != NULL) {
        resolve_pick_platform(r, n);
        goto out;
    }
    if (rc == 0 && n->m.kind == MANIFEST_INDEX)
        resolve_add_children(r, n);
    resolve_want_referrers(r, n);
out:
    free(msg);
    resolve_op_finished(r);
}

static void resolve_fetch_manifest(struct resolve *r, struct resolve_node *n, const char *reference)
{
    struct resolve_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->r = r;
    ctx->n = n;
    resolve_op_started(r);
    if (r->fetch.manifest_get == NULL) {
        registry_manifest_get(r->src, r->repo, reference, manifest_fetched, ctx);
        return;
    }
    int rc = r->fetch.manifest_get(r->fetch.arg, r->repo, reference, manifest_fetched, ctx);
    if (rc < 0) {
        free(ctx);
        resolve_fail(r, true, FERRY_EINVAL, "cannot fetch manifest");
        resolve_op_finished(r);
    }
}

/* ---- the resolve ---- */

void resolve_start(const struct resolve_spec *spec, resolve_done_cb done, void *arg,
                   struct resolve **out)
{
    struct resolve *r = xcalloc(1, sizeof(*r));
    r->src = spec->src;
    if (spec->fetch != NULL)
        r->fetch = *spec->fetch;
    r->repo = xstrdup(spec->repo);
    r->reference = xstrdup(spec->reference);
    r->platform = xstrdup(spec->platform);
    r->referrers = spec->referrers;
    r->lenient = spec->lenient;
    r->done = done;
    r->done_arg = arg;
    *out = r;
    /* Held while the root's request starts, so that `done` fires once, last. */
    resolve_op_started(r);
    bool by_digest = strchr(r->reference, ':') != NULL;
    r->root = resolve_add(r, by_digest ? r->reference : "");
    resolve_fetch_manifest(r, r->root, r->reference);
    resolve_op_finished(r);
}

bool resolve_fault_local(const struct resolve *r)
{
    return r->rc < 0 && r->local;
}

struct resolve_node *resolve_root(const struct resolve *r)
{
    return r->root;
}

struct resolve_node *resolve_platform_index(const struct resolve *r)
{
    return r->platform_index;
}

size_t resolve_count(const struct resolve *r)
{
    return r->n_entries;
}

struct resolve_node *resolve_node_at(const struct resolve *r, size_t i)
{
    return &r->entries[i]->node;
}

/* ---- the blobs of an image ---- */

bool resolve_layer_foreign(const char *media_type)
{
    if (media_type == NULL)
        return false;
    return strcasecmp(media_type, MEDIA_DOCKER_FOREIGN_LAYER) == 0 ||
           strncasecmp(media_type, MEDIA_OCI_NONDISTRIBUTABLE,
                       sizeof(MEDIA_OCI_NONDISTRIBUTABLE) - 1) == 0;
}

size_t resolve_manifest_blobs(const struct manifest *m, bool foreign_layers, resolve_blob_cb cb,
                              void *arg)
{
    size_t skipped = 0;
    if (m->kind != MANIFEST_IMAGE)
        return 0;
    cb(arg, &m->config, RESOLVE_BLOB_CONFIG);
    for (size_t i = 0; i < m->n_layers; i++) {
        bool skip = !foreign_layers && resolve_layer_foreign(m->layers[i].media_type);
        skipped += skip;
        cb(arg, &m->layers[i], skip ? RESOLVE_BLOB_FOREIGN_SKIPPED : RESOLVE_BLOB_LAYER);
    }
    return skipped;
}

void resolve_free(struct resolve *r)
{
    if (r == NULL)
        return;
    HASH_CLEAR(hh, r->table);
    for (size_t i = 0; i < r->n_entries; i++) {
        struct resolve_node *n = &r->entries[i]->node;
        free(n->digest);
        free(n->bytes);
        manifest_release(&n->m);
        free(n->error);
        free(n->referrers_error);
        free(r->entries[i]);
    }
    free(r->entries);
    for (size_t i = 0; i < r->n_listings; i++)
        cJSON_Delete(r->listings[i]);
    free(r->listings);
    free(r->repo);
    free(r->reference);
    free(r->platform);
    free(r->error);
    free(r);
}
