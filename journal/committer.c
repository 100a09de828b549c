#include "journal/committer.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One journal_committer_submit(): deep copies of its events, and whom to tell. */
struct committer_submission {
    struct committer_submission *next;
    struct journal_event *events;
    size_t n;
    journal_commit_cb cb;
    void *arg;
};

/*
 * Everything that was queued when a write started. The worker thread touches
 * only this struct and the journal; the committer itself belongs to the loop.
 */
struct committer_batch {
    uv_work_t work;
    struct journal_committer *committer;
    struct journal *journal;
    struct committer_submission *submissions;
    struct journal_event *events; /* every submission's events in order, borrowed */
    size_t n;
    uint64_t *seqs;
    int rc;
    char *err;
    /*
     * The new entries, read back on the worker when a tail was set at
     * dispatch, each with the code of its read (an entry that cannot be read
     * back is left zeroed and only logged).
     */
    bool read_back;
    struct journal_entry *entries;
    int *read_rc;
    size_t n_entries;
};

struct journal_committer {
    uv_loop_t *loop;
    struct journal *journal;
    struct committer_submission *queue_head;
    struct committer_submission *queue_tail;
    /* The batch being written, and still set while its callbacks run. */
    struct committer_batch *running;
    uint64_t batches;
    journal_tail_cb tail_cb;
    void *tail_arg;
    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;
    /* Defers the close callback when nothing was pending at close time. */
    uv_work_t close_work;
};

static void committer_start(struct journal_committer *c);

static void committer_event_copy(struct journal_event *dst, const struct journal_event *src)
{
    /* The whole struct first, so that a field added to it is never dropped
     * here (if_changed once was); then the strings become the committer's. */
    *dst = *src;
    dst->source = xstrdup(src->source);
    dst->repository = xstrdup(src->repository);
    dst->digest = xstrdup(src->digest);
    dst->tag = xstrdup(src->tag);
    dst->media_type = xstrdup(src->media_type);
    dst->event_id = xstrdup(src->event_id);
}

static void committer_submission_free(struct committer_submission *s)
{
    for (size_t i = 0; i < s->n; i++)
        journal_event_release(&s->events[i]);
    free(s->events);
    free(s);
}

static void committer_batch_free(struct committer_batch *b)
{
    for (size_t i = 0; i < b->n_entries; i++)
        journal_entry_release(&b->entries[i]);
    free(b->entries);
    free(b->read_rc);
    free(b->events);
    free(b->seqs);
    free(b->err);
    free(b);
}

int journal_committer_new(uv_loop_t *loop, struct journal *j, struct journal_committer **out)
{
    *out = NULL;
    if (loop == NULL || j == NULL)
        return FERRY_EINVAL;
    struct journal_committer *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->journal = j;
    *out = c;
    return 0;
}

void journal_committer_set_tail(struct journal_committer *c, journal_tail_cb cb, void *arg)
{
    c->tail_cb = cb;
    c->tail_arg = cb != NULL ? arg : NULL;
}

uint64_t journal_committer_batches(const struct journal_committer *c)
{
    return c->batches;
}

int journal_committer_submit(struct journal_committer *c, const struct journal_event *events,
                             size_t n, journal_commit_cb cb, void *arg)
{
    if (c->closing)
        return FERRY_ECANCELED;
    if (n > 0 && events == NULL)
        return FERRY_EINVAL;
    /*
     * Checked here, not only in journal_append(): one bad event in a group
     * batch would fail every other submission that shares the write.
     */
    for (size_t i = 0; i < n; i++) {
        char *why = NULL;
        if (journal_event_validate(&events[i], &why) < 0) {
            log_warn("journal commit refused event=%zu: %s", i, why);
            free(why);
            return FERRY_EINVAL;
        }
    }

    struct committer_submission *s = xcalloc(1, sizeof(*s));
    s->events = xcalloc(n, sizeof(*s->events));
    for (size_t i = 0; i < n; i++)
        committer_event_copy(&s->events[i], &events[i]);
    s->n = n;
    s->cb = cb;
    s->arg = arg;
    if (c->queue_tail != NULL)
        c->queue_tail->next = s;
    else
        c->queue_head = s;
    c->queue_tail = s;
    committer_start(c);
    return 0;
}

