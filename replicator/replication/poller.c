/*
 * poller.c: the rounds (poller.h). Besides the listings, HEADs and entries,
 * three rules for the registries of the vendors, each with its reason:
 *
 * No catalog. ECR, GHCR, Docker Hub and Artifact Registry (for all but
 * admins) answer GET /v2/_catalog with 401, 403 or 404. After such an
 * answer the source's catalog is not asked again until the config is
 * reloaded (which makes a new poller) or POLLER_CATALOG_RETRY_MS (an hour)
 * has passed; its rounds list nothing meanwhile, the other sources go on,
 * and the error (logged once, kept in the source's status and in the
 * round's stats) says to list the repositories under `repositories:`.
 *
 * Conditional listings. Each repository's ETag is kept in the journal's
 * poll memos (journal_poll_memo_get(): on disk, so that the poller's memory
 * does not grow with the catalog; a new poller, at a start or a reload,
 * forgets them all) and sent back as If-None-Match; a 304 means the
 * listing did not change, and the round HEADs none of its tags. A tag can
 * move without its listing changing (same names, another digest), so every
 * POLLER_SWEEP_ROUNDS-th round of a repository (the 10th) is a full sweep:
 * listed without If-None-Match, every tag HEADed. A tag moved behind an
 * unchanged listing is therefore found within 10 rounds (5 minutes at the
 * default poll_interval of 30 s), a listing that changed at the next round.
 * The ETag is kept only from a round that looked at everything cleanly (no
 * failed look, no tag 404, nothing left for the budget, the entries durable):
 * otherwise the next round lists the repository in full again.
 *
 * Sources that send webhooks (`webhooks: true`). Their pushes reach the
 * journal as notifications, so a round costs the source O(repositories)
 * requests, not O(tags): each repository is listed (conditionally, as
 * above) and only the names the journal does not know are HEADed; a name
 * the listing dropped is looked at as always (a delete). A move of a known
 * tag is the webhook's to report; in case one was lost, each repository is
 * swept (listed in full, every tag HEADed) once per reconcile_interval, at
 * its own point in it (poller_reconcile_due()), so the sweeps are spread
 * over the interval. The first round of a poller (a start, a reload, `ferry
 * sync`) sweeps everything: what was said while Ferry was not listening is
 * not assumed to have arrived. A sweep that could not look at everything is
 * owed: the repository is swept again at the next round.
 *
 * The request budget (Docker Hub's pull limit, poller_int.h). The poller
 * reads the source's RateLimit-Remaining from its own answers (HEADs carry
 * it, and spend nothing). A push it journals is charged what its copy is
 * expected to GET (poller_change_cost()); it is journaled only while
 * Remaining, less a reserve of a tenth of the limit and less the charges of
 * the last POLLER_SETTLE_S seconds (or of the limit's window, when
 * shorter: copies that may not have spent them yet), covers it. What does
 * not fit waits for a later round (its repository keeps no ETag, so it is
 * listed and looked at again), and the poller's own fallback GETs (a tag
 * whose HEAD names no digest) are skipped while nothing can be spent. So
 * the poller spends the budget down to the reserve at once (the images
 * arrive soonest) rather than spreading it over the window, and then takes
 * only what the registry gives back. Deletes cost nothing and are never held.
 */
#include "replication/poller.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "registry/registry.h"
#include "replication/clients.h"
#include "replication/poller_int.h"

/* A catalog refused (401, 403, 404) is asked again after this long, or at a reload. */
#define POLLER_CATALOG_RETRY_MS (60ull * 60 * 1000)
/* Every this many rounds a repository is listed unconditionally and each tag HEADed. */
#define POLLER_SWEEP_ROUNDS 10
/* A budget reading with no window is trusted this long after the answer that carried it. */
#define POLLER_BUDGET_STALE_MS ((uint64_t)10 * 60 * 1000)
/* A push's charge against the budget is held this long (at most the limit's window). */
#define POLLER_SETTLE_S 30
/* The one-line errors the poller keeps per source. */
#define POLLER_SOURCE_ERROR_MAX 512

struct poll_source;

/* One second's charges against the budget. */
struct poll_charge {
    uint64_t second; /* of the loop's clock */
    uint64_t pulls;
};

/* One repository's share of a round. */
struct poll_repo {
    struct poll_source *src;
    char *name;
    struct poller_tag *listed; /* tags listed this round and selected, with the source's digest */
    size_t n_listed;
    size_t heads_pending;
    struct poller_tag *known; /* the journal's tag state */
    size_t n_known;
    struct journal_event *events;
    char **owned; /* strings the tags and events point at */
    size_t n_owned;
    size_t n_events;
    size_t gone_pending;           /* looks at tags the listing no longer names */
    bool not_modified;             /* the listing answered 304: nothing was looked at */
    bool sweep;                    /* every listed tag is HEADed this round */
    bool dirty;                    /* something was not looked at, or not recorded: keep no ETag */
    char *etag;                    /* this round's listing's ETag, or NULL */
    struct journal_poll_memo memo; /* what the last rounds left (zero: nothing) */
    int memo_rc;                   /* reading it: 0, FERRY_ENOTFOUND, or an error */
};

