#include "common/heap.h"

#include <malloc.h>

/*
 * Transfers allocate 128-256 KiB buffers by the hundred: served from the
 * heap and reused, not mapped and unmapped (and their pages zeroed) for each
 * blob, which cost a tenth of a sync's CPU. The heap then holds at most the
 * buffers of the transfers running at once, whatever the number or size of
 * the blobs (copy_large checks the peak). Free memory at the top of a heap
 * (the main one and each thread's) goes back past 1 MiB: at 32 MiB every
 * thread's heap kept its own peak, and a sync of 10,000 tags peaked at
 * 56 MiB instead of 47 MiB, for the same CPU.
 */
#define HEAP_MMAP_THRESHOLD (8 * 1024 * 1024)
#define HEAP_TRIM_THRESHOLD (1 * 1024 * 1024)

/* When heap_release() last ran; the loop thread's alone. */
static uint64_t heap_released_ms;
static bool heap_released;

bool heap_setup(void)
{
    return mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD) == 1 &&
           mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD) == 1;
}

/*
 * The top of a heap goes back by itself (HEAP_TRIM_THRESHOLD), but not the
 * free chunks under long-lived ones: jobs, journal entries and RocksDB's
 * cached blocks come and go among the engine's tables, and the holes add
 * up. At 100,000 tags a sync's main heap held 35 MiB for 21 MiB in use;
 * malloc_trim(0) gave 12 MiB of it back. A call takes 0.1-2.4 ms (27 calls
 * in a sync of 10,000 tags), on the loop thread.
 */
bool heap_release(uint64_t now_ms)
{
    if (heap_released && now_ms < heap_released_ms + HEAP_RELEASE_EVERY_MS)
        return false;
    heap_released = true;
    heap_released_ms = now_ms;
    (void)malloc_trim(0);
    return true;
}
