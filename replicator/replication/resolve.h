/*
 * resolve: the closure of one image at its source, by digest: the root
 * manifest (asked for by tag or digest), the children of an index (and
 * theirs), and the referrers the caller asks for. It is what a copy puts at
 * a destination and what `ferry verify` asks a destination for; what each
 * does with it stays with the caller (the copy pushes the bytes kept here,
 * verify compares them with a destination).
 *
 * Caps bound what a source may make Ferry hold and ask for: past
 * RESOLVE_MANIFESTS_MAX manifests (children of an index count), or
 * RESOLVE_REFERRERS_MAX referrers listed for one manifest, the resolution
 * fails with FERRY_ETOOBIG and an error naming the registry and the limit.
 */
#ifndef FERRY_RESOLVE_H
#define FERRY_RESOLVE_H

#include "common/errors.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/manifest.h"
#include "registry/registry.h"

#define RESOLVE_MANIFESTS_MAX 1000 /* manifests in the closure: index, children, referrers */
#define RESOLVE_REFERRERS_MAX 500  /* referrers listed for one manifest */

struct resolve;

/* One manifest of the closure; owned by its resolve, read by the caller. */
struct resolve_node {
    char *digest;
    char *bytes; /* as the source sent them, NUL-terminated; NULL: not fetched */
    size_t len;
    struct manifest m;     /* m.kind 0: not parsed (see rc) */
    int rc;                /* lenient: why `m` is not there (FERRY_ENOTFOUND, a parse error) */
    char *error;           /* ... in one line */
    int referrers_rc;      /* lenient: why its referrers listing was not read */
    char *referrers_error; /* ... in one line */
    struct resolve_node *parent;  /* the index that lists it (NULL: the root, a referrer) */
    struct resolve_node *subject; /* a referrer: the manifest it refers to */
    const cJSON *descriptor;      /* a referrer: its descriptor in the source's listing */
    bool has_referrers;           /* some node of the closure refers to it */
    void *data;                   /* the caller's */
};

/* Whose referrers the closure holds. */
enum resolve_referrers {
    RESOLVE_REFERRERS_NONE = 0,
    RESOLVE_REFERRERS_ROOT, /* the root's, listed but not fetched (bytes NULL) */
    RESOLVE_REFERRERS_ALL,  /* every manifest's but a referrer's, each fetched */
};

/*
 * How the resolver reads the source, for a caller that queues its requests;
 * both have registry_manifest_get()'s and registry_referrers()'s contracts
 * (0, or a negative code and the callback never fires).
 */
struct resolve_fetch {
    int (*manifest_get)(void *arg, const char *repo, const char *reference, registry_manifest_cb cb,
                        void *cb_arg);
    int (*referrers)(void *arg, const char *repo, const char *digest, registry_manifest_cb cb,
                     void *cb_arg);
    void *arg;
};

struct resolve_spec {
    struct registry *src; /* named in errors; read unless `fetch` is set */
    const char *repo;
    const char *reference;             /* the root: a tag or a digest */
    const char *platform;              /* "os/arch[/variant]": an index root gives way to its
                                          manifest for it; NULL: the whole index */
    enum resolve_referrers referrers;  /* whose referrers to list */
    bool lenient;                      /* see resolve_start() */
    const struct resolve_fetch *fetch; /* NULL: `src` directly */
};

/**
 * Ends a resolution: rc 0, or the first failure's code and its one-line
 * `error`. The resolve is the caller's to free with resolve_free().
 */
typedef void (*resolve_done_cb)(struct resolve *r, int rc, const char *error, void *arg);

