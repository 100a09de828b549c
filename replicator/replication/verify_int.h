/*
 * verify_int.h: what the files of `ferry verify` share (not for other modules).
 *
 *   verify.c        the run: failures, the registries and their pings, the
 *                   listings, and each source tag's closure (resolve.h);
 *   verify_queue.c  registry requests, at most a registry's limit in flight;
 *   verify_check.c  what a destination must hold, and one destination's check;
 *   verify_drift.c  drift found, and the report.
 */
#ifndef FERRY_VERIFY_INT_H
#define FERRY_VERIFY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "registry/registry.h"
#include "replication/clients.h"
#include "replication/resolve.h"
#include "replication/verify.h"

struct verify;
struct verify_request;

enum drift_kind {
    DRIFT_MISSING = 0,
    DRIFT_DIFFERS,
    DRIFT_INCOMPLETE,
    DRIFT_REFERRERS,
    DRIFT_KEPT, /* not drift: a tag the rule's `overwrite: false` leaves alone */
};

/* One configured registry that some rule reads from or writes to. */
struct verify_registry {
    struct verify *v;
    const struct config_registry *cfg;
    struct clients cl;          /* zeroed: no rule names this registry */
    struct resolve_fetch fetch; /* the resolver's reads, through the queue (verify_queue.c) */
    bool destination;           /* some rule writes to it */
    int limit;                  /* requests in flight at once */
    int in_flight;
    bool pumping;
    struct verify_request *queue_head;
    struct verify_request *queue_tail;
    int ping_rc;
    char *ping_error;
};

enum request_kind {
    REQ_PING,
    REQ_CATALOG,
    REQ_TAGS,
    REQ_MANIFEST_HEAD,
    REQ_MANIFEST_GET,
    REQ_BLOB_HEAD,
    REQ_REFERRERS,
};

struct verify_request;
typedef void (*request_done_cb)(struct verify_request *req);

/*
 * One registry operation, queued so that no registry has more than its limit
 * in flight. Its results are copied in here, `done` runs exactly once (with
 * FERRY_ECANCELED when the run failed before it was sent), and the request is
 * freed right after.
 */
struct verify_request {
    struct verify_registry *r;
    enum request_kind kind;
    char *repository;
    char *reference; /* tag or digest */
    request_done_cb done;
    void *arg;
    const struct config_rule *rule; /* listings */
    size_t index;                   /* the caller's position of this request */
    registry_manifest_cb fetched;   /* the resolver's requests: their answer goes there */
    int rc;
    char *error;
    bool exists; /* HEADs: false on 404 */
    char *bytes; /* GETs and referrers */
    size_t len;
    char *media_type;
    char *digest;
    char **items; /* listings */
    size_t n_items;
    struct verify_request *next;
};

/* Something a destination must hold for a tag to be whole. */
enum item_kind {
    ITEM_MANIFEST,
    ITEM_CONFIG,
    ITEM_LAYER,
};

struct verify_item {
    enum item_kind kind;
    char *digest;
    char *parent;   /* the manifest a blob belongs to */
    char *platform; /* of a child manifest, or NULL */
};

/* One source tag being verified against every destination of its rule. */
struct verify_tag {
    struct verify *v;
    const struct config_rule *rule;
    struct verify_registry *src;
    char *repository;
    char *tag;
    char *digest;            /* what the source tag names */
    const char *platform;    /* the rule's platform (rule_platform.h), or NULL */
    char *expected;          /* what the destination tag must name: `digest`, or the
                                platform's manifest the index gave way to */
    bool picked;             /* `expected` is a platform's manifest out of `digest` */
    struct resolve *closure; /* what the source says the tag names */
    struct verify_item *items;
    size_t n_items;
    char **referrers;
    size_t n_referrers;
    size_t src_pending;
    size_t checks_pending;
    struct verify_tag *next;
};

