/*
 * webhook: turn a webhook payload into journal events. Pure functions: no
 * I/O, no state.
 *
 * Formats, detected from the Content-Type and the payload's shape:
 *  - CNCF Distribution notifications (application/vnd.docker.distribution.events.v1+json
 *    and v2+json): {"events":[{id, timestamp, action, target:{mediaType, digest,
 *    repository, tag, ...}, ...}]}
 *  - Harbor webhooks (default payload): {type, occur_at, operator,
 *    event_data:{resources:[{digest, tag, resource_url}], repository:{name,
 *    namespace, repo_full_name, ...}}} with type PUSH_ARTIFACT or DELETE_ARTIFACT
 *  - Ferry's generic form: {"events":[{"id","action":"push|delete",
 *    "repository","digest","tag","mediaType"}]}
 *
 * Only manifest-level events become journal events: a push whose target is a
 * manifest or index media type or that carries a tag; a delete of a manifest
 * digest or a tag. Blob pushes, pulls and mounts are counted as ignored.
 */
#ifndef FERRY_WEBHOOK_H
#define FERRY_WEBHOOK_H

#include "common/errors.h"

#include <stddef.h>

#include "journal/journal.h"

/* Most events accepted from one payload. */
#define WEBHOOK_MAX_EVENTS 10000

struct webhook_result {
    struct journal_event *events; /* strings owned by the result */
    size_t n;
    size_t ignored; /* well-formed events that are not manifest-level */
};

/**
 * Parse `len` bytes of `body` (not NUL-terminated) sent with `content_type`
 * (may be NULL) for registry `source`. Returns 0 and fills `out` (release with
 * webhook_result_release()), or FERRY_EPARSE with *err a one-line message
 * naming the problem ("events[3].target.digest is not a valid digest",
 * "malformed JSON at byte 120"), or FERRY_ETOOBIG over WEBHOOK_MAX_EVENTS.
 * On error nothing is returned: one bad event rejects the whole payload, so
 * a registry's retry can deliver it whole once fixed.
 *
 * Event ids: Distribution's and the generic form's "id" (required);
 * Harbor sends none, so "harbor:<type>:<repo>:<digest>:<tag>:<occur_at>".
 * Repository names must pass reference_repository_valid(), digests
 * digest_valid(), tags reference_tag_valid().
 */
FERRY_MUST_CHECK int webhook_parse(const char *source, const char *content_type, const char *body,
                                   size_t len, struct webhook_result *out, char **err);

/** Free what webhook_parse() returned. */
void webhook_result_release(struct webhook_result *r);

#endif