struct poll_source {
    struct poller *poller;
    const struct config_registry *cfg;
    struct clients cl; /* cl.pull: the source's client */
    bool deletes;
    bool round_active;
    char **repos;
    size_t n_repos;
    size_t next_repo;
    int active_repos;
    uint64_t round;            /* rounds started */
    bool listed_repos;         /* this round knows its repositories (no failed catalog) */
    char *catalog_error;       /* the catalog was refused: why, and what to do; NULL */
    uint64_t catalog_retry_ms; /* when (the loop's clock) to ask it again */
    struct poll_charge charges[POLLER_SETTLE_S];
    uint64_t swept_to_ms;    /* wall clock: reconcile points up to here were swept; 0: none */
    uint64_t round_start_ms; /* wall clock: when this round started */
    uint64_t deferred;       /* pushes the budget held back, this round */
    uint64_t last_deferred;  /* and in the last round that ended */
    /* A memo could not be read or written (this round; the last one): the
     * memos may be stale, so the next round sweeps every repository. */
    bool memo_failed;
    bool memo_failed_last;
};

struct poller {
    uv_loop_t *loop;
    const struct config *config;
    struct journal *journal;
    struct journal_committer *committer;
    struct poll_source *sources;
    size_t n_sources;
    uv_timer_t timer;
    int outstanding; /* callbacks still to come */
    int sources_active;
    bool closing;
    bool closed_handles;
    int closing_handles; /* handles still closing: the sources' clients and the timer */
    poller_round_cb round_cb;
    void *round_arg;
    poller_gate_cb gate; /* may this node poll a source this round? NULL: yes */
    void *gate_arg;
    void (*close_cb)(void *);
    void *close_arg;
    struct poller_stats stats;
};

static void poller_round(struct poller *p);
static void source_pump(struct poll_source *src);
static void poller_maybe_finish_close(struct poller *p);

static void poller_error(struct poller *p, const char *fmt, const char *a, const char *b)
{
    p->stats.errors++;
    snprintf(p->stats.last_error, sizeof(p->stats.last_error), fmt, a, b ? b : "");
    log_warn("poller: %s", p->stats.last_error);
}

static char *own(struct poll_repo *r, char *s)
{
    r->owned = xrealloc(r->owned, (r->n_owned + 1) * sizeof(*r->owned));
    r->owned[r->n_owned++] = s;
    return s;
}

static void repo_free(struct poll_repo *r)
{
    for (size_t i = 0; i < r->n_owned; i++)
        free(r->owned[i]);
    free(r->owned);
    free(r->listed);
    free(r->known);
    free(r->events);
    free(r->etag);
    journal_poll_memo_release(&r->memo);
    free(r->name);
    free(r);
}

/* ---- what the poller remembers of each repository (the journal's poll memos) ---- */

/* A memo that could not be read or written: said once a round, and the next round sweeps. */
static void memo_failed(struct poll_source *src, const char *what, const char *name, int rc)
{
    if (!src->memo_failed)
        log_warn("poll memo %s failed source=%s repo=%s error=\"%s\" (the next round lists every "
                 "repository in full)",
                 what, src->cfg->name, name, ferry_strerror(rc));
    src->memo_failed = true;
}

/* Read the memo a repository's round starts from into r->memo. */
static void memo_load(struct poll_repo *r)
{
    struct poll_source *src = r->src;
    r->memo_rc = journal_poll_memo_get(src->poller->journal, src->cfg->name, r->name, &r->memo);
    if (r->memo_rc < 0 && r->memo_rc != FERRY_ENOTFOUND)
        memo_failed(src, "read", r->name, r->memo_rc);
}

/* Forget every memo of the source but its repositories that `keep` names (none: all). */
static void memos_prune(struct poll_source *src, char *const *keep, size_t n_keep)
{
    int rc = journal_poll_memo_prune(src->poller->journal, src->cfg->name, keep, n_keep, NULL);
    if (rc < 0)
        memo_failed(src, "prune", "*", rc);
}

static bool memo_etag_equal(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * What a repository's round leaves for the next one, written only when it
 * changed (a record that could not be read is replaced). A repository with
 * nothing to remember has no memo at all. Each kind of source keeps what it
 * reads: `webhooks: false` the listing's round (its sweeps come every
 * POLLER_SWEEP_ROUNDS rounds), `webhooks: true` whether a sweep is owed.
 */
