/*
 * poller_int.h: what the files of the poller share (not for other modules).
 *
 *   poller.c       the rounds: listings, HEADs, the journal's tag state,
 *                  and the entries appended;
 *   poller_diff.c  the decisions, pure functions: what a listing and the
 *                  source's answers, compared with what the journal saw
 *                  before, make the poller journal; and what a change
 *                  costs against a registry's request budget, and how
 *                  much of that budget the poller may spend.
 */
#ifndef FERRY_POLLER_INT_H
#define FERRY_POLLER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One tag as the source answers for it now, or as the journal last saw it. */
struct poller_tag {
    const char *tag;
    const char *digest;     /* NULL: the source named no digest (it failed, or 404) */
    const char *media_type; /* the source's; may be NULL */
    uint64_t size;          /* the manifest's size as the source answered; 0: unknown */
    bool trusted; /* known to the journal and not looked at: a webhook reports its moves */
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
    uint64_t size;          /* a push: the manifest's size (0: unknown); a delete: 0 */
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

/*
 * The request budget (Docker Hub's pull limit: RateLimit-Limit and
 * RateLimit-Remaining, where a manifest GET spends one and a HEAD nothing).
 * The poller's own looks are HEADs; what spends the budget is the copy of
 * what it journals: the engine GETs each manifest of the image and looks
 * for its referrers (a GET of the `sha256-<hex>` tag where the registry has
 * no referrers API). So each push the poller journals is charged what its
 * copy is expected to GET, and it journals a push only while the budget
 * left after its recent charges stays above a reserve.
 */

/* The GETs charged for the copy of one image manifest: the manifest and its referrers look. */
#define POLLER_PULLS_PER_MANIFEST 2
/*
 * An index's children are guessed from its size (the poller only HEADs
 * it): one per this many bytes, at least one. A descriptor with a platform
 * takes about 200 bytes, with annotations more: the guess errs high.
 */
#define POLLER_INDEX_BYTES_PER_CHILD 256

/**
 * The pulls journaling `v` is expected to cost its copy: nothing for a
 * delete, POLLER_PULLS_PER_MANIFEST for an image (or a media type not
 * known), and that for the index and each of its guessed children for an
 * OCI index or a Docker manifest list (one child when its size is unknown).
 */
uint64_t poller_change_cost(const struct poller_verdict *v);

/**
 * The reconcile sweep of a `webhooks: true` source (poller.c): is
 * `repository` due for one in a round that covers the time (from_ms,
 * to_ms]? Each repository has its own point in every `interval_ms` (a hash
 * of the source's and its name), so the sweeps are spread over the interval
 * instead of coming as a burst, and one falls in every interval however the
 * rounds are spaced (the clock is the wall's: a restart keeps the schedule).
 */
bool poller_reconcile_due(const char *source, const char *repository, uint64_t from_ms,
                          uint64_t to_ms, uint64_t interval_ms);

/**
 * The part of a budget kept for others (the copies already under way,
 * people pulling): a tenth of `limit`, at least 1; of `remaining` when the
 * registry announced no limit.
 */
uint64_t poller_budget_reserve(int64_t limit, int64_t remaining);

/**
 * How many pulls the poller may still charge now: the `remaining` the
 * registry announced last, less the reserve and the `pending` charges of
 * what it journaled within the last while (their copies may not have
 * spent them yet: they are counted until then, even if twice), at least 0.
 * -1 when the registry announced no budget (`remaining` negative): no limit.
 */
int64_t poller_budget_spendable(int64_t limit, int64_t remaining, uint64_t pending);

/**
 * Whether a change of `cost` pulls may be journaled with `spendable` left
 * (poller_budget_spendable()). A cost larger than the whole budget above
 * the reserve could never be paid: it is admitted once nothing is pending
 * and everything above the reserve is left (`pending` 0 and `spendable` at
 * that most), so that a large index waits for a full budget, not forever.
 */
bool poller_budget_admits(int64_t limit, int64_t remaining, uint64_t pending, uint64_t cost);

#endif
