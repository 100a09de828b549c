/*
 * committer: group commit of journal appends, driven by the loop.
 *
 * Callers on the loop thread submit batches of events; while one synced
 * WriteBatch is being written on a worker thread (uv_queue_work), everything
 * submitted meanwhile waits and goes out together in the next one. So under
 * load one fsync serves many requests, and an acknowledgement is only ever
 * given after its events are on disk.
 */
#ifndef FERRY_COMMITTER_H
#define FERRY_COMMITTER_H

#include "common/errors.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "journal/journal.h"

struct journal_committer;

/**
 * Ends a submission, on the loop thread: rc 0 and seqs[i] as journal_append()
 * gives them (0: duplicate), or a negative code and `error` when the write
 * failed (nothing of that submission is in the journal). `seqs` lives for the
 * duration of the callback. Fires exactly once per successful submit.
 */
typedef void (*journal_commit_cb)(int rc, const char *error, const uint64_t *seqs, size_t n,
                                  void *arg);

/** Called on the loop for every entry appended, in seq order (the tail). */
typedef void (*journal_tail_cb)(const struct journal_entry *e, void *arg);

/** A committer for `j` on `loop`; `j` must outlive it. */
FERRY_MUST_CHECK int journal_committer_new(uv_loop_t *loop, struct journal *j,
                                           struct journal_committer **out);

/** Set (or clear with NULL) the tail callback. */
void journal_committer_set_tail(struct journal_committer *c, journal_tail_cb cb, void *arg);

/**
 * Queue `n` events (copied). Returns 0, after which `cb` fires once when they
 * are durable or failed; or FERRY_EINVAL (event missing a field) / FERRY_ECANCELED
 * (closing), and `cb` never fires.
 */
FERRY_MUST_CHECK int journal_committer_submit(struct journal_committer *c,
                                              const struct journal_event *events, size_t n,
                                              journal_commit_cb cb, void *arg);

/** Batches written so far, for tests and stats. */
uint64_t journal_committer_batches(const struct journal_committer *c);

/**
 * Refuse new submissions, let queued and running ones finish (their callbacks
 * fire), then free the committer and call `cb`.
 */
void journal_committer_close(struct journal_committer *c, void (*cb)(void *arg), void *arg);

#endif
