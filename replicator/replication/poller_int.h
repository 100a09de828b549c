/*
 * poller_int.h: what the files of the poller share (not for other modules).
 *
 *   poller.c       the rounds: listings, HEADs, the journal's tag state,
 *                  and the entries appended;
 *   poller_diff.c  the decision, a pure function: what a listing and the
 *                  source's answers, compared with what the journal saw
 *                  before, make the poller journal.
 */
#ifndef FERRY_POLLER_INT_H
#define FERRY_POLLER_INT_H

#include <stdbool.h>
#include <stddef.h>

/* One tag as the source answers for it now, or as the journal last saw it. */
struct poller_tag {
    const char *tag;
    const char *digest;     /* NULL: the source named no digest (it failed, or 404) */
    const char *media_type; /* the source's; may be NULL */
};

enum poller_change {
    POLLER_NEW = 1, /* listed, unknown to the journal: a push */
    POLLER_MOVED,   /* names another digest than the journal's: a push */
    POLLER_DELETED, /* the journal knows it, the source answers 404: a delete */
};

/* One thing to journal. Its strings point into the diff's inputs. */
struct poller_verdict {
    enum poller_change change;
    const char *tag;
    const char *digest;     /* a push: the source's digest; a delete: the journal's */
    const char *media_type; /* a push: the source's (may be NULL); a delete: NULL */
};

/* What one repository's listing means. */
struct poller_diff {
    struct poller_verdict *changes; /* listed tags that are new or moved, in listing order */
    size_t n_changes;
    const struct poller_tag **unlisted; /* known tags the listing left out, in `known` order */
    size_t n_unlisted;
};

/**
 * Compare a repository's `listed` tags (each with the digest the source
 * resolved it to, or NULL) with the `known` ones (the journal's tag state,
 * each with its digest; a tag may stand twice, the first counts). A listed
 * tag with a digest is new when the journal does not know it, moved when
 * the journal knows another digest; a listed tag without one is left alone.
 * A known tag the listing does not name is only `unlisted`: a listing may
 * lag behind the manifests, so only the source's own answer for the tag
 * (poller_diff_unlisted()) makes it deleted. Pure: `out` is filled (release
 * it with poller_diff_release()) and nothing else is touched.
 */
void poller_diff_listing(const struct poller_tag *listed, size_t n_listed,
                         const struct poller_tag *known, size_t n_known, struct poller_diff *out);

void poller_diff_release(struct poller_diff *d);

/**
 * A tag the listing left out, with the source's answer for it: `rc` 0 and
 * the `digest` (and `media_type`) it names now, FERRY_ENOTFOUND, or another
 * error. True with *out for a delete (404) or a move (another digest than
 * `known`'s); false when there is nothing to journal (the same digest, or
 * the source failed: a failed look must never look like a deleted tag).
 */
bool poller_diff_unlisted(const struct poller_tag *known, int rc, const char *digest,
                          const char *media_type, struct poller_verdict *out);

#endif
