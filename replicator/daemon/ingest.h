/*
 * ingest: the webhook endpoint, POST /v1/events/{source}. At the headers,
 * before any body is read, it checks the method, the token (constant time;
 * without one, the Host), the content type and the source; then it parses
 * the payload into journal events and answers only once the committer
 * reports them durable: 200 {"accepted","duplicates","ignored","last_seq"};
 * 400 malformed (nothing journaled); 401 bad token; 404 unknown source; 405
 * not POST; 415 not JSON; 421 a Host that does not name Ferry (no token);
 * 503 the journal could not write. The server answers 413 (body over the
 * cap) and 503 (bodies over the budget) itself.
 */
#ifndef FERRY_INGEST_H
#define FERRY_INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "daemon/server.h"
#include "journal/committer.h"
#include "journal/journal.h"

struct ingest;

/* What the webhook counted since start. */
struct ingest_stats {
    uint64_t requests;         /* requests to /v1/events/ */
    uint64_t events_accepted;  /* events journaled */
    uint64_t events_duplicate; /* events the journal had already */
    uint64_t events_ignored;   /* events no rule selects */
    uint64_t rejected;         /* requests refused or failed */
};

/**
 * A webhook endpoint that checks requests against `config` and journals
 * their events through `committer` into `journal`. All three must outlive
 * it (the config until ingest_reconfigure() replaces it).
 */
struct ingest *ingest_new(const struct config *config, struct journal *journal,
                          struct journal_committer *committer);

/** Switch to a reloaded config (the old one may be freed after this). */
void ingest_reconfigure(struct ingest *in, const struct config *config);

/**
 * Journal through `committer` from now on; NULL once the committer has
 * closed: events that arrive then are answered 503, as a closing committer's
 * are.
 */
void ingest_set_committer(struct ingest *in, struct journal_committer *committer);

/**
 * Admit or refuse `req` at its headers (see server_admit_cb) when its path is
 * under /v1/events/, and return true; false for any other path. Refused: a
 * method but POST (405), a missing or wrong bearer token when webhook_token
 * is set (401) or, when it is not, a Host that does not name this server
 * (421; server_request_host_allowed() with server_names), a Content-Type
 * that is not JSON (415; server_media_type_json(): a browser's form or
 * text/plain post across origins cannot reach the parser), an unknown
 * source (404).
 */
bool ingest_admit(struct ingest *in, struct server_request *req);

/**
 * Handle `req` if its path is under /v1/events/ (it passed ingest_admit());
 * returns true when it did (it then answers, now or after the commit), false
 * to let the caller route it.
 */
bool ingest_handle(struct ingest *in, struct server_request *req);

/** Copy what the webhook counted into *out. */
void ingest_get_stats(const struct ingest *in, struct ingest_stats *out);

/**
 * Close: once every request waiting on a commit has been answered (the
 * committer calls back for each, also while it closes), free the ingest and
 * call `cb` (may be NULL): at once when none waits, else from the commit's
 * callback. No request may reach the ingest after this.
 */
void ingest_close(struct ingest *in, void (*cb)(void *arg), void *arg);

#endif
