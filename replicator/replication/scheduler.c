#include "replication/scheduler.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/* Jobs a destination runs at once when its owner gives no limit. */
#define SCHED_DEFAULT_LIMIT 1
/* Failures in a row that open a circuit when its owner gives no count. */
#define SCHED_DEFAULT_CIRCUIT_FAILURES 1
/* Places the timer queue starts with; it doubles when full. */
#define SCHED_HEAP_INITIAL 64

/* ---- the timer queue: a binary min-heap on (due, order) ---- */

static bool heap_before(const struct sched_item *a, const struct sched_item *b)
{
    return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static void heap_set(struct sched *s, size_t i, struct sched_item *it)
{
    s->heap[i] = it;
    it->heap_index = i;
}

static void heap_up(struct sched *s, size_t i)
{
    struct sched_item *it = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(it, s->heap[parent]))
            break;
        heap_set(s, i, s->heap[parent]);
        i = parent;
    }
    heap_set(s, i, it);
}

static void heap_down(struct sched *s, size_t i)
{
    struct sched_item *it = s->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->n_heap)
            break;
        if (child + 1 < s->n_heap && heap_before(s->heap[child + 1], s->heap[child]))
            child++;
        if (!heap_before(s->heap[child], it))
            break;
        heap_set(s, i, s->heap[child]);
        i = child;
    }
    heap_set(s, i, it);
}

static void heap_add(struct sched *s, struct sched_item *it)
{
    if (s->n_heap == s->cap_heap) {
        s->cap_heap = s->cap_heap ? s->cap_heap * 2 : SCHED_HEAP_INITIAL;
        s->heap = xrealloc(s->heap, s->cap_heap * sizeof(*s->heap));
    }
    heap_set(s, s->n_heap++, it);
    heap_up(s, it->heap_index);
}

static void heap_del(struct sched *s, struct sched_item *it)
{
    size_t i = it->heap_index;
    struct sched_item *last = s->heap[--s->n_heap];
    if (i < s->n_heap) {
        heap_set(s, i, last);
        if (i > 0 && heap_before(last, s->heap[(i - 1) / 2]))
            heap_up(s, i);
        else
            heap_down(s, i);
    }
    it->heap_index = SIZE_MAX;
}

/* ---- run queues ---- */

static void queue_append(struct sched_dest *d, struct sched_item *it)
{
    it->next = NULL;
    it->prev = d->tail;
    if (d->tail != NULL)
        d->tail->next = it;
    else
        d->head = it;
    d->tail = it;
    d->runnable++;
}

static void queue_unlink(struct sched_dest *d, struct sched_item *it)
{
    if (it->prev != NULL)
        it->prev->next = it->next;
    else
        d->head = it->next;
    if (it->next != NULL)
        it->next->prev = it->prev;
    else
        d->tail = it->prev;
    it->next = it->prev = NULL;
    d->runnable--;
}

void sched_init(struct sched *s, size_t n_dests, const int *limits, int circuit_failures,
                uint64_t circuit_open_ms)
{
    memset(s, 0, sizeof(*s));
    s->dests = xcalloc(n_dests ? n_dests : 1, sizeof(*s->dests));
    s->n_dests = n_dests;
    for (size_t i = 0; i < n_dests; i++)
        s->dests[i].limit = limits != NULL && limits[i] > 0 ? limits[i] : SCHED_DEFAULT_LIMIT;
    s->circuit_failures = circuit_failures > 0 ? circuit_failures : SCHED_DEFAULT_CIRCUIT_FAILURES;
    s->circuit_open_ms = circuit_open_ms;
}

void sched_free(struct sched *s)
{
    free(s->dests);
    free(s->heap);
    memset(s, 0, sizeof(*s));
}

void sched_push(struct sched *s, struct sched_item *it, size_t dest)
{
    it->dest = dest;
    it->state = SCHED_ITEM_RUNNABLE;
    queue_append(&s->dests[dest], it);
}

void sched_delay(struct sched *s, struct sched_item *it, size_t dest, uint64_t due)
{
    it->dest = dest;
    it->state = SCHED_ITEM_WAITING;
    it->due = due;
    it->order = s->next_order++;
    s->dests[dest].waiting++;
    heap_add(s, it);
}

void sched_remove(struct sched *s, struct sched_item *it)
{
    if (it->state == SCHED_ITEM_RUNNABLE) {
        queue_unlink(&s->dests[it->dest], it);
    } else if (it->state == SCHED_ITEM_WAITING) {
        heap_del(s, it);
        s->dests[it->dest].waiting--;
    } else {
        return;
    }
    it->state = SCHED_ITEM_IDLE;
}

