/*
 * progress: progress bars on a terminal; see progress.h.
 */
#include "cli/progress.h"

#include <stdlib.h>
#include <string.h>

#include "common/human.h"
#include "common/xalloc.h"

/* At most five redraws a second; bars this wide; this many transfers shown. */
#define PROGRESS_DRAW_EVERY_MS 200
#define PROGRESS_BAR_WIDTH     30
#define PROGRESS_ITEMS_SHOWN   8

struct progress_item {
    char label[20];
    uint64_t total;
    uint64_t done;
    struct progress_item *next;
};

struct progress {
    uv_loop_t *loop;
    uv_timer_t timer;
    FILE *out;
    struct progress_item *items;
    uint64_t total_bytes;
    uint64_t done_bytes; /* of finished items */
    unsigned finished;
    unsigned lines_drawn;
    uint64_t start_ms;
    bool stopped;
    void (*closed)(void *arg); /* progress_close()'s callback */
    void *closed_arg;
};

static void progress_bar(char *out, size_t width, uint64_t done, uint64_t total)
{
    size_t fill = total > 0 ? (size_t)((double)done / (double)total * (double)width) : width;
    if (fill > width)
        fill = width;
    for (size_t i = 0; i < width; i++)
        out[i] = i < fill ? '#' : '.';
    out[width] = '\0';
}

static void progress_draw(struct progress *p)
{
    char bar[PROGRESS_BAR_WIDTH + 1];
    char a[32];
    char b[32];
    char rate[32];
    uint64_t moving = 0;
    unsigned lines = 0;

    /* Back to the top of the last frame, then draw over it. */
    for (unsigned i = 0; i < p->lines_drawn; i++)
        fputs("\033[1A\033[2K", p->out);
    for (struct progress_item *it = p->items; it != NULL; it = it->next) {
        moving += it->done;
        if (lines >= PROGRESS_ITEMS_SHOWN)
            continue;
        progress_bar(bar, PROGRESS_BAR_WIDTH, it->done, it->total);
        human_bytes(a, sizeof(a), (double)it->done);
        human_bytes(b, sizeof(b), (double)it->total);
        fprintf(p->out, "  %-19s [%s] %s / %s\n", it->label, bar, a, b);
        lines++;
    }
    uint64_t all = p->done_bytes + moving;
    double secs = (double)(uv_now(p->loop) - p->start_ms) / 1000.0;
    human_bytes(a, sizeof(a), (double)all);
    human_bytes(rate, sizeof(rate), secs > 0 ? (double)all / secs : 0);
    fprintf(p->out, "  total: %u blobs done, %s sent, %s/s, %.1f s\n", p->finished, a, rate, secs);
    lines++;
    fflush(p->out);
    p->lines_drawn = lines;
}

static void progress_tick(uv_timer_t *timer)
{
    progress_draw(timer->data);
}

static void progress_closed(uv_handle_t *handle)
{
    struct progress *p = handle->data;
    void (*cb)(void *arg) = p->closed;
    void *arg = p->closed_arg;
    while (p->items != NULL) {
        struct progress_item *next = p->items->next;
        free(p->items);
        p->items = next;
    }
    free(p);
    if (cb != NULL)
        cb(arg);
}

int progress_new(uv_loop_t *loop, FILE *out, struct progress **progress)
{
    struct progress *p = xcalloc(1, sizeof(*p));
    *progress = NULL;
    p->loop = loop;
    p->out = out;
    p->start_ms = uv_now(loop);
    int rc = uv_timer_init(loop, &p->timer);
    if (rc < 0) {
        free(p);
        return rc;
    }
    p->timer.data = p;
    rc = uv_timer_start(&p->timer, progress_tick, PROGRESS_DRAW_EVERY_MS, PROGRESS_DRAW_EVERY_MS);
    if (rc < 0) {
        uv_close((uv_handle_t *)&p->timer, progress_closed);
        return rc;
    }
    /* The redraws alone must not keep the loop alive. */
    uv_unref((uv_handle_t *)&p->timer);
    *progress = p;
    return 0;
}

struct progress_item *progress_item_add(struct progress *p, const char *label, uint64_t total)
{
    struct progress_item *it = xcalloc(1, sizeof(*it));
    /* "sha256:" says nothing; the first hex digits tell blobs apart. */
    const char *colon = strchr(label, ':');
    snprintf(it->label, sizeof(it->label), "%s", colon ? colon + 1 : label);
    it->total = total;
    it->next = p->items;
    p->items = it;
    p->total_bytes += total;
    return it;
}

void progress_item_set(struct progress *p, struct progress_item *item, uint64_t done)
{
    (void)p;
    item->done = done;
}

void progress_item_done(struct progress *p, struct progress_item *item, bool ok)
{
    struct progress_item **pp = &p->items;
    while (*pp != NULL && *pp != item)
        pp = &(*pp)->next;
    if (*pp != NULL)
        *pp = item->next;
    if (ok)
        p->done_bytes += item->total;
    p->finished++;
    free(item);
}

void progress_finish(struct progress *p)
{
    if (p->stopped)
        return;
    p->stopped = true;
    uv_timer_stop(&p->timer);
    progress_draw(p);
}

void progress_close(struct progress *p, void (*cb)(void *arg), void *arg)
{
    p->closed = cb;
    p->closed_arg = arg;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, progress_closed);
}
