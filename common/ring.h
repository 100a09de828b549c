/*
 * ring: a fixed-size byte ring that holds a moving window of a stream, by
 * stream offset. A producer appends at the end of the window; a consumer
 * reads at any offset still inside it and drops what it no longer needs.
 * It is how a blob flows from a download to an upload in bounded memory.
 */
#ifndef FERRY_RING_H
#define FERRY_RING_H

#include <stddef.h>
#include <stdint.h>

struct ring {
    char *data;
    size_t cap;
    size_t head;    /* index in data of the byte at `start` */
    size_t len;     /* bytes held */
    uint64_t start; /* stream offset of the oldest byte held */
};

/** Allocate a ring of `cap` bytes whose window starts at stream offset 0. */
void ring_init(struct ring *r, size_t cap);

/** Free the ring's memory. */
void ring_release(struct ring *r);

/** Empty the ring and make its window start at stream offset `start`. */
void ring_reset(struct ring *r, uint64_t start);

/** Free bytes. */
size_t ring_space(const struct ring *r);

/** The stream offset just past the newest byte held. */
uint64_t ring_end(const struct ring *r);

/** Append `len` bytes at ring_end(); the caller checked ring_space(). */
void ring_write(struct ring *r, const char *data, size_t len);

/**
 * Copy up to `len` bytes from stream offset `offset` (start <= offset <=
 * end) into `buf`; returns the count, 0 when offset is the end.
 */
size_t ring_read(const struct ring *r, char *buf, size_t len, uint64_t offset);

/** Drop every byte before stream offset `offset` (clamped to the window). */
void ring_consume(struct ring *r, uint64_t offset);

#endif
