/*
 * scheduler: which job starts next (DESIGN.md §4).
 *
 * Pure bookkeeping on a clock its caller passes in, so that it is tested on
 * a fake one: a run queue per destination (first in, first out), a timer
 * queue of jobs waiting for a retry (a binary heap keyed by due time, ties
 * kept in the order they were added), and a circuit breaker per destination.
 * A job waiting for a retry or behind an open circuit holds no place in any
 * other destination's queue, so it never delays runnable work there.
 *
 * The owner embeds a struct sched_item in each job, asks sched_next() for
 * the jobs it may start now, reports each attempt's outcome with
 * sched_done(), and sets one timer for sched_wakeup().
 */
#ifndef FERRY_SCHEDULER_H
#define FERRY_SCHEDULER_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sched_state {
    SCHED_ITEM_IDLE = 0, /* not in the scheduler */
    SCHED_ITEM_RUNNABLE, /* in its destination's run queue */
    SCHED_ITEM_WAITING,  /* in the timer queue, due at `due` */
    SCHED_ITEM_RUNNING,  /* handed out by sched_next(), not done yet */
};

struct sched_item {
    enum sched_state state;
    size_t dest;
    uint64_t due;   /* when WAITING */
    uint64_t order; /* ties between equal due times go in this order */
    size_t heap_index;
    struct sched_item *next; /* in the run queue */
    struct sched_item *prev;
};

struct sched_dest {
    int limit; /* jobs running at once */
    int running;
    struct sched_item *head, *tail; /* runnable, oldest first */
    size_t runnable;
    size_t waiting;
    /* The circuit: after `circuit_failures` failures of the destination in a
     * row it takes no job for `circuit_open_ms`, then one probe at a time. */
    int failures;
    bool open;
    bool probing;
    const struct sched_item *probe; /* the job let through a half-open circuit */
    uint64_t open_until;
    uint64_t opened; /* times it opened */
};

struct sched {
    struct sched_dest *dests;
    size_t n_dests;
    struct sched_item **heap; /* the timer queue */
    size_t n_heap, cap_heap;
    uint64_t next_order;
    size_t rr; /* the destination sched_next() looks at first */
    int circuit_failures;
    uint64_t circuit_open_ms;
};

/** What one attempt of a job says about its destination. */
enum sched_outcome {
    SCHED_OK = 0,       /* the destination worked: the circuit closes */
    SCHED_DEST_FAILURE, /* the destination failed: counts toward opening its circuit */
    SCHED_NEUTRAL,      /* someone else's fault (the source, Ferry): says nothing */
};

/** Transitions sched_done() reports. */
#define SCHED_OPENED 1 /* the circuit opened (or opened again after a failed probe) */
#define SCHED_CLOSED 2 /* an open circuit closed */

/** Set up for `n_dests` destinations with `limits[i]` jobs at once each (0: 1). */
void sched_init(struct sched *s, size_t n_dests, const int *limits, int circuit_failures,
                uint64_t circuit_open_ms);
void sched_free(struct sched *s);

/** Queue `it` for destination `dest`, runnable now, behind what is queued there. */
void sched_push(struct sched *s, struct sched_item *it, size_t dest);

/** Queue `it` for destination `dest`, runnable from `due` on. */
void sched_delay(struct sched *s, struct sched_item *it, size_t dest, uint64_t due);

/** Take a RUNNABLE or WAITING item out again (it becomes IDLE). */
void sched_remove(struct sched *s, struct sched_item *it);

/**
 * The next job that may start at `now`: waiting jobs that are due join their
 * run queues first; destinations take turns; a destination at its limit or
 * behind an open circuit is passed over (a half-open circuit lets one probe
 * through). The item is RUNNING until sched_done(). NULL: nothing may start.
 */
struct sched_item *sched_next(struct sched *s, uint64_t now);

/** A RUNNING item's attempt ended (it becomes IDLE). Returns SCHED_OPENED/CLOSED flags. */
FERRY_MUST_CHECK int sched_done(struct sched *s, struct sched_item *it, enum sched_outcome outcome,
                                uint64_t now);

/**
 * A RUNNING item's attempt says nothing about its destination (as
 * sched_done() with SCHED_NEUTRAL, which moves no circuit): its place goes
 * to the next job. The item becomes IDLE.
 */
void sched_release(struct sched *s, struct sched_item *it);

/**
 * Milliseconds from `now` until sched_next() may have something new (a
 * waiting job due, a circuit letting a probe through); 0 if already; -1 when
 * nothing is waiting for the clock.
 */
int64_t sched_wakeup(const struct sched *s, uint64_t now);

/** True when the circuit of `dest` takes no job at `now`. */
bool sched_circuit_open(const struct sched *s, size_t dest, uint64_t now);

/** Any RUNNABLE or WAITING item, taken out (IDLE); NULL when none is left. For shutdown. */
struct sched_item *sched_take_any(struct sched *s);

#endif
