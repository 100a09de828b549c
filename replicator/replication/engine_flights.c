/*
 * engine_flights.c: what the engine knows of blobs and repositories at each
 * destination registry. An upload or mount in flight (struct blob_flight,
 * gone once it ends), a link being written into one repository (struct
 * link_flight), and, for what landed, the presence cache (which repositories
 * hold it), which outlives the run; and the repositories a job of this run
 * put an image into.
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "replication/engine_int.h"
#include "replication/presence.h"

/* ---- repositories known to exist ---- */

static void repos_clear(struct eng_registry *r)
{
    struct repo_seen *x, *tmp;
    HASH_ITER(hh, r->repos, x, tmp)
    {
        HASH_DEL(r->repos, x);
        free(x->name);
        free(x);
    }
    r->n_repos = 0;
}

bool engine_repo_known(struct eng_registry *r, const char *repo)
{
    struct repo_seen *x = NULL;
    HASH_FIND_STR(r->repos, repo, x);
    return x != NULL;
}

void engine_repo_note(struct eng_registry *r, const char *repo)
{
    if (engine_repo_known(r, repo))
        return;
    if (r->n_repos >= ENGINE_REPOS_MAX)
        repos_clear(r);
    struct repo_seen *x = xcalloc(1, sizeof(*x));
    x->name = xstrdup(repo);
    HASH_ADD_KEYPTR(hh, r->repos, x->name, strlen(x->name), x);
    r->n_repos++;
}

/* ---- single-flight blobs per destination registry ---- */

struct blob_flight *engine_flight_find(struct eng_registry *r, const char *digest)
{
    struct blob_flight *f = NULL;
    HASH_FIND_STR(r->flights, digest, f);
    return f;
}

static void flight_free(struct eng_registry *r, struct blob_flight *f)
{
    HASH_DEL(r->flights, f);
    free(f->digest);
    free(f->repo);
    free(f->waiters);
    free(f);
}

static void waiters_add(struct copy ***list, size_t *n, struct copy *c)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(**list));
    (*list)[(*n)++] = c;
}

static struct link_flight *link_find(struct eng_registry *r, const char *repo, const char *digest)
{
    char *key = xasprintf("%s@%s", repo, digest);
    struct link_flight *l = NULL;
    HASH_FIND_STR(r->links, key, l);
    free(key);
    return l;
}

static void link_start(struct eng_registry *r, const char *repo, const char *digest)
{
    struct link_flight *l = link_find(r, repo, digest);
    if (l == NULL) {
        l = xcalloc(1, sizeof(*l));
        l->key = xasprintf("%s@%s", repo, digest);
        HASH_ADD_KEYPTR(hh, r->links, l->key, strlen(l->key), l);
    }
    l->writers++;
}

static void link_free(struct eng_registry *r, struct link_flight *l)
{
    HASH_DEL(r->links, l);
    free(l->waiters);
    free(l->key);
    free(l);
}

/*
 * A link is whole (or failed): whoever waited for it goes on, taking it as
 * there when it landed and checking with a HEAD when it failed.
 */
static void link_end(struct eng_registry *r, const char *repo, const char *digest, bool ok)
{
    struct link_flight *l = link_find(r, repo, digest);
    if (l == NULL || --l->writers > 0)
        return;
    struct copy **waiters = l->waiters;
    size_t n = l->n_waiters;
    l->waiters = NULL;
    link_free(r, l);
    for (size_t i = 0; i < n; i++) {
        if (ok)
            copy_blob_decide(waiters[i], digest, repo);
        else
            copy_blob_check(waiters[i], digest);
    }
    free(waiters);
}

/*
 * Send `digest` into the copy's repository: mount from `from`, or upload when
 * NULL. An upload is a flight: every other copy that needs the blob at this
 * registry meanwhile waits, then mounts from here. Mounts go in parallel.
 * In a cluster, the other nodes are asked first about a blob of a MiB or
 * more (engine_hints.c): the flight's copy may mount from where another
 * node put the blob instead.
 */
static void job_blob_send(struct engine *e, struct eng_registry *r, struct copy *c,
                          const char *digest, const char *from)
{
    if (from == NULL) {
        struct blob_flight *f = xcalloc(1, sizeof(*f));
        f->digest = xstrdup(digest);
        f->repo = xstrdup(copy_dst_repo(c));
        HASH_ADD_KEYPTR(hh, r->flights, f->digest, strlen(f->digest), f);
    }
    link_start(r, copy_dst_repo(c), digest);
    if (from == NULL && engine_hints_on(e, c, digest)) {
        engine_hint_claim(e, r, c, digest);
        return;
    }
    copy_blob_decide(c, digest, from);
}