static void memo_update(struct poll_repo *r)
{
    struct poll_source *src = r->src;
    const struct journal_poll_memo *old = &r->memo;
    struct journal_poll_memo m = *old;
    if (r->sweep && src->cfg->webhooks)
        m.sweep_owed = r->dirty;
    if (!r->not_modified) {
        m.etag = !r->dirty ? r->etag : NULL;
        if (!src->cfg->webhooks)
            m.listed_round = src->round;
    }
    bool empty = m.etag == NULL && !m.sweep_owed;
    if (empty)
        m.listed_round = 0;
    bool same = r->memo_rc == 0
                    ? m.sweep_owed == old->sweep_owed && m.listed_round == old->listed_round &&
                          memo_etag_equal(m.etag, old->etag)
                    : r->memo_rc == FERRY_ENOTFOUND && empty;
    if (same)
        return;
    int rc =
        journal_poll_memo_put(src->poller->journal, src->cfg->name, r->name, empty ? NULL : &m);
    if (rc < 0)
        memo_failed(src, "write", r->name, rc);
}

/* ---- the request budget ---- */

static uint64_t budget_settle_s(const struct registry_stats *st)
{
    if (st->ratelimit_window_s > 0 && st->ratelimit_window_s < POLLER_SETTLE_S)
        return st->ratelimit_window_s;
    return POLLER_SETTLE_S;
}

/* The charges of the last settle seconds. */
static uint64_t budget_pending(const struct poll_source *src, const struct registry_stats *st)
{
    uint64_t now_s = uv_now(src->poller->loop) / 1000;
    uint64_t settle = budget_settle_s(st);
    uint64_t pending = 0;
    for (size_t i = 0; i < POLLER_SETTLE_S; i++) {
        const struct poll_charge *c = &src->charges[i];
        if (c->pulls > 0 && c->second + settle > now_s)
            pending += c->pulls;
    }
    return pending;
}

static void budget_charge(struct poll_source *src, uint64_t pulls)
{
    uint64_t now_s = uv_now(src->poller->loop) / 1000;
    struct poll_charge *c = &src->charges[now_s % POLLER_SETTLE_S];
    if (c->second != now_s)
        *c = (struct poll_charge){.second = now_s};
    c->pulls += pulls;
}

/* May a change of `cost` pulls be journaled now? If so, it is charged. */
static bool budget_take(struct poll_source *src, uint64_t cost)
{
    struct registry_stats st;
    if (cost == 0)
        return true;
    registry_get_stats(src->cl.pull, &st);
    if (st.ratelimit_remaining < 0)
        return true;
    /* A reading older than its window (or POLLER_BUDGET_STALE_MS without
     * one) says nothing of now: the window has turned, or the registry
     * stopped counting (an anonymous answer before a login, say). */
    uint64_t stale_ms =
        st.ratelimit_window_s > 0 ? st.ratelimit_window_s * 1000 : POLLER_BUDGET_STALE_MS;
    if (uv_now(src->poller->loop) - st.ratelimit_seen_ms > stale_ms)
        return true;
    if (!poller_budget_admits(st.ratelimit_limit, st.ratelimit_remaining, budget_pending(src, &st),
                              cost))
        return false;
    budget_charge(src, cost);
    return true;
}

static void source_round_done(struct poll_source *src)
{
    struct poller *p = src->poller;
    if (src->listed_repos && !p->closing) {
        /* Forget the repositories a round that knew its repositories did not list. */
        memos_prune(src, src->repos, src->n_repos);
        src->swept_to_ms = src->round_start_ms;
    }
    for (size_t i = 0; i < src->n_repos; i++)
        free(src->repos[i]);
    free(src->repos);
    src->repos = NULL;
    src->n_repos = 0;
    src->round_active = false;
    if (src->deferred > 0) {
        /* Said when the budget runs low, not at every round it stays low. */
        struct registry_stats st;
        registry_get_stats(src->cl.pull, &st);
        log_at(src->last_deferred == 0 ? FERRY_LOG_INFO : FERRY_LOG_DEBUG,
               "poll budget low source=%s remaining=%lld limit=%lld deferred=%llu", src->cfg->name,
               (long long)st.ratelimit_remaining, (long long)st.ratelimit_limit,
               (unsigned long long)src->deferred);
    }
    src->last_deferred = src->deferred;
    if (--p->sources_active > 0)
        return;
    p->stats.rounds++;
    p->stats.last_round_unix_ms = clock_unix_ms();
    /* The round's listings are freed: give their pages back. */
    (void)heap_release(uv_now(p->loop));
    log_info("poll round done rounds=%llu appended=%llu errors=%llu",
             (unsigned long long)p->stats.rounds, (unsigned long long)p->stats.appended,
             (unsigned long long)p->stats.errors);
    if (p->round_cb != NULL)
        p->round_cb(p, p->round_arg);
}

static void repo_done(struct poll_repo *r)
{
    struct poll_source *src = r->src;
    if (!src->poller->closing)
        memo_update(r);
    repo_free(r);
    src->active_repos--;
    source_pump(src);
}

