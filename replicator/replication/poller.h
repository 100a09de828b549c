/*
 * poller: the journal's second source of entries, for registries that send
 * no webhooks and for images that existed before Ferry started (backfill).
 *
 * Each round lists a source's repositories (`_catalog`, or the config's list
 * for registries without one), keeps those some rule selects, lists their
 * tags, resolves each selected tag's digest (HEAD), and compares with the
 * latest journaled value of that tag, whoever journaled it (the journal's tag
 * state: a webhook, an earlier poll, a job's look at the source): a new or
 * moved tag becomes a PUSH entry with event id `poll:<repo>:<tag>:<digest>@<seq>`,
 * and, where a rule propagates deletes, a tag that disappeared becomes a
 * DELETE. One observation, one entry: the events are `if_changed`, so the
 * journal compares again as it appends them, and the tag state moves in the
 * same batch as the entry, so a crash repeats a detection, never loses one.
 *
 * For the registries of the vendors (poller.c says each rule and why): a
 * source whose catalog is refused (401, 403, 404) is told to list its
 * repositories and its catalog is not asked again before a reload or an
 * hour; tag listings are conditional (ETag), an unchanged one is not
 * looked into, and every 10th round of a repository is a full sweep; and
 * a source announcing a request budget (RateLimit-*) gets only the pushes
 * its budget, less a reserve, can pay for, the rest in later rounds.
 */
#ifndef FERRY_POLLER_H
#define FERRY_POLLER_H

#include "common/errors.h"

#include <stdint.h>
#include <uv.h>

#include "journal/committer.h"
#include "config/config.h"
#include "journal/journal.h"

struct poller;

struct poller_stats {
    uint64_t rounds;   /* rounds finished (all sources) */
    uint64_t appended; /* entries the poller added */
    uint64_t errors;   /* repositories or sources that failed in a round */
    int64_t last_round_unix_ms;
    char last_error[256];
};

/** Called on the loop after each round over every source. */
typedef void (*poller_round_cb)(struct poller *p, void *arg);

/** A poller over every source registry of `config` with `poll` on. */
FERRY_MUST_CHECK int poller_new(uv_loop_t *loop, const struct config *config,
                                struct journal *journal, struct journal_committer *committer,
                                struct poller **out);

/** May this node poll `source` in the round that starts? */
typedef bool (*poller_gate_cb)(const char *source, void *arg);

/**
 * In a cluster, one node polls a source: `gate` is asked at the start of
 * every round, for every source. A source skipped and then polled again is
 * swept whole in that round (this node's memos of it are stale).
 */
void poller_set_gate(struct poller *p, poller_gate_cb gate, void *arg);

/** Run a round now, then every poll_interval (0: only this one). */
void poller_start(struct poller *p, poller_round_cb cb, void *arg);

/** Run one round now and no more (`ferry sync`). */
void poller_start_once(struct poller *p, poller_round_cb cb, void *arg);

void poller_get_stats(const struct poller *p, struct poller_stats *out);

/** Names from `source`'s listings that the poller found invalid and skipped. */
uint64_t poller_invalid_names(const struct poller *p, const char *source);

/* What the poller knows of one source, for the status. */
struct poller_source_status {
    char error[512]; /* a standing error (its catalog refused: what to do), or "" */
    /* The source's request budget as its latest answer announced it (-1: never). */
    int64_t ratelimit_limit;
    int64_t ratelimit_remaining;
    uint64_t ratelimit_window_s; /* 0: not given */
    uint64_t deferred;           /* pushes the budget held back in the latest round */
    uint64_t not_modified;       /* tag listings answered 304 so far */
    int64_t swept_to_unix_ms; /* webhooks sources: every tag was looked at up to here; 0: not yet */
};

/** Fill *out for `source` (a registry name); false when the poller does not poll it. */
bool poller_source_status(const struct poller *p, const char *source,
                          struct poller_source_status *out);

/** True while a round is listing `source` (a registry name). */
bool poller_source_active(const struct poller *p, const char *source);

/**
 * Stop: no new round starts; a round in flight is abandoned once its requests
 * return (nothing half-recorded: state moves only after a durable append).
 * Frees the poller when its handles are closed, then calls `cb`.
 */
void poller_close(struct poller *p, void (*cb)(void *arg), void *arg);

#endif
