/*
 * records: a cluster node's job status records, written off the loop.
 *
 * On one node a record is a local RocksDB write and the engine makes it in
 * place. In a cluster each is a round trip to the servers, three or more per
 * job (PENDING, IN_PROGRESS, then how it ended): made on the loop they
 * stalled it (for the request's timeout, when a server was away) and
 * carried most of what the servers took in. Here they go to a thread, and
 * only the newest state of a record not yet written is written: a job that
 * ends within RECORDS_OPEN_DELAY_MS of its start costs one write, however
 * long it waited in the queue before.
 *
 * A record becomes visible to the other nodes (and to /v1/images, failures,
 * `ferry retry`) once written: a few milliseconds late, or while the
 * servers are away, when they are back. What a waiting job needs to survive
 * its node is its claim (journal.h), which the engine writes in place.
 */
#ifndef FERRY_RECORDS_H
#define FERRY_RECORDS_H

#include "common/errors.h"

#include <stddef.h>

#include "journal/journal.h"

/*
 * A PENDING or IN_PROGRESS record waits this long before it is written: a
 * job that ends sooner writes only how it ended (one write, instead of
 * four replicated ones with its index of open jobs). Other nodes see a
 * running job this much later (its node's beat counts it within 2 s); a
 * job that waits for its retry has its claim meanwhile. Three seconds, not
 * one: a node's jobs share its cores, so under load each takes longer, and
 * with 1 s half of a 3-node bench fleet's jobs wrote their open states
 * (303 of 600; tests/bench/cluster.sh, nats-server -V). A
 * queued job that has not run yet (PENDING, no attempt) waits for its start
 * and then this long: a backlog costs the servers nothing until it runs
 * (`/v1/images` says PENDING for a job with no record). The close, or a
 * table full at RECORDS_PENDING_MAX, writes queued records as they are.
 */
#define RECORDS_OPEN_DELAY_MS 3000

/* Records waiting to be written at most; past this a put waits for room. */
#define RECORDS_PENDING_MAX 100000

struct records;

/** A writer of `journal`'s job records (which outlives it). 0 and *out, or a negative code. */
FERRY_MUST_CHECK int records_new(struct journal *journal, struct records **out);

/** Write `job` (copied) soon; a newer put of the same record before then replaces it. */
void records_put(struct records *r, const struct journal_job *job);

/** Records put and not yet written. */
size_t records_pending(struct records *r);

/** Write what is left, then stop and free. NULL is fine. */
void records_close(struct records *r);

#endif