static void repo_committed(int rc, const char *error, const uint64_t *seqs, size_t n, void *arg)
{
    struct poll_repo *r = arg;
    struct poller *p = r->src->poller;
    p->outstanding--;
    if (rc < 0) {
        r->dirty = true;
        poller_error(p, "journal append failed: %s%s", error, NULL);
    } else {
        /* The journal moved each tag's state in the same batch. */
        for (size_t i = 0; i < n; i++)
            if (seqs[i] != 0)
                p->stats.appended++;
    }
    repo_done(r);
    poller_maybe_finish_close(p);
}

static void repo_add_event(struct poll_repo *r, const struct poller_verdict *v)
{
    struct poll_source *src = r->src;
    /* What the budget cannot pay now waits for a later round (file comment). */
    if (!budget_take(src, poller_change_cost(v))) {
        src->deferred++;
        r->dirty = true;
        return;
    }
    enum journal_action action = v->change == POLLER_DELETED ? JOURNAL_DELETE : JOURNAL_PUSH;
    r->events = xrealloc(r->events, (r->n_events + 1) * sizeof(*r->events));
    struct journal_event *e = &r->events[r->n_events++];
    memset(e, 0, sizeof(*e));
    e->action = action;
    e->source = src->cfg->name;
    e->repository = r->name;
    e->tag = own(r, xstrdup(v->tag));
    e->digest = own(r, xstrdup(v->digest));
    e->media_type = v->media_type ? own(r, xstrdup(v->media_type)) : NULL;
    /* A tag may come back to a digest it held before (A, B, A): the journal's
     * last seq when the change was seen tells the observations apart, so the
     * journal's dedup (which outlives a poll) does not drop the second A. */
    e->event_id =
        own(r, xasprintf("%s:%s:%s:%s@%" PRIu64, action == JOURNAL_PUSH ? "poll" : "poll-delete",
                         r->name, v->tag, v->digest, journal_last_seq(src->poller->journal)));
    /* Compared again with the journal's tag state as it is appended: a
     * webhook that journaled the same value meanwhile makes this a no-op. */
    e->if_changed = true;
}

/* Journal what the round found in this repository. */
static void repo_submit(struct poll_repo *r)
{
    struct poller *p = r->src->poller;
    if (r->n_events == 0 || p->closing) {
        repo_done(r);
        return;
    }
    p->outstanding++;
    int rc = journal_committer_submit(p->committer, r->events, r->n_events, repo_committed, r);
    if (rc < 0) {
        r->dirty = true;
        p->outstanding--;
        if (rc != FERRY_ECANCELED) /* closing: nothing lost, the next start polls again */
            poller_error(p, "journal append failed: %s%s", ferry_strerror(rc), NULL);
        repo_done(r);
    }
}

static void repo_gone_step(struct poll_repo *r)
{
    if (--r->gone_pending == 0)
        repo_submit(r);
}

/* A tag the journal knows that the listing no longer names: is it gone? */
struct gone_ctx {
    struct poll_repo *r;
    const struct poller_tag *known;
};

/*
 * The source's answer for a tag its listing left out. A listing is a hint
 * too (a registry's may lag behind its manifests): the tag is journaled as
 * deleted only when the source answers 404 for it, and as moved when it
 * names another digest now.
 */
static void gone_checked(int rc, const char *error, const char *bytes, size_t len,
                         const char *media_type, const char *digest, void *arg)
{
    struct gone_ctx *g = arg;
    struct poll_repo *r = g->r;
    struct poller *p = r->src->poller;
    struct poller_verdict v;
    (void)bytes;
    (void)len;
    p->outstanding--;
    if (poller_diff_unlisted(g->known, rc, digest, media_type, &v)) {
        repo_add_event(r, &v);
    } else if (rc < 0 && rc != FERRY_ENOTFOUND) {
        r->dirty = true;
        poller_error(p, "%s: %s", r->name, error);
    }
    free(g);
    repo_gone_step(r);
    poller_maybe_finish_close(p);
}

static void repo_look_gone(struct poll_repo *r, const struct poller_tag *known)
{
    struct poller *p = r->src->poller;
    struct gone_ctx *g = xcalloc(1, sizeof(*g));
    g->r = r;
    g->known = known;
    r->gone_pending++;
    p->outstanding++;
    registry_manifest_resolve(r->src->cl.pull, r->name, known->tag, NULL, 0, gone_checked, g);
}

static void repo_add_known(struct poll_repo *r, const char *tag, const char *digest)
{
    r->known = xrealloc(r->known, (r->n_known + 1) * sizeof(*r->known));
    r->known[r->n_known++] = (struct poller_tag){
        .tag = own(r, xstrdup(tag)),
        .digest = own(r, xstrdup(digest)),
    };
}