static char *committer_dup(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

/* The entry that appending `ev` made at `seq` (received about `now`). */
static void committer_entry_of(const struct journal_event *ev, uint64_t seq, int64_t now,
                               struct journal_entry *out)
{
    *out = (struct journal_entry){
        .seq = seq,
        .action = ev->action,
        .source = committer_dup(ev->source),
        .repository = committer_dup(ev->repository),
        .digest = committer_dup(ev->digest),
        .tag = committer_dup(ev->tag),
        .media_type = committer_dup(ev->media_type),
        .event_id = committer_dup(ev->event_id),
        .received_unix_ms = now,
        .event_unix_ms = ev->event_unix_ms,
    };
}

/* Worker thread: one synced write for the whole batch, then the tail's entries. */
static void committer_work(uv_work_t *req)
{
    struct committer_batch *b = req->data;

    b->rc = journal_append(b->journal, b->events, b->n, b->seqs, &b->err);
    if (b->rc < 0 || !b->read_back)
        return;
    size_t fresh = 0;
    for (size_t i = 0; i < b->n; i++)
        fresh += b->seqs[i] != 0;
    b->entries = xcalloc(fresh, sizeof(*b->entries));
    b->read_rc = xcalloc(fresh, sizeof(*b->read_rc));
    /* A cluster's journal would answer each read with a round trip to the
     * servers, one after the other: the entries are what was just written. */
    bool local = strcmp(journal_backend_name(b->journal), "rocksdb") == 0;
    int64_t now = clock_unix_ms();
    for (size_t i = 0; i < b->n; i++) {
        if (b->seqs[i] == 0)
            continue;
        if (local)
            b->read_rc[b->n_entries] =
                journal_get(b->journal, b->seqs[i], &b->entries[b->n_entries]);
        else
            committer_entry_of(&b->events[i], b->seqs[i], now, &b->entries[b->n_entries]);
        b->n_entries++;
    }
}

static void committer_tail(struct journal_committer *c, struct committer_batch *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n && c->tail_cb != NULL; i++) {
        uint64_t seq = b->seqs[i];
        struct journal_entry own = {0};
        const struct journal_entry *e = &own;
        int rc;
        if (seq == 0)
            continue;
        if (b->read_back) {
            rc = b->read_rc[k];
            e = &b->entries[k++];
        } else {
            /*
             * The tail was set while this batch was being written. The loop
             * owns the journal again now (no write is in flight), so read it
             * here.
             */
            rc = journal_get(c->journal, seq, &own);
        }
        if (rc < 0)
            log_warn("journal tail cannot read back an appended entry seq=%llu: %s",
                     (unsigned long long)seq, ferry_strerror(rc));
        else
            c->tail_cb(e, c->tail_arg);
        journal_entry_release(&own);
    }
}

/* Loop thread: hand each submission its seqs, in submission order, then feed the tail. */
static void committer_after_work(uv_work_t *req, int status)
{
    struct committer_batch *b = req->data;
    struct journal_committer *c = b->committer;
    size_t offset = 0;

    if (status < 0 && b->rc == 0)
        b->rc = status;
    if (b->rc == 0)
        c->batches++;
    else
        log_warn("journal commit failed events=%zu: %s", b->n,
                 b->err != NULL ? b->err : ferry_strerror(b->rc));
    const char *error = NULL;
    if (b->rc < 0)
        error = b->err != NULL ? b->err : ferry_strerror(b->rc);

    /*
     * The batch stays `running` while callbacks run, so that a submit from
     * inside one queues for the next write instead of starting it before
     * this batch's tail has been delivered.
     */
    while (b->submissions != NULL) {
        struct committer_submission *s = b->submissions;
        b->submissions = s->next;
        if (s->cb != NULL)
            s->cb(b->rc, error, b->seqs + offset, s->n, s->arg);
        offset += s->n;
        committer_submission_free(s);
    }
    if (b->rc == 0)
        committer_tail(c, b);
    c->running = NULL;
    committer_batch_free(b);
    committer_start(c);
}

static void committer_close_work(uv_work_t *req)
{
    (void)req;
}

static void committer_finish_close(struct journal_committer *c)
{
    void (*cb)(void *arg) = c->close_cb;
    void *arg = c->close_arg;
    free(c);
    if (cb != NULL)
        cb(arg);
}

static void committer_close_after_work(uv_work_t *req, int status)
{
    (void)status;
    committer_finish_close(req->data);
}

/*
 * Start the next write when none is running. Called last by every path that
 * may have made the committer idle; when closing, an idle committer is freed.
 */
static void committer_start(struct journal_committer *c)
{
    if (c->running != NULL)
        return;
    if (c->queue_head == NULL) {
        if (c->closing)
            committer_finish_close(c);
        return;
    }

    struct committer_batch *b = xcalloc(1, sizeof(*b));
    b->committer = c;
    b->journal = c->journal;
    b->submissions = c->queue_head;
    c->queue_head = NULL;
    c->queue_tail = NULL;
    for (struct committer_submission *s = b->submissions; s != NULL; s = s->next)
        b->n += s->n;
    b->events = xcalloc(b->n, sizeof(*b->events));
    b->seqs = xcalloc(b->n, sizeof(*b->seqs));
    size_t i = 0;
    for (struct committer_submission *s = b->submissions; s != NULL; s = s->next) {
        memcpy(b->events + i, s->events, s->n * sizeof(*s->events));
        i += s->n;
    }
    b->read_back = c->tail_cb != NULL;
    b->work.data = b;
    c->running = b;
    int rc = uv_queue_work(c->loop, &b->work, committer_work, committer_after_work);
    if (rc < 0) {
        /* Only a programming error gets here; the callbacks still fire once. */
        log_error("journal commit cannot queue work: %s", ferry_strerror(rc));
        b->rc = rc;
        committer_after_work(&b->work, rc);
    }
}

void journal_committer_close(struct journal_committer *c, void (*cb)(void *arg), void *arg)
{
    if (c->closing)
        return;
    c->closing = true;
    c->close_cb = cb;
    c->close_arg = arg;
    if (c->running != NULL || c->queue_head != NULL)
        return;
    /*
     * Nothing pending: free on the next loop iteration anyway, so that the
     * callback never fires before this call returns, as libuv's close does.
     */
    c->close_work.data = c;
    if (uv_queue_work(c->loop, &c->close_work, committer_close_work, committer_close_after_work) <
        0)
        committer_finish_close(c);
}
