/*
 * engine_gates.c: the gates a job's last steps run behind (see struct gate
 * in engine_int.h). A push takes its repository's gate shared and its tag's
 * gate alone, then decides its tag; a delete takes its repository's gate
 * alone. Waiters are admitted in the order they came.
 */
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "replication/engine_int.h"

static char *gate_key(const struct eng_job *job, bool tag)
{
    return tag ? xasprintf("%s\n%s\n%s", job->dst->cfg->name, job->dst_repo, job->tag)
               : xasprintf("%s\n%s", job->dst->cfg->name, job->dst_repo);
}

/* Take the gate if its holders allow, whoever waits. */
static bool gate_try_admit(struct gate *g, bool exclusive)
{
    if (g->exclusive || (exclusive && g->shared > 0))
        return false;
    if (exclusive)
        g->exclusive = true;
    else
        g->shared++;
    return true;
}

/* Take the gate now if nobody waits for it and its holders allow. */
static bool gate_try(struct gate *g, bool exclusive)
{
    return g->waiters == NULL && gate_try_admit(g, exclusive);
}

/* The gates a job needs, in order: (key is a tag gate, exclusive). */
static size_t job_gates_needed(const struct eng_job *job, bool tag[2], bool exclusive[2])
{
    tag[0] = false;
    if (job->is_delete) {
        exclusive[0] = true;
        return 1;
    }
    exclusive[0] = false;
    tag[1] = true;
    exclusive[1] = true;
    return 2;
}

void engine_gates_step(struct eng_job *job)
{
    struct engine *e = job->engine;
    bool tag[2], exclusive[2];
    size_t needed = job_gates_needed(job, tag, exclusive);
    while (job->n_gates < needed) {
        size_t i = job->n_gates;
        char *key = gate_key(job, tag[i]);
        struct gate *g = NULL;
        HASH_FIND_STR(e->gates, key, g);
        if (g == NULL) {
            g = xcalloc(1, sizeof(*g));
            g->key = key;
            g->tail = &g->waiters;
            HASH_ADD_KEYPTR(hh, e->gates, g->key, strlen(g->key), g);
        } else {
            free(key);
        }
        if (!gate_try(g, exclusive[i])) {
            struct gate_wait *w = xcalloc(1, sizeof(*w));
            w->job = job;
            w->exclusive = exclusive[i];
            *g->tail = w;
            g->tail = &w->next;
            return;
        }
        job->gates[job->n_gates++] = g;
    }
    engine_gate_decide(job);
}

void engine_tag_gate(struct copy *c, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)c;
    free(job->gate_digest);
    job->gate_digest = xstrdup(digest);
    engine_gates_step(job);
}

/* Let go of one gate and hand it to the waiters it now admits, in order. */
static void gate_release(struct engine *e, struct gate *g, bool exclusive)
{
    if (exclusive)
        g->exclusive = false;
    else
        g->shared--;
    struct eng_job **woken = NULL;
    size_t n = 0;
    while (g->waiters != NULL) {
        struct gate_wait *w = g->waiters;
        if (!gate_try_admit(g, w->exclusive))
            break;
        g->waiters = w->next;
        if (g->waiters == NULL)
            g->tail = &g->waiters;
        woken = xrealloc(woken, (n + 1) * sizeof(*woken));
        woken[n++] = w->job;
        w->job->gates[w->job->n_gates++] = g;
        free(w);
    }
    if (g->shared == 0 && !g->exclusive && g->waiters == NULL) {
        HASH_DEL(e->gates, g);
        free(g->key);
        free(g);
    }
    /* Woken jobs go on only now: one may settle and release this gate again. */
    for (size_t i = 0; i < n; i++)
        engine_gates_step(woken[i]);
    free(woken);
}

void engine_gates_release(struct eng_job *job)
{
    engine_tag_lease_give(job);
    bool tag[2], exclusive[2];
    job_gates_needed(job, tag, exclusive);
    size_t held = job->n_gates;
    job->n_gates = 0;
    while (held > 0) {
        held--;
        gate_release(job->engine, job->gates[held], exclusive[held]);
    }
}