static int repo_scan_known(const char *repository, const char *tag, const char *digest, void *arg)
{
    struct poll_repo *r = arg;
    (void)repository;
    /* The listing kept only the tags some rule selects; the tag state also
     * holds what webhooks journaled of the others. Those are not gone. */
    if (config_tag_selected(r->src->poller->config, r->src->cfg->name, r->name, tag))
        repo_add_known(r, tag, digest);
    return 0;
}

/*
 * What the journal saw last of the listed tags (a tag it cannot read is left
 * alone this round) and, where deletes propagate, of every tag it knows in
 * the repository.
 */
static void repo_read_known(struct poll_repo *r)
{
    struct poll_source *src = r->src;
    struct poller *p = src->poller;
    for (size_t i = 0; i < r->n_listed; i++) {
        struct poller_tag *t = &r->listed[i];
        char *seen = NULL;
        if (t->digest == NULL)
            continue;
        int rc = journal_tagstate_get(p->journal, src->cfg->name, r->name, t->tag, &seen);
        if (rc == 0) {
            repo_add_known(r, t->tag, seen);
        } else if (rc != FERRY_ENOTFOUND) {
            poller_error(p, "%s: the journal's tag state: %s", r->name, ferry_strerror(rc));
            t->digest = NULL;
            r->dirty = true;
        }
        free(seen);
    }
    if (!src->deletes)
        return;
    /* A scan cut short finds fewer gone tags, never wrong ones: each is asked of the source. */
    int rc = journal_tagstate_scan(p->journal, src->cfg->name, r->name, repo_scan_known, r);
    if (rc < 0) {
        r->dirty = true;
        poller_error(p, "%s: the journal's tag state: %s", r->name, ferry_strerror(rc));
    }
}

/* Every tag of the repository is resolved: compare with the journal, then record what changed. */
static void repo_resolved(struct poll_repo *r)
{
    struct poller *p = r->src->poller;
    struct poller_diff diff;

    if (p->closing) {
        repo_done(r);
        return;
    }
    repo_read_known(r);
    poller_diff_listing(r->listed, r->n_listed, r->known, r->n_known, &diff);
    for (size_t i = 0; i < diff.n_changes; i++)
        repo_add_event(r, &diff.changes[i]);
    /* One more pending look while they are asked for, so that an answer
     * that comes back at once cannot submit before the last is out. */
    r->gone_pending = 1;
    for (size_t i = 0; i < diff.n_unlisted; i++)
        repo_look_gone(r, diff.unlisted[i]);
    poller_diff_release(&diff);
    repo_gone_step(r);
}

static void repo_head_step(struct poll_repo *r)
{
    if (--r->heads_pending == 0)
        repo_resolved(r);
}

struct head_ctx {
    struct poll_repo *r;
    struct poller_tag *t;
};

/*
 * Keep what the source said of a tag: its digest, or, for a failure, that
 * the repository is looked at again next round (a listed tag the source has
 * no manifest for, a listing that runs ahead, is no error).
 */
static void tag_take(struct head_ctx *h, int rc, const char *error, size_t len,
                     const char *media_type, const char *digest)
{
    struct poll_repo *r = h->r;
    struct poller *p = r->src->poller;
    if (rc == 0 && !p->closing) {
        h->t->digest = own(r, xstrdup(digest));
        h->t->media_type = media_type ? own(r, xstrdup(media_type)) : NULL;
        h->t->size = len;
    } else if (rc < 0) {
        r->dirty = true;
        if (rc != FERRY_ENOTFOUND)
            poller_error(p, "%s: %s", r->name, error);
    }
}

/* One look at a tag is over. */
static void tag_looked(struct head_ctx *h)
{
    struct poll_repo *r = h->r;
    struct poller *p = r->src->poller;
    p->outstanding--;
    free(h);
    repo_head_step(r);
    poller_maybe_finish_close(p);
}

/* The GET of a tag whose HEAD named no digest: the digest of its bytes. */
static void tag_got(int rc, const char *error, const char *bytes, size_t len,
                    const char *media_type, const char *digest, void *arg)
{
    struct head_ctx *h = arg;
    (void)bytes;
    tag_take(h, rc, error, len, media_type, digest);
    tag_looked(h);
}

static void tag_headed(int rc, const char *error, const char *bytes, size_t len,
                       const char *media_type, const char *digest, void *arg)
{
    struct head_ctx *h = arg;
    struct poll_repo *r = h->r;
    struct poll_source *src = r->src;
    struct poller *p = src->poller;
    (void)bytes;

    if (rc == 0 && !p->closing && (digest == NULL || !digest_valid(digest))) {
        /* A registry may omit Docker-Content-Digest: a GET computes it, and
         * spends a pull, which the budget may not have. */
        if (budget_take(src, 1)) {
            registry_manifest_get(src->cl.pull, r->name, h->t->tag, tag_got, h);
            return;
        }
        src->deferred++;
        r->dirty = true;
    } else {
        tag_take(h, rc, error, len, media_type, digest);
    }
    tag_looked(h);
}

