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

#include "journal/committer.h"
#include "config/config.h"
#include "journal/journal.h"
#include "daemon/server.h"

struct ingest {
    const struct config *config;
    struct journal *journal;
    struct journal_committer *committer;
    uint64_t requests;
    uint64_t events_accepted;
    uint64_t events_duplicate;
    uint64_t events_ignored;
    uint64_t rejected;
};

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

#endif