/**
 * Resolve the closure `spec` names; its strings are copied, its registry and
 * fetch must outlive the resolve. `done` fires exactly once, possibly before
 * this returns when the fetch answers at once (or cannot start: rc
 * FERRY_EINVAL, and resolve_fault_local() is true).
 *
 * Strict (not `lenient`), any failure of the source fails the resolution.
 * Lenient, the closure keeps what the source can give: a child the source
 * lacks (FERRY_ENOTFOUND) or a manifest it cannot parse stays in the closure
 * unparsed (its `rc` and `error` say why), an unreadable referrers listing
 * lists nothing (`referrers_rc`, `referrers_error`); the source's other
 * failures, a missing root and the caps still fail it.
 */
void resolve_start(const struct resolve_spec *spec, resolve_done_cb done, void *arg,
                   struct resolve **out);

/** True when the failure was Ferry's own (a fetch that could not start), not the source's. */
bool resolve_fault_local(const struct resolve *r);

/** The root: the manifest asked for, or the platform's manifest an index gave way to. */
struct resolve_node *resolve_root(const struct resolve *r);

/** The index the root's platform was picked from (it is not part of the image), or NULL. */
struct resolve_node *resolve_platform_index(const struct resolve *r);

/** The manifests of the closure, in the order they were found (the first is the one asked for). */
size_t resolve_count(const struct resolve *r);
struct resolve_node *resolve_node_at(const struct resolve *r, size_t i);

/** The manifest of the closure with this digest, or NULL. */
struct resolve_node *resolve_find(const struct resolve *r, const char *digest);

/**
 * Read a referrers listing (an image index of descriptors, as the referrers
 * API or the `sha256-<hex>` fallback tag answers). Returns 0 with *index
 * (free it with cJSON_Delete()) and *list its "manifests" array, each of
 * whose descriptors has a valid "digest"; or FERRY_EPARSE, with *err (the
 * caller frees) saying what is wrong, in a line naming `subject`.
 */
FERRY_MUST_CHECK int resolve_referrers_parse(const char *bytes, size_t len, const char *subject,
                                             cJSON **index, const cJSON **list, char **err);

/*
 * Non-distributable ("foreign") layers: Windows base images name layers that
 * their vendor serves from the URLs in the descriptor, not the registry.
 * Docker's one media type, and OCI's three (tar, +gzip, +zstd) by prefix.
 * Like skopeo and crane, a copy leaves them out unless asked (a rule's
 * `foreign_layers: copy`): the manifest still goes up byte for byte, and a
 * registry takes it without the blob when the descriptor has `urls` it
 * admits (Distribution 2.8: only with validation.manifests.urls.allow set,
 * it admits none by default; and for OCI's +zstd it wants the blob anyway).
 */
#define MEDIA_DOCKER_FOREIGN_LAYER "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
#define MEDIA_OCI_NONDISTRIBUTABLE "application/vnd.oci.image.layer.nondistributable."

/** True when a layer of `media_type` is non-distributable (case-insensitive). False for NULL. */
bool resolve_layer_foreign(const char *media_type);

/* What a blob of an image manifest is to resolve_manifest_blobs()'s callback. */
enum resolve_blob_kind {
    RESOLVE_BLOB_CONFIG = 0,
    RESOLVE_BLOB_LAYER,
    RESOLVE_BLOB_FOREIGN_SKIPPED, /* a foreign layer left out: not copied, not looked for */
};

typedef void (*resolve_blob_cb)(void *arg, const struct descriptor *d, enum resolve_blob_kind kind);

/**
 * The blobs image manifest `m` names, for a copy to move and for verify to
 * look for at a destination: its config, then its layers in order, each
 * foreign layer (resolve_layer_foreign()) as RESOLVE_BLOB_FOREIGN_SKIPPED
 * unless `foreign_layers` (then as any layer). `cb` is called once per
 * descriptor, in that order; nothing for an index or an unparsed manifest.
 * Returns how many foreign layers were skipped.
 */
size_t resolve_manifest_blobs(const struct manifest *m, bool foreign_layers, resolve_blob_cb cb,
                              void *arg);

/** Free a resolve whose `done` has fired, with every node. */
void resolve_free(struct resolve *r);

#endif
