/*
 * progress: progress bars on a terminal, one per transfer in flight and a
 * total, redrawn from a loop timer at most five times a second.
 */
#ifndef FERRY_PROGRESS_H
#define FERRY_PROGRESS_H

#include "common/errors.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

struct progress;
struct progress_item;

/**
 * Start drawing to `out` (a terminal) from a timer on `loop`; the timer
 * alone does not keep the loop alive. Returns 0 with *progress set (close it
 * with progress_close()), or libuv's negative code when the timer cannot
 * start, with *progress NULL.
 */
FERRY_MUST_CHECK int progress_new(uv_loop_t *loop, FILE *out, struct progress **progress);

/** A new bar named `label` (copied) for `total` bytes. */
struct progress_item *progress_item_add(struct progress *p, const char *label, uint64_t total);

/** `done` bytes of the item are through. */
void progress_item_set(struct progress *p, struct progress_item *item, uint64_t done);

/** The item is over; it leaves the screen and counts into the total. */
void progress_item_done(struct progress *p, struct progress_item *item, bool ok);

/** Draw the last frame and stop redrawing. */
void progress_finish(struct progress *p);

/**
 * Stop drawing and close the timer; the memory goes in its close callback,
 * after which `cb` (may be NULL) fires once with `arg`, from the loop.
 */
void progress_close(struct progress *p, void (*cb)(void *arg), void *arg);

#endif