/* One destination of one verify_tag. */
struct verify_check {
    struct verify_tag *t;
    const struct config_destination *dest;
    struct verify_registry *dst;
    char *repository;
    char *digest;
    bool *item_missing;
    char **listed; /* referrers the destination lists */
    size_t n_listed;
    size_t pending;
};

struct verify_drift {
    enum drift_kind kind;
    const char *destination;
    char *repository;
    char *tag;
    char *detail;
    const char *rule;
    const char *source;
    char *source_repository;
    char *digest;       /* what the destination tag must name */
    char *source_index; /* the source tag's index a platform was picked from, or NULL */
    const char *platform;
    char *destination_digest;
    char **missing;
    size_t n_missing;
};

/* A repository of a rule's source, to be listed when there is room. */
struct verify_listing {
    struct verify_registry *src;
    const struct config_rule *rule;
    char *repository;
    struct verify_listing *next;
};

struct verify {
    uv_loop_t loop;
    struct config *config;
    struct verify_registry *regs; /* parallel to config->registries */
    size_t pings_pending;
    struct verify_tag *pending_head; /* tags waiting for a slot */
    struct verify_tag *pending_tail;
    size_t n_pending;                     /* tags in the pending list */
    struct verify_listing *listings_head; /* repositories not listed yet */
    struct verify_listing *listings_tail;
    size_t active_listings;
    size_t active_tags;
    size_t tags_verified;
    int rc;                      /* the first failure, or 0 */
    char *error;                 /* its line */
    struct verify_drift *drifts; /* drift, and the tags kept by `overwrite: false` */
    size_t n_drifts;
    size_t n_kept; /* of n_drifts */
};

/* ---- verify.c ---- */

/* The client of a registry the config names (config_load() checked every name). */
struct verify_registry *verify_registry_of(struct verify *v, const char *name);

/* True once the run failed: nothing new starts, what is queued is canceled. */
bool verify_failed(const struct verify *v);

/* The line that names a registry's failure as the config names the registry. */
char *verify_failure_line(const struct verify_registry *r, int rc, const char *error);

/* Record the run's first failure (FERRY_ECANCELED is none). */
void verify_fail(struct verify *v, struct verify_registry *r, int rc, const char *error);

/* A source tag is done (`verified`: every destination was asked): free it, start the next. */
void verify_tag_finish(struct verify_tag *t, bool verified);

/* ---- verify_queue.c ---- */

/* A request of `kind` for `done` (run once, then the request is freed); queue it next. */
struct verify_request *verify_request_new(struct verify_registry *r, enum request_kind kind,
                                          const char *repository, const char *reference,
                                          request_done_cb done, void *arg, size_t index);

/* Queue `req` behind its registry's others; its `done` may run before this returns. */
void verify_request_queue(struct verify_request *req);

/* verify_request_new() and verify_request_queue() at once. */
void verify_request_submit(struct verify_registry *r, enum request_kind kind,
                           const char *repository, const char *reference, request_done_cb done,
                           void *arg, size_t index);

/* Route the resolver's reads of `r` (r->fetch) through its queue. */
void verify_request_fetch_init(struct verify_registry *r);

/* ---- verify_check.c ---- */

/* The source has said all it can of the tag: ask every destination of its rule. */
void verify_tag_check(struct verify_tag *t);

/*
 * The source cannot give what the tag's rule copies (an index without the
 * rule's platform): the tag is missing at every destination of the rule,
 * with `detail` (taken) saying why; no destination is asked.
 */
void verify_tag_unavailable(struct verify_tag *t, char *detail);

/* ---- verify_drift.c ---- */

/* Record a drift the check found (or a tag kept, DRIFT_KEPT); `detail` is taken. */
struct verify_drift *verify_drift_add(struct verify_check *c, enum drift_kind kind, char *detail);

/* Name a digest the destination lacks in `d`. */
void verify_drift_add_missing(struct verify_drift *d, const char *digest);

void verify_drift_release(struct verify_drift *d);

/* Print the drift, sorted, then the failures and the summary (see verify.h). */
void verify_report(struct verify *v, bool json, double seconds);

#endif