/* A HEAD for each listed tag (and a GET where it names no valid digest). */
static void repo_resolve_tags(struct poll_repo *r)
{
    struct poll_source *src = r->src;
    struct poller *p = src->poller;
    /* One more while they go out, so that the last answer cannot free the repository early. */
    r->heads_pending = 1;
    for (size_t i = 0; i < r->n_listed; i++)
        r->heads_pending += !r->listed[i].trusted;
    for (size_t i = 0; i < r->n_listed; i++) {
        if (r->listed[i].trusted)
            continue;
        struct head_ctx *h = xcalloc(1, sizeof(*h));
        h->r = r;
        h->t = &r->listed[i];
        p->outstanding++;
        registry_manifest_head(src->cl.pull, r->name, h->t->tag, tag_headed, h);
    }
    repo_head_step(r);
}

/* Outside a sweep of a webhooks source: does the journal know this tag (its moves are notified)? */
static bool repo_tag_known(struct poll_repo *r, const char *tag)
{
    struct poll_source *src = r->src;
    char *seen = NULL;
    if (!src->cfg->webhooks)
        return false;
    /* A failed read is a look at the source instead. */
    int rc = journal_tagstate_get(src->poller->journal, src->cfg->name, r->name, tag, &seen);
    free(seen);
    return rc == 0;
}

static void repo_listed(int rc, const char *error, char **items, size_t n, bool not_modified,
                        const char *etag, void *arg)
{
    struct poll_repo *r = arg;
    struct poll_source *src = r->src;
    struct poller *p = src->poller;

    p->outstanding--;
    if (rc == 0 && not_modified) {
        /* The listing is the one last looked at in full: nothing to look at. */
        r->not_modified = true;
        repo_done(r);
        poller_maybe_finish_close(p);
        return;
    }
    r->etag = etag != NULL ? xstrdup(etag) : NULL;
    /* A repository with blobs and no manifest (a push that died before its
     * manifest) answers NAME_UNKNOWN: it holds nothing to replicate. */
    if (rc == FERRY_ENOTFOUND) {
        rc = 0;
        n = 0;
    }
    if (rc < 0 || p->closing) {
        r->dirty = true;
        if (rc < 0)
            poller_error(p, "%s: %s", r->name, error);
        /* A repository that cannot be listed is not compared: a failed
         * listing must never look like deleted tags. */
        repo_done(r);
        poller_maybe_finish_close(p);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!config_tag_selected(p->config, src->cfg->name, r->name, items[i]))
            continue;
        r->listed = xrealloc(r->listed, (r->n_listed + 1) * sizeof(*r->listed));
        r->listed[r->n_listed++] = (struct poller_tag){
            .tag = own(r, xstrdup(items[i])),
            .trusted = !r->sweep && repo_tag_known(r, items[i]),
        };
    }
    repo_resolve_tags(r);
}

/* Is this round a sweep of the repository: listed unconditionally, every tag HEADed (file comment)?
 */
static bool repo_sweep_due(const struct poll_source *src, const char *name,
                           const struct journal_poll_memo *m)
{
    if (src->memo_failed_last)
        return true;
    if (!src->cfg->webhooks)
        return m == NULL || m->etag == NULL || src->round - m->listed_round >= POLLER_SWEEP_ROUNDS;
    if (src->swept_to_ms == 0 || (m != NULL && m->sweep_owed))
        return true;
    return poller_reconcile_due(src->cfg->name, name, src->swept_to_ms, src->round_start_ms,
                                src->poller->config->reconcile_ms);
}

static void source_pump(struct poll_source *src)
{
    struct poller *p = src->poller;
    while (!p->closing && src->active_repos < p->config->poll_concurrency &&
           src->next_repo < src->n_repos) {
        struct poll_repo *r = xcalloc(1, sizeof(*r));
        r->src = src;
        r->name = xstrdup(src->repos[src->next_repo++]);
        src->active_repos++;
        p->outstanding++;
        memo_load(r);
        const struct journal_poll_memo *m = r->memo_rc == 0 ? &r->memo : NULL;
        r->sweep = repo_sweep_due(src, r->name, m);
        const char *etag = r->sweep || m == NULL ? NULL : m->etag;
        registry_tags_conditional(src->cl.pull, r->name, etag, repo_listed, r);
    }
    if (src->active_repos == 0 && (src->next_repo >= src->n_repos || p->closing))
        source_round_done(src);
}

static void source_set_repos(struct poll_source *src, char *const *items, size_t n)
{
    struct poller *p = src->poller;
    if (n > 0) /* room for all of them at once, not one realloc a name */
        src->repos = xrealloc(src->repos, (src->n_repos + n) * sizeof(*src->repos));
    for (size_t i = 0; i < n; i++) {
        if (!config_repository_selected(p->config, src->cfg->name, items[i]))
            continue;
        src->repos[src->n_repos++] = xstrdup(items[i]);
    }
}

