/*
 * progress: progress bars on a terminal, one per transfer in flight and a
 * total, redrawn from a loop timer at most five times a second.
 */
#ifndef FERRY_PROGRESS_H
#define FERRY_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

struct progress;
struct progress_item;

/** Start drawing to `out` (a terminal). */
struct progress *progress_new(uv_loop_t *loop, FILE *out);

/** A new bar named `label` (copied) for `total` bytes. */
struct progress_item *progress_item_add(struct progress *p, const char *label, uint64_t total);

/** `done` bytes of the item are through. */
void progress_item_set(struct progress *p, struct progress_item *item, uint64_t done);

/** The item is over; it leaves the screen and counts into the total. */
void progress_item_done(struct progress *p, struct progress_item *item, bool ok);

/** Draw the last frame and stop redrawing. */
void progress_finish(struct progress *p);

/** Close the timer; the memory goes in its close callback. */
void progress_free(struct progress *p);

#endif
