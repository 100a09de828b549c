/*
 * copy: one whole image from a source registry to a destination, on the
 * caller's loop with the caller's registry clients (the engine's jobs and
 * `ferry copy` both start one). The image's closure (an index, its
 * children, their configs and layers, and its referrers) is resolved by
 * digest from the source (resolve.h); blobs move in parallel, each streamed
 * from its download to its upload through a bounded ring, so memory stays
 * flat whatever the size; manifests go up after their blobs, children
 * before their index, referrers after their subject, and the tag last.
 * Nothing already at the destination is sent again.
 */
#ifndef FERRY_COPY_H
#define FERRY_COPY_H

#include "common/errors.h"

#include <stdbool.h>
#include <stdint.h>

#include "registry/http.h"
#include "registry/registry.h"
#include "replication/presence.h"
#include "replication/resolve.h"
#include "replication/spool.h"

struct copy;

struct copy_summary {
    char digest[80]; /* the manifest the destination tag now names */
    uint64_t blobs_copied;
    uint64_t bytes_copied;
    uint64_t blobs_mounted;
    uint64_t blobs_skipped;
    uint64_t manifests_pushed;
    uint64_t manifests_skipped;
    uint64_t referrers;
    uint64_t foreign_layers_skipped; /* non-distributable layers left out (resolve.h) */
    uint64_t requests;
    uint64_t requests_by_method[6]; /* GET HEAD PUT POST PATCH DELETE */
    uint64_t retries;
    double seconds;
};

/*
 * Watches the bytes of a copy move (the command line draws its progress bars
 * with it). With an observer, every member is set.
 */
struct copy_observer {
    /* A blob's transfer of `size` bytes starts; the answer is its handle below. */
    void *(*blob_start)(void *arg, const char *digest, uint64_t size);
    /* `moved` bytes of the blob are through so far. */
    void (*blob_moved)(void *arg, void *blob, uint64_t moved);
    /* The blob's transfer is over, `ok` or not; its handle is not used again. */
    void (*blob_done)(void *arg, void *blob, bool ok);
    /* The copy is over. */
    void (*finish)(void *arg);
    void *arg;
};

/** Ends a copy started with copy_start(); free it with copy_free() (here or later). */
typedef void (*copy_done_cb)(struct copy *c, int rc, const char *error, void *arg);

/**
 * Asked before the destination tag moves to `digest` (every manifest and
 * referrer is in by then). The owner answers once with copy_tag_decide().
 */
typedef void (*copy_tag_gate_cb)(struct copy *c, const char *digest, void *arg);

/* What the copy knows of a blob at the destination when it asks the gate. */
enum copy_blob_seen {
    COPY_BLOB_UNCHECKED = 0, /* nothing yet: the owner may know, or answers copy_blob_check() */
    COPY_BLOB_ABSENT,        /* a HEAD says missing */
    COPY_BLOB_NEW_REPO,      /* not HEADed: the repository had no tags (the owner may have
                                put blobs in it already) */
    COPY_BLOB_PRESENT,       /* a HEAD found it; it may be a link another copy is still writing */
};

/**
 * Asked for every blob of a manifest the destination lacks, before any
 * request for it. The owner answers once with copy_blob_decide(), or, for
 * COPY_BLOB_UNCHECKED, may answer copy_blob_check() to have it HEADed first
 * (the gate is then asked again with what the HEAD saw).
 */
typedef void (*copy_blob_gate_cb)(struct copy *c, const char *digest, enum copy_blob_seen seen,
                                  void *arg);

/** A blob that went through the gate is settled: at the destination (ok) or not. */
typedef void (*copy_blob_done_cb)(struct copy *c, const char *digest, bool ok, void *arg);

/* Blobs in flight when the spec does not say. */
#define COPY_DEFAULT_JOBS 8

/* One copy on a caller's loop, with the caller's registry clients. */
struct copy_spec {
    struct registry *src;
    struct registry *dst; /* created with registry_options.push */
    const char *src_repo;
    const char *src_reference; /* tag or digest */
    const char *dst_repo;
    const char *dst_tag; /* NULL: no tag at the destination */
    const char *platform;
    bool no_referrers;
    const char *mount_from;
    int jobs; /* blobs in flight (0: COPY_DEFAULT_JOBS, 8) */
    struct registry_upload_options upload;
    struct presence *presence;            /* may be NULL */
    const struct copy_observer *observer; /* may be NULL */
    struct spool *spool;                  /* NULL: each blob streams through a ring of its own */
    copy_tag_gate_cb tag_gate;            /* NULL: the tag moves without asking */
    void *tag_gate_arg;
    bool skip_ping;       /* the registries were pinged already */
    bool dst_repo_exists; /* the owner knows the destination repository exists */
    /*
     * A missing destination tag means the image is missing: its manifests are
     * not HEADed but PUT (a PUT of a manifest that is there is harmless).
     */
    bool trust_missing_tag;
    /* Copy non-distributable (foreign) layers like any blob; false: leave them
     * out, as skopeo and crane do (the manifest still goes up byte for byte). */
    bool foreign_layers;
    /* How the closure is read at the source (resolve.h); NULL: directly. Must outlive the copy. */
    const struct resolve_fetch *fetch;
    copy_blob_gate_cb blob_gate; /* NULL: every missing blob goes straight up */
    copy_blob_done_cb blob_done;
    void *blob_arg;
};