/*
 * The catalog answered 401, 403 or 404: the registry lists no repositories
 * to this client (ECR, GHCR, Docker Hub, GAR). Say once what to do, and do
 * not ask again before a reload or POLLER_CATALOG_RETRY_MS.
 */
static void source_catalog_refused(struct poll_source *src, const char *error)
{
    struct poller *p = src->poller;
    free(src->catalog_error);
    /* What to do comes first: a caller that keeps only the start of it keeps
     * that. The registry client may have said it already (its refusals are
     * explained): then it is not said twice. */
    char *text = strstr(error, "repositories:") != NULL
                     ? xasprintf("source %s (registry %s of the config): %s", src->cfg->name,
                                 src->cfg->name, error)
                     : xasprintf("source %s: %s lists no repositories to Ferry; name them under "
                                 "`repositories:` of registry %s in the config (%s)",
                                 src->cfg->name, src->cfg->host, src->cfg->name, error);
    if (strlen(text) >= POLLER_SOURCE_ERROR_MAX)
        text[POLLER_SOURCE_ERROR_MAX - 1] = '\0';
    src->catalog_error = text;
    src->catalog_retry_ms = uv_now(p->loop) + POLLER_CATALOG_RETRY_MS;
    p->stats.errors++;
    snprintf(p->stats.last_error, sizeof(p->stats.last_error), "%s", text);
    log_warn("poller: %s; the catalog is asked again after a reload or in %llu min", text,
             (unsigned long long)(POLLER_CATALOG_RETRY_MS / 60000));
}

static void catalog_listed(int rc, const char *error, char **items, size_t n, void *arg)
{
    struct poll_source *src = arg;
    struct poller *p = src->poller;
    p->outstanding--;
    if (rc == FERRY_EAUTH || rc == FERRY_ENOTFOUND) {
        source_catalog_refused(src, error != NULL ? error : ferry_strerror(rc));
    } else if (rc < 0) {
        poller_error(p, "%s: %s", src->cfg->name, error);
    } else if (!p->closing) {
        free(src->catalog_error);
        src->catalog_error = NULL;
        src->listed_repos = true;
        source_set_repos(src, items, n);
    }
    source_pump(src);
    poller_maybe_finish_close(p);
}

/* The source's repositories for a round: the config's, its catalog, or none while that is refused.
 */
static void source_round_start(struct poll_source *src)
{
    struct poller *p = src->poller;
    if (src->cfg->n_repositories > 0) {
        src->listed_repos = true;
        source_set_repos(src, src->cfg->repositories, src->cfg->n_repositories);
        source_pump(src);
    } else if (src->catalog_error != NULL && uv_now(p->loop) < src->catalog_retry_ms) {
        source_pump(src);
    } else {
        p->outstanding++;
        registry_catalog(src->cl.pull, catalog_listed, src);
    }
}

static void poller_round(struct poller *p)
{
    if (p->closing || p->sources_active > 0)
        return;
    for (size_t i = 0; i < p->n_sources; i++) {
        struct poll_source *src = &p->sources[i];
        if (p->gate != NULL && !p->gate(src->cfg->name, p->gate_arg)) {
            /* Another node polls it. When this one polls it again, its memos
             * are stale: that round sweeps every repository. */
            src->memo_failed = true;
            continue;
        }
        src->round_active = true;
        src->next_repo = 0;
        src->round++;
        src->memo_failed_last = src->memo_failed;
        src->memo_failed = false;
        src->round_start_ms = (uint64_t)clock_unix_ms();
        src->listed_repos = false;
        src->deferred = 0;
        p->sources_active++;
    }
    if (p->sources_active == 0) {
        /* No source, or other nodes poll them all: a round only without sources. */
        if (p->n_sources == 0 && p->round_cb != NULL) {
            p->stats.rounds++;
            p->round_cb(p, p->round_arg);
        }
        return;
    }
    for (size_t i = 0; i < p->n_sources; i++)
        if (p->sources[i].round_active)
            source_round_start(&p->sources[i]);
}

void poller_set_gate(struct poller *p, poller_gate_cb gate, void *arg)
{
    p->gate = gate;
    p->gate_arg = arg;
}

static void poller_tick(uv_timer_t *timer)
{
    poller_round(timer->data);
}

