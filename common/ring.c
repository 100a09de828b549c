#include "common/ring.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

void ring_init(struct ring *r, size_t cap)
{
    r->data = xmalloc(cap);
    r->cap = cap;
    r->head = 0;
    r->len = 0;
    r->start = 0;
}

void ring_release(struct ring *r)
{
    free(r->data);
    r->data = NULL;
    r->cap = 0;
    r->len = 0;
}

void ring_reset(struct ring *r, uint64_t start)
{
    r->head = 0;
    r->len = 0;
    r->start = start;
}

size_t ring_space(const struct ring *r)
{
    return r->cap - r->len;
}

uint64_t ring_end(const struct ring *r)
{
    return r->start + r->len;
}

void ring_write(struct ring *r, const char *data, size_t len)
{
    size_t tail = (r->head + r->len) % r->cap;
    size_t first = len < r->cap - tail ? len : r->cap - tail;
    memcpy(r->data + tail, data, first);
    memcpy(r->data, data + first, len - first);
    r->len += len;
}

size_t ring_read(const struct ring *r, char *buf, size_t len, uint64_t offset)
{
    if (offset < r->start || offset >= ring_end(r))
        return 0;
    size_t skip = (size_t)(offset - r->start);
    size_t avail = r->len - skip;
    size_t n = len < avail ? len : avail;
    size_t pos = (r->head + skip) % r->cap;
    size_t first = n < r->cap - pos ? n : r->cap - pos;
    memcpy(buf, r->data + pos, first);
    memcpy(buf + first, r->data, n - first);
    return n;
}

void ring_consume(struct ring *r, uint64_t offset)
{
    if (offset <= r->start)
        return;
    size_t drop = offset - r->start > r->len ? r->len : (size_t)(offset - r->start);
    r->head = (r->head + drop) % r->cap;
    r->len -= drop;
    r->start += drop;
}