/* Jobs whose retry is due join the back of their run queue, in due order. */
static void sched_promote(struct sched *s, uint64_t now)
{
    while (s->n_heap > 0 && s->heap[0]->due <= now) {
        struct sched_item *it = s->heap[0];
        heap_del(s, it);
        s->dests[it->dest].waiting--;
        it->state = SCHED_ITEM_RUNNABLE;
        queue_append(&s->dests[it->dest], it);
    }
}

/* May `d` take a job now? Open: no; past its time: one probe at a time. */
static bool dest_takes(const struct sched_dest *d, uint64_t now)
{
    if (d->running >= d->limit)
        return false;
    if (!d->open)
        return true;
    return !d->probing && now >= d->open_until;
}

struct sched_item *sched_next(struct sched *s, uint64_t now)
{
    sched_promote(s, now);
    for (size_t k = 0; k < s->n_dests; k++) {
        size_t i = (s->rr + k) % s->n_dests;
        struct sched_dest *d = &s->dests[i];
        if (d->head == NULL || !dest_takes(d, now))
            continue;
        struct sched_item *it = d->head;
        queue_unlink(d, it);
        if (d->open) {
            d->probing = true;
            d->probe = it;
        }
        d->running++;
        it->state = SCHED_ITEM_RUNNING;
        /* The next call starts with the destination after this one. */
        s->rr = (i + 1) % s->n_dests;
        return it;
    }
    return NULL;
}

/*
 * A RUNNING item's attempt ended: it becomes IDLE and its place is free.
 * False when it was not running. *probe: it was the one probe let through
 * a half-open circuit (only the probe speaks for such a circuit: a job that
 * was running before the circuit opened and fails now tells nothing new).
 */
static bool sched_finish(struct sched *s, struct sched_item *it, bool *probe)
{
    struct sched_dest *d = &s->dests[it->dest];
    if (it->state != SCHED_ITEM_RUNNING)
        return false;
    it->state = SCHED_ITEM_IDLE;
    d->running--;
    *probe = d->probing && d->probe == it;
    return true;
}

/* No probe is out: a half-open circuit may let the next one through. */
static void probe_clear(struct sched_dest *d)
{
    d->probing = false;
    d->probe = NULL;
}

void sched_release(struct sched *s, struct sched_item *it)
{
    bool probe = false;
    /* A probe that learned nothing about the destination: another may go. */
    if (sched_finish(s, it, &probe) && probe)
        probe_clear(&s->dests[it->dest]);
}

int sched_done(struct sched *s, struct sched_item *it, enum sched_outcome outcome, uint64_t now)
{
    struct sched_dest *d = &s->dests[it->dest];
    bool probe = false;
    int flags = 0;
    if (outcome == SCHED_NEUTRAL) {
        sched_release(s, it);
        return 0;
    }
    if (!sched_finish(s, it, &probe))
        return 0;
    if (outcome == SCHED_OK) {
        if (d->open)
            flags |= SCHED_CLOSED;
        d->open = false;
        d->failures = 0;
        probe_clear(d);
        return flags;
    }
    /* SCHED_DEST_FAILURE */
    if (d->open && !probe)
        return 0;
    probe_clear(d);
    if (++d->failures >= s->circuit_failures || d->open) {
        d->open = true;
        d->open_until = now + s->circuit_open_ms;
        d->opened++;
        flags |= SCHED_OPENED;
    }
    return flags;
}

int64_t sched_wakeup(const struct sched *s, uint64_t now)
{
    bool any = false;
    uint64_t due = 0;
    if (s->n_heap > 0) {
        due = s->heap[0]->due;
        any = true;
    }
    for (size_t i = 0; i < s->n_dests; i++) {
        const struct sched_dest *d = &s->dests[i];
        if (!d->open || d->probing || d->head == NULL)
            continue;
        if (!any || d->open_until < due)
            due = d->open_until;
        any = true;
    }
    if (!any)
        return -1;
    return due > now ? (int64_t)(due - now) : 0;
}

bool sched_circuit_open(const struct sched *s, size_t dest, uint64_t now)
{
    const struct sched_dest *d = &s->dests[dest];
    return d->open && (d->probing || now < d->open_until);
}

struct sched_item *sched_take_any(struct sched *s)
{
    struct sched_item *it = NULL;
    if (s->n_heap > 0) {
        it = s->heap[0];
    } else {
        for (size_t i = 0; i < s->n_dests && it == NULL; i++)
            it = s->dests[i].head;
    }
    if (it != NULL)
        sched_remove(s, it);
    return it;
}
