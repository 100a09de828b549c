/*
 * ingest: the webhook endpoint, POST /v1/events/{source}. It checks the
 * token (constant time), the source and the body, parses the payload into
 * journal events and answers only once the committer reports them durable:
 * 200 {"accepted","duplicates","ignored","last_seq"}; 400 malformed (nothing
 * journaled); 401 bad token; 404 unknown source; 413 body over the cap;
 * 503 the journal could not write.
 */
#ifndef FERRY_INGEST_H
#define FERRY_INGEST_H

#include "committer.h"
#include "config.h"
#include "journal.h"
#include "server.h"

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
 * Handle `req` if its path is under /v1/events/; returns true when it did
 * (it then answers, now or after the commit), false to let the caller route it.
 */
bool ingest_handle(struct ingest *in, struct server_request *req);

#endif
