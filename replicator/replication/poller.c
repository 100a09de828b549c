#include "replication/poller.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "registry/registry.h"
#include "replication/clients.h"
#include "replication/poller_int.h"

struct poll_source;

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
    size_t gone_pending; /* looks at tags the listing no longer names */
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
    free(r->name);
    free(r);
}

static void source_round_done(struct poll_source *src)
{
    struct poller *p = src->poller;
    for (size_t i = 0; i < src->n_repos; i++)
        free(src->repos[i]);
    free(src->repos);
    src->repos = NULL;
    src->n_repos = 0;
    src->round_active = false;
    if (--p->sources_active > 0)
        return;
    p->stats.rounds++;
    p->stats.last_round_unix_ms = clock_unix_ms();
    log_info("poll round done rounds=%llu appended=%llu errors=%llu",
             (unsigned long long)p->stats.rounds, (unsigned long long)p->stats.appended,
             (unsigned long long)p->stats.errors);
    if (p->round_cb != NULL)
        p->round_cb(p, p->round_arg);
}

static void repo_done(struct poll_repo *r)
{
    struct poll_source *src = r->src;
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
    if (poller_diff_unlisted(g->known, rc, digest, media_type, &v))
        repo_add_event(r, &v);
    else if (rc < 0 && rc != FERRY_ENOTFOUND)
        poller_error(p, "%s: %s", r->name, error);
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
        }
        free(seen);
    }
    if (!src->deletes)
        return;
    /* A scan cut short finds fewer gone tags, never wrong ones: each is asked of the source. */
    int rc = journal_tagstate_scan(p->journal, src->cfg->name, r->name, repo_scan_known, r);
    if (rc < 0)
        poller_error(p, "%s: the journal's tag state: %s", r->name, ferry_strerror(rc));
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

static void tag_resolved(int rc, const char *error, const char *bytes, size_t len,
                         const char *media_type, const char *digest, void *arg)
{
    struct head_ctx *h = arg;
    struct poll_repo *r = h->r;
    struct poller *p = r->src->poller;
    (void)bytes;
    (void)len;

    p->outstanding--;
    if (rc == 0 && !p->closing) {
        h->t->digest = own(r, xstrdup(digest));
        h->t->media_type = media_type ? own(r, xstrdup(media_type)) : NULL;
    } else if (rc < 0 && rc != FERRY_ENOTFOUND) {
        poller_error(p, "%s: %s", r->name, error);
    }
    free(h);
    repo_head_step(r);
    poller_maybe_finish_close(p);
}

/* A HEAD for each listed tag, and a GET where it names no valid digest. */
static void repo_resolve_tags(struct poll_repo *r)
{
    struct poll_source *src = r->src;
    struct poller *p = src->poller;
    /* One more while they go out, so that the last answer cannot free the repository early. */
    r->heads_pending = r->n_listed + 1;
    for (size_t i = 0; i < r->n_listed; i++) {
        struct head_ctx *h = xcalloc(1, sizeof(*h));
        h->r = r;
        h->t = &r->listed[i];
        p->outstanding++;
        registry_manifest_resolve(src->cl.pull, r->name, h->t->tag, NULL, 0, tag_resolved, h);
    }
    repo_head_step(r);
}

static void repo_listed(int rc, const char *error, char **items, size_t n, void *arg)
{
    struct poll_repo *r = arg;
    struct poll_source *src = r->src;
    struct poller *p = src->poller;

    p->outstanding--;
    /* A repository with blobs and no manifest (a push that died before its
     * manifest) answers NAME_UNKNOWN: it holds nothing to replicate. */
    if (rc == FERRY_ENOTFOUND) {
        rc = 0;
        n = 0;
    }
    if (rc < 0 || p->closing) {
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
        r->listed[r->n_listed++] = (struct poller_tag){.tag = own(r, xstrdup(items[i]))};
    }
    repo_resolve_tags(r);
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
        int rc = registry_tags(src->cl.pull, r->name, repo_listed, r);
        if (rc < 0)
            repo_listed(rc, "not a valid repository name", NULL, 0, r);
    }
    if (src->active_repos == 0 && (src->next_repo >= src->n_repos || p->closing))
        source_round_done(src);
}

static void source_set_repos(struct poll_source *src, char *const *items, size_t n)
{
    struct poller *p = src->poller;
    for (size_t i = 0; i < n; i++) {
        if (!config_repository_selected(p->config, src->cfg->name, items[i]))
            continue;
        src->repos = xrealloc(src->repos, (src->n_repos + 1) * sizeof(*src->repos));
        src->repos[src->n_repos++] = xstrdup(items[i]);
    }
}

static void catalog_listed(int rc, const char *error, char **items, size_t n, void *arg)
{
    struct poll_source *src = arg;
    struct poller *p = src->poller;
    p->outstanding--;
    if (rc < 0)
        poller_error(p, "%s: %s", src->cfg->name, error);
    else if (!p->closing)
        source_set_repos(src, items, n);
    source_pump(src);
    poller_maybe_finish_close(p);
}

static void poller_round(struct poller *p)
{
    if (p->closing || p->sources_active > 0)
        return;
    for (size_t i = 0; i < p->n_sources; i++) {
        struct poll_source *src = &p->sources[i];
        src->round_active = true;
        src->next_repo = 0;
        p->sources_active++;
    }
    if (p->n_sources == 0 && p->round_cb != NULL) {
        p->stats.rounds++;
        p->round_cb(p, p->round_arg);
        return;
    }
    for (size_t i = 0; i < p->n_sources; i++) {
        struct poll_source *src = &p->sources[i];
        if (src->cfg->n_repositories > 0) {
            source_set_repos(src, src->cfg->repositories, src->cfg->n_repositories);
            source_pump(src);
        } else {
            p->outstanding++;
            registry_catalog(src->cl.pull, catalog_listed, src);
        }
    }
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
