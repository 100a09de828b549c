/*
 * cluster: what makes `ferry serve` one node of a cluster (DESIGN.md,
 * "Running as a cluster"), when the config has a `cluster:` section.
 *
 * - The journal the config names: the node's own RocksDB journal under
 *   data_dir, and in a cluster the shared one on NATS JetStream over it
 *   (cluster_journal_open()).
 * - The heartbeat: every CLUSTER_BEAT_MS, off the loop, the node says it is
 *   alive (with its figures), reads who else is, and takes or renews its
 *   leases: the poller's of each source (one node polls a source) and the
 *   one whose holder takes up the jobs of nodes that are gone.
 * - On the loop: the poller asks whether this node polls a source
 *   (cluster_may_poll()); when a node stops beating, the holder of the
 *   take-up lease runs engine_adopt(); the API shows every node.
 */
#ifndef FERRY_CLUSTER_H
#define FERRY_CLUSTER_H

#include "common/errors.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "journal/journal.h"
#include "replication/engine.h"

/* How often a node beats, and how long after its last beat it is gone. */
#define CLUSTER_BEAT_MS  2000
#define CLUSTER_LAPSE_MS 10000
/* The leases: held while renewed at every beat, taken over this long after the last. */
#define CLUSTER_LEASE_MS 10000
/* The holder of the take-up lease also looks for jobs of gone nodes this often. */
#define CLUSTER_ADOPT_EVERY_MS (5 * 60 * 1000)
/* The lease whose holder takes up the jobs of gone nodes. */
#define CLUSTER_ADOPT_LEASE "adopt"

/**
 * Open the journal `config` names, read-write or read-only (while a daemon
 * holds it). 0 and *out, or a negative code with *err (one line, no secret,
 * caller frees): -EBUSY when another process holds the node's own journal.
 */
FERRY_MUST_CHECK int cluster_journal_open(const struct config *config, bool read_only,
                                          struct journal **out, char **err);

/** A node as its last heartbeat said. */
struct cluster_node {
    char *name;
    int64_t beat_unix_ms; /* its last beat, by its clock */
    char *info;           /* what it said of itself: a JSON object, or "" */
    bool alive;           /* beat within CLUSTER_LAPSE_MS */
    bool self;
};

struct cluster;

/**
 * This node of the cluster `config` names (NULL when it has no `cluster:`:
 * 0 and *out NULL): one heartbeat is made at once, so that the poller's
 * first round knows which sources are this node's. `config` and `journal`
 * outlive it (cluster_reconfigure() swaps the config).
 */
FERRY_MUST_CHECK int cluster_new(uv_loop_t *loop, const struct config *config,
                                 struct journal *journal, struct cluster **out);

/** The engine whose figures the heartbeat carries and which takes up jobs; NULL while none runs. */
void cluster_set_engine(struct cluster *c, struct engine *e);

/** The config after a reload (the same `cluster:` section: the reload checks it). */
void cluster_reconfigure(struct cluster *c, const struct config *config);

/** Are two configs' `cluster:` sections the same (a reload may not change it)? */
bool cluster_config_same(const struct config *a, const struct config *b);

/** A poller_gate_cb: does this node hold the lease to poll `source` (a struct cluster)? */
bool cluster_may_poll(const char *source, void *arg);

/** This node's name. */
const char *cluster_node_name(const struct cluster *c);

/** The nodes as the last heartbeat read them (this one among them); valid until the next beat. */
size_t cluster_nodes(const struct cluster *c, const struct cluster_node **out);

/** Stop beating, give the leases back, say the node left; then `cb`. NULL is fine. */
void cluster_close(struct cluster *c, void (*cb)(void *arg), void *arg);

#endif
