/*
 * heap: how the process's allocator (glibc malloc) is set up, and giving
 * back to the system the memory it holds free inside its heaps.
 */
#ifndef FERRY_HEAP_H
#define FERRY_HEAP_H

#include <stdbool.h>
#include <stdint.h>

/* heap_release() runs at most this often. */
#define HEAP_RELEASE_EVERY_MS 2000

/**
 * Set the allocator's thresholds (see heap.c): once, before any command
 * allocates much. Returns false when the allocator refused them.
 */
bool heap_setup(void);

/**
 * Give the free pages inside every heap back to the system (malloc_trim),
 * unless it was done less than HEAP_RELEASE_EVERY_MS before `now_ms` (a
 * monotonic clock). Called where a phase of work has just freed much: the
 * engine reading its next entries, the poller ending a round. For the loop
 * thread only. Returns true when it ran.
 */
bool heap_release(uint64_t now_ms);

#endif