/**
 * Start copying on `loop`. Strings of `spec` are copied; the registries,
 * presence cache and observer must outlive the copy. Returns 0 and `done`
 * fires exactly once, never from inside this call (*out, may be NULL, is
 * the copy), or a negative uv code when the copy's timer cannot start
 * (`done` never fires).
 */
FERRY_MUST_CHECK int copy_start(uv_loop_t *loop, const struct copy_spec *spec,
                                struct copy_summary *summary, copy_done_cb done, void *arg,
                                struct copy **out);

/* The owner's answer at the tag gate. */
enum copy_tag_verdict {
    COPY_TAG_MOVE = 0, /* PUT the tag */
    COPY_TAG_LEAVE,    /* leave it alone: a newer entry owns it, or the source's tag names
                          another image now (see copy_tag_superseded()) */
    COPY_TAG_HELD,     /* the tag names the image already, as the copy saw it: nothing to PUT */
};

/**
 * Answer the tag gate: `rc` < 0 fails the copy with `error` (one line; NULL:
 * a generic one); otherwise `verdict` says what becomes of the tag. Either
 * way the copy succeeds with its manifests in.
 */
void copy_tag_decide(struct copy *c, int rc, const char *error, enum copy_tag_verdict verdict);

/** True when the tag gate said no. */
bool copy_tag_superseded(const struct copy *c);

/** What the destination tag named before this copy (NULL: it did not exist). */
const char *copy_dst_tag_digest(const struct copy *c);

/**
 * Answer the blob gate: mount from `mount_from` (a repository of the same
 * destination registry that holds it; the copy's own repository means the
 * blob is there already), or upload when NULL.
 */
void copy_blob_decide(struct copy *c, const char *digest, const char *mount_from);

/** Answer the blob gate for a COPY_BLOB_UNCHECKED blob: HEAD it, then ask again. */
void copy_blob_check(struct copy *c, const char *digest);

/**
 * Answer the blob gate for a blob the owner counts as its own transfer (its
 * blob_done is due) and has word it is in the copy's repository already:
 * HEAD it, settled when there, uploaded when not (or when the HEAD fails). (A mount from the
 * repository itself would rewrite its link, which Distribution does not atomically: a concurrent
 * mount there may then miss it.)
 */
void copy_blob_confirm(struct copy *c, const char *digest);

/** A blob's size as the copy's manifests give it, or -1 when it is not one of the copy's. */
int64_t copy_blob_size(struct copy *c, const char *digest);

/*
 * Caps on what one image's source may make a copy hold and ask for: past one,
 * the copy fails (COPY_FAULT_SOURCE, FERRY_ETOOBIG) with an error naming the
 * registry and the limit. Children of an index count toward the closure;
 * the manifests of the closure (index, children, referrers) and the
 * referrers listed for one manifest are capped where it is resolved
 * (resolve.h); the distinct blobs its missing manifests name, here.
 */
#define COPY_MANIFESTS_MAX RESOLVE_MANIFESTS_MAX
#define COPY_REFERRERS_MAX RESOLVE_REFERRERS_MAX
#define COPY_BLOBS_MAX     20000

/* Whose fault a failed copy was: the engine charges a destination's
 * circuit only with the destination's own trouble. */
enum copy_fault {
    COPY_FAULT_NONE = 0,
    COPY_FAULT_SOURCE,      /* the source: unknown manifest or blob, bad digest, size or manifest,
                               or the source unreachable or failing */
    COPY_FAULT_DESTINATION, /* the destination: connection, 5xx, 429, timeouts, refusals */
    COPY_FAULT_LOCAL,       /* Ferry itself: the spool, the journal, an internal error */
};

/**
 * After `done` fired with rc < 0: whose fault the first failure was. The
 * error code (`rc`) says what it was; FERRY_ENOTFOUND, FERRY_EDIGEST,
 * FERRY_ETOOBIG and FERRY_EPARSE from the source mean the source cannot give
 * the image as its entry named it (gone, garbage-collected, or broken).
 */
enum copy_fault copy_fault(const struct copy *c);

/**
 * After `done` fired with rc < 0: true when the first failure was a push the
 * destination refused, as registries refuse one into a repository that does
 * not exist (ECR, a Harbor project): a blob upload or mount, or a manifest
 * or tag PUT, answered with FERRY_ENOTFOUND (404 NAME_UNKNOWN) or FERRY_EAUTH
 * (403 DENIED). Never for what the copy only read at the destination (a
 * HEAD, a tag or referrers listing).
 */
bool copy_push_refused(const struct copy *c);

/** The destination repository of the copy. */
const char *copy_dst_repo(const struct copy *c);

/** Free a finished copy (its timer closes through the loop). */
void copy_free(struct copy *c);

#endif