int poller_new(uv_loop_t *loop, const struct config *config, struct journal *journal,
               struct journal_committer *committer, struct poller **out)
{
    struct poller *p = xcalloc(1, sizeof(*p));
    int rc = uv_timer_init(loop, &p->timer);
    if (rc < 0) {
        free(p);
        return rc;
    }
    p->timer.data = p;
    p->loop = loop;
    p->config = config;
    p->journal = journal;
    p->committer = committer;
    for (size_t i = 0; i < config->n_registries; i++) {
        const struct config_registry *cfg = &config->registries[i];
        bool is_source = false;
        bool deletes = false;
        for (size_t j = 0; j < config->n_rules; j++) {
            if (strcmp(config->rules[j].source, cfg->name) == 0) {
                is_source = true;
                deletes = deletes || config->rules[j].deletes;
            }
        }
        if (!is_source || !cfg->poll)
            continue;
        p->sources = xrealloc(p->sources, (p->n_sources + 1) * sizeof(*p->sources));
        struct poll_source *src = &p->sources[p->n_sources++];
        memset(src, 0, sizeof(*src));
        src->poller = p;
        src->cfg = cfg;
        src->deletes = deletes;
        struct clients_options copts = {0};
        clients_open(loop, cfg, &copts, &src->cl);
    }
    /* A new poller assumes nothing of the listings: it forgets the last one's memos (of every
     * source: one the config no longer names too). */
    int mrc = journal_poll_memo_clear(journal);
    for (size_t i = 0; i < p->n_sources && mrc < 0; i++)
        memo_failed(&p->sources[i], "clear", "*", mrc);
    *out = p;
    return 0;
}

void poller_start_once(struct poller *p, poller_round_cb cb, void *arg)
{
    p->round_cb = cb;
    p->round_arg = arg;
    poller_round(p);
}

void poller_start(struct poller *p, poller_round_cb cb, void *arg)
{
    poller_start_once(p, cb, arg);
    if (p->config->poll_interval_ms == 0)
        return;
    /* It fails only on a closing handle: a poller closed before it started. */
    int rc = uv_timer_start(&p->timer, poller_tick, p->config->poll_interval_ms,
                            p->config->poll_interval_ms);
    if (rc < 0)
        log_error("poller cannot schedule its rounds error=\"%s\"", uv_strerror(rc));
}

uint64_t poller_invalid_names(const struct poller *p, const char *source)
{
    for (size_t i = 0; i < p->n_sources; i++) {
        const struct poll_source *src = &p->sources[i];
        if (src->cl.pull != NULL && strcmp(src->cfg->name, source) == 0) {
            struct registry_stats st;
            registry_get_stats(src->cl.pull, &st);
            return st.invalid_names;
        }
    }
    return 0;
}

void poller_get_stats(const struct poller *p, struct poller_stats *out)
{
    *out = p->stats;
}

bool poller_source_status(const struct poller *p, const char *source,
                          struct poller_source_status *out)
{
    memset(out, 0, sizeof(*out));
    out->ratelimit_limit = -1;
    out->ratelimit_remaining = -1;
    for (size_t i = 0; i < p->n_sources; i++) {
        const struct poll_source *src = &p->sources[i];
        if (strcmp(src->cfg->name, source) != 0)
            continue;
        if (src->catalog_error != NULL)
            snprintf(out->error, sizeof(out->error), "%s", src->catalog_error);
        if (src->cl.pull != NULL) {
            struct registry_stats st;
            registry_get_stats(src->cl.pull, &st);
            out->ratelimit_limit = st.ratelimit_limit;
            out->ratelimit_remaining = st.ratelimit_remaining;
            out->ratelimit_window_s = st.ratelimit_window_s;
            out->not_modified = st.not_modified;
        }
        out->deferred = src->round_active ? src->deferred : src->last_deferred;
        out->swept_to_unix_ms = src->cfg->webhooks ? (int64_t)src->swept_to_ms : 0;
        return true;
    }
    return false;
}

bool poller_source_active(const struct poller *p, const char *source)
{
    for (size_t i = 0; i < p->n_sources; i++)
        if (strcmp(p->sources[i].cfg->name, source) == 0)
            return p->sources[i].round_active;
    return false;
}

/* One of the poller's handles closed; the last one frees it. */
static void poller_one_closed(void *arg)
{
    struct poller *p = arg;
    if (--p->closing_handles > 0)
        return;
    free(p->sources);
    void (*cb)(void *) = p->close_cb;
    void *cb_arg = p->close_arg;
    free(p);
    if (cb != NULL)
        cb(cb_arg);
}

static void poller_timer_closed(uv_handle_t *handle)
{
    poller_one_closed(handle->data);
}

static void poller_maybe_finish_close(struct poller *p)
{
    if (!p->closing || p->outstanding > 0 || p->closed_handles)
        return;
    p->closed_handles = true;
    p->closing_handles = (int)p->n_sources + 1;
    for (size_t i = 0; i < p->n_sources; i++) {
        struct poll_source *src = &p->sources[i];
        for (size_t j = 0; j < src->n_repos; j++)
            free(src->repos[j]);
        free(src->repos);
        free(src->catalog_error);
        clients_close(&src->cl, poller_one_closed, p);
    }
    uv_close((uv_handle_t *)&p->timer, poller_timer_closed);
}

void poller_close(struct poller *p, void (*cb)(void *arg), void *arg)
{
    p->closing = true;
    p->close_cb = cb;
    p->close_arg = arg;
    uv_timer_stop(&p->timer);
    poller_maybe_finish_close(p);
}