void engine_blob_gate(struct copy *c, const char *digest, enum copy_blob_seen seen, void *arg)
{
    struct eng_job *job = arg;
    struct engine *e = job->engine;
    struct eng_registry *r = job->dst;
    const char *repo = copy_dst_repo(c);
    struct link_flight *l = link_find(r, repo, digest);

    /* Being linked into this repository by another copy: wait until whole. */
    if (l != NULL) {
        waiters_add(&l->waiters, &l->n_waiters, c);
        return;
    }
    if (seen == COPY_BLOB_PRESENT) {
        copy_blob_decide(c, digest, repo);
        return;
    }
    struct blob_flight *f = engine_flight_find(r, digest);
    if (f != NULL) {
        waiters_add(&f->waiters, &f->n_waiters, c);
        return;
    }
    bool holds = false;
    char *other = presence_lookup(e->presence, r->cfg->host, digest, repo, &holds);
    log_debug("blob gate dest=%s repo=%s digest=%s seen=%d holds=%d other=%s", r->cfg->name, repo,
              digest, (int)seen, (int)holds, other != NULL ? other : "-");
    if (holds && seen == COPY_BLOB_ABSENT) {
        /* A HEAD says otherwise: it was deleted since. */
        if (presence_forget(e->presence, r->cfg->host, digest, repo) < 0)
            log_warn("cannot forget a blob in the presence cache dest=%s repo=%s digest=%s",
                     r->cfg->name, repo, digest);
        holds = false;
    }
    if (holds) {
        copy_blob_decide(c, digest, repo);
    } else if (other != NULL) {
        job_blob_send(e, r, c, digest, other);
    } else if (seen == COPY_BLOB_UNCHECKED) {
        copy_blob_check(c, digest);
    } else {
        job_blob_send(e, r, c, digest, NULL);
    }
    free(other);
}

void engine_blob_done(struct copy *c, const char *digest, bool ok, void *arg)
{
    struct eng_job *job = arg;
    struct engine *e = job->engine;
    struct eng_registry *r = job->dst;
    const char *repo = copy_dst_repo(c);
    struct blob_flight *f = engine_flight_find(r, digest);
    struct copy **waiters = NULL;
    size_t n = 0;
    char *from = NULL;
    bool claimed = false;

    /* Take this copy's flight down first: what follows may end other
     * copies at once (a copy that failed meanwhile answers from inside
     * copy_blob_decide()), and they come back here. */
    bool owner = f != NULL && strcmp(f->repo, repo) == 0;
    if (owner) {
        waiters = f->waiters;
        n = f->n_waiters;
        from = ok ? xstrdup(f->repo) : NULL;
        claimed = f->claimed;
        f->waiters = NULL;
        f->n_waiters = 0;
        flight_free(r, f);
    }
    link_end(r, repo, digest, ok);
    if (ok) {
        for (size_t i = 0; i < n; i++) {
            const char *wrepo = copy_dst_repo(waiters[i]);
            struct link_flight *l = link_find(r, wrepo, digest);
            if (strcmp(from, wrepo) == 0)
                copy_blob_decide(waiters[i], digest, from);
            else if (l != NULL) /* another waiter is mounting it there: after it */
                waiters_add(&l->waiters, &l->n_waiters, waiters[i]);
            else
                job_blob_send(e, r, waiters[i], digest, from);
        }
    } else {
        /* The upload failed: the first waiter that still can tries its own,
         * the others wait for it. */
        size_t i = 0;
        while (i < n) {
            job_blob_send(e, r, waiters[i++], digest, NULL);
            struct blob_flight *nf = engine_flight_find(r, digest);
            if (nf == NULL)
                continue; /* that copy had failed already: the next one tries */
            for (; i < n; i++)
                waiters_add(&nf->waiters, &nf->n_waiters, waiters[i]);
        }
    }
    /* Told after the waiters moved on: a retry of a failed upload here
     * renews the claim before it would go. */
    if (claimed)
        engine_hint_flight_end(e, r, digest, repo, ok);
    free(waiters);
    free(from);
}

void engine_flights_clear(struct eng_registry *r)
{
    struct link_flight *l, *ltmp;
    HASH_ITER(hh, r->links, l, ltmp)
    {
        link_free(r, l);
    }
    struct blob_flight *f, *ftmp;
    HASH_ITER(hh, r->flights, f, ftmp)
    {
        flight_free(r, f);
    }
    repos_clear(r);
}
