/*
 * copy_int.h: what the files of the copy share (not for other modules).
 *
 *   copy.c            bookkeeping, the phases' driver, the ping, the resolve
 *                     and the plan of what waits for what;
 *   copy_blobs.c      what the destination holds, and each blob's way
 *                     through the owner's gate to its transfer;
 *   copy_transfer.c   one blob's bytes, from its download to its upload
 *                     through a ring or the spool;
 *   copy_manifests.c  manifests, the referrers tag fallback, and the tag.
 */
#ifndef FERRY_COPY_INT_H
#define FERRY_COPY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>
#include <uv.h>

#include "common/ring.h"
#include "registry/registry.h"
#include "replication/copy.h"
#include "replication/presence.h"
#include "replication/resolve.h"
#include "replication/spool.h"

/*
 * A blob flows from its download to its upload through a ring of this size:
 * memory stays flat whatever the blob's size. A paused side is woken once a
 * good piece can move, since every pause and resume costs libcurl a round.
 */
#define COPY_PIPE_BYTES      (256 * 1024)
#define COPY_PIPE_WAKE_BYTES (64 * 1024)

struct copy_node;

enum copy_blob_state {
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
    enum copy_blob_state state;
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
    bool gated;          /* the owner chose: mount_from (or NULL: upload) */
    bool in_transfer;    /* reached the transfer step (the owner's blob_done is due) */
    bool foreign;        /* a foreign layer left out: never queued (copy_spec.foreign_layers) */
    bool upload_refused; /* the upload (or mount) was refused: copy_push_refused() */
    struct registry_upload *upload;
    uint64_t sent;     /* bytes the upload has read so far, for progress */
    void *watch;       /* the observer's handle for this blob (NULL: not watched) */
    UT_hash_handle hh; /* in copy.blob_table by digest */
};

/* One manifest of the image's closure, with what the copy does with it. */
struct copy_node {
    struct copy *copy;
    struct resolve_node *r;    /* its digest, bytes and parsed manifest */
    struct copy_node *parent;  /* the index listing this child */
    struct copy_node *subject; /* for a referrer: the manifest it refers to */
    bool present;              /* already at the destination */
    bool pushed;
    int pending; /* blobs, children or gates still to come before the PUT */
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
    const struct resolve_fetch *fetch;
    bool foreign_layers; /* copy non-distributable layers too */
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
    bool push_refused;     /* rc is a push the destination refused (copy_push_refused()) */
    char *error;
    struct resolve *resolve; /* the closure at the source */
    struct copy_node **nodes;
    size_t n_nodes;
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
    char *dst_tag_digest; /* what the destination tag names now */
    int nodes_unpushed;   /* manifests still to PUT */
    struct copy_blob *queue_head;
    struct copy_blob *queue_tail;
    int jobs_running;
    int jobs;
    uint64_t start_ms;
    uv_timer_t kick; /* starts downloads outside libcurl's callbacks */
};

/* ---- copy.c ---- */

/* Record the first failure: its code, its text (NULL: the code's), whose fault. */
void copy_fail(struct copy *c, enum copy_fault fault, int rc, const char *error);

/*
 * A push (blob upload or mount, manifest or tag PUT) failed at the
 * destination: copy_fail() blaming it, and when it is the first failure and
 * a refusal (FERRY_ENOTFOUND, FERRY_EAUTH), copy_push_refused() says so.
 */
void copy_fail_push(struct copy *c, int rc, const char *error);

/* A callback is due; copy_op_finished() when it fired, which moves the phases on. */
void copy_op_started(struct copy *c);
void copy_op_finished(struct copy *c);

/* End the copy now: `done` fires with what failed, if anything. */
void copy_stop(struct copy *c);

struct copy_blob *copy_find_blob(struct copy *c, const char *digest);

/* Log a presence cache update that failed: it is an economy lost, the copy goes on. */
void copy_presence_add(struct copy *c, const char *digest, const char *repo);
void copy_presence_forget(struct copy *c, const char *digest, const char *repo);

/* ---- copy_blobs.c ---- */

/* Phase 3: HEAD the tag, the repository or the manifests, as needed. */
void copy_check_destination(struct copy *c);

/* Queue a blob the copy's missing manifests need, and start what the jobs allow. */
void copy_blob_queue(struct copy *c, struct copy_blob *b);
void copy_blob_pump(struct copy *c);

/* The blob is settled (rc 0) or failed: free its slot and tell its manifests. */
void copy_blob_finish(struct copy_blob *b, enum copy_fault fault, int rc, const char *error);

/* ---- copy_transfer.c ---- */

/* Move the blob up: mount it, or stream it from the source through a ring or the spool. */
void copy_blob_transfer(struct copy_blob *b);

/* Let go of the ring or the spool entry (idempotent). */
void copy_blob_release_pipe(struct copy_blob *b);

/* ---- copy_manifests.c ---- */

/* A blob, child or gate a missing manifest waited for is in: PUT it when nothing else is due. */
void copy_node_dependency_done(struct copy_node *n);

/* PUT a missing manifest (the root maybe by the tag, after the tag gate). */
void copy_node_push(struct copy_node *n);

/* Phase 5: where the destination has no referrers API, its sha256-<hex> tag lists them. */
void copy_update_referrers_index(struct copy *c);

/* Phase 6: the tag, unless the root's PUT named it or the gate left it. */
void copy_push_tag(struct copy *c);

#endif
