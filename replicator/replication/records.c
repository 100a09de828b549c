/*
 * records.c: job status records written by a thread (records.h). Put takes
 * the lock, replaces or adds the record in a table kept in the order of
 * first put, and wakes the writer; the writer takes the records that are
 * due, writes them without the lock, and goes round again, or waits until
 * the next one is due.
 */
#include "replication/records.h"

#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

struct record {
    char *key; /* destination, repository and digest, NUL-separated */
    size_t key_len;
    struct journal_job job; /* owned */
    int64_t due_ms;         /* clock_mono_ms() from which it is written */
    UT_hash_handle hh;
};

struct records {
    struct journal *journal;
    pthread_t writer;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* work to do, or closing */
    pthread_cond_t room;  /* the tables are below their cap again */
    struct record *table; /* due: written at the writer's next round */
    /* Not due yet (PENDING, IN_PROGRESS), in the order of their due times:
     * the order they came in, as every one waits RECORDS_OPEN_DELAY_MS. */
    struct record *later;
    /* Jobs queued that have not run yet: due RECORDS_OPEN_DELAY_MS after
     * they start (to `later`), or when they end without running. */
    struct record *queued;
    size_t n;       /* in both */
    size_t writing; /* taken by the writer, not written yet */
    bool closing;
};

static void record_copy(struct journal_job *dst, const struct journal_job *src)
{
    *dst = *src;
    dst->destination = xstrdup(src->destination);
    dst->repository = xstrdup(src->repository);
    dst->digest = xstrdup(src->digest);
    dst->last_error = src->last_error != NULL ? xstrdup(src->last_error) : NULL;
    dst->node = src->node != NULL ? xstrdup(src->node) : NULL;
    dst->tags = src->n_tags > 0 ? xcalloc(src->n_tags, sizeof(*dst->tags)) : NULL;
    for (size_t i = 0; i < src->n_tags; i++)
        dst->tags[i] = xstrdup(src->tags[i]);
}

static void record_free(struct record *rec)
{
    journal_job_release(&rec->job);
    free(rec->key);
    free(rec);
}

/* Which table a record of `job` put now waits in. */
enum record_wait {
    RECORD_NOW,    /* it ended: written at once */
    RECORD_LATER,  /* running, or waiting for its retry: written after the delay */
    RECORD_QUEUED, /* queued, never run: written after the delay once it starts */
};

static enum record_wait record_wait(const struct journal_job *job)
{
    if (job->state == JOURNAL_JOB_PENDING && job->attempts == 0 && job->last_error == NULL)
        return RECORD_QUEUED;
    bool open = job->state == JOURNAL_JOB_PENDING || job->state == JOURNAL_JOB_IN_PROGRESS;
    return open ? RECORD_LATER : RECORD_NOW;
}

/*
 * Under the lock: move the records due (all of them when closing) to
 * *batch, and set *next to the due time of the first one left (INT64_MAX:
 * none).
 */
static void records_take_due(struct records *r, struct record **batch, int64_t *next)
{
    int64_t now = clock_mono_ms();
    *batch = r->table;
    r->table = NULL;
    *next = INT64_MAX;
    struct record *rec, *tmp;
    /* Closing, or full: a put waits for room, which only writing them makes. */
    if (r->closing || r->n >= RECORDS_PENDING_MAX) {
        HASH_ITER(hh, r->queued, rec, tmp)
        {
            HASH_DEL(r->queued, rec);
            HASH_ADD_KEYPTR(hh, *batch, rec->key, rec->key_len, rec);
        }
    }
    HASH_ITER(hh, r->later, rec, tmp)
    {
        if (!r->closing && rec->due_ms > now) {
            *next = rec->due_ms;
            break;
        }
        HASH_DEL(r->later, rec);
        HASH_ADD_KEYPTR(hh, *batch, rec->key, rec->key_len, rec);
    }
    size_t taken = HASH_COUNT(*batch);
    r->n -= taken;
    r->writing += taken;
}

static void *records_writer(void *arg)
{
    struct records *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        struct record *batch = NULL;
        int64_t next = INT64_MAX;
        records_take_due(r, &batch, &next);
        if (batch == NULL && r->closing)
            break;
        if (batch == NULL) {
            if (next == INT64_MAX) {
                pthread_cond_wait(&r->wake, &r->lock);
            } else {
                struct timespec until = {.tv_sec = (time_t)(next / 1000),
                                         .tv_nsec = (long)(next % 1000) * 1000000L};
                pthread_cond_timedwait(&r->wake, &r->lock, &until);
            }
            continue;
        }
        pthread_cond_broadcast(&r->room);
        pthread_mutex_unlock(&r->lock);
        struct record *rec, *tmp;
        HASH_ITER(hh, batch, rec, tmp)
        {
            if (journal_job_put(r->journal, &rec->job) < 0)
                log_warn("cannot record job status dest=%s repo=%s digest=%s", rec->job.destination,
                         rec->job.repository, rec->job.digest);
            HASH_DEL(batch, rec);
            record_free(rec);
            pthread_mutex_lock(&r->lock);
            r->writing--;
            pthread_mutex_unlock(&r->lock);
        }
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int records_new(struct journal *journal, struct records **out)
{
    struct records *r = xcalloc(1, sizeof(*r));
    r->journal = journal;
    pthread_mutex_init(&r->lock, NULL);
    /* The writer waits for a record's due time on the monotonic clock. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&r->room, NULL);
    if (pthread_create(&r->writer, NULL, records_writer, r) != 0) {
        pthread_cond_destroy(&r->room);
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return -EAGAIN;
    }
    *out = r;
    return 0;
}

void records_put(struct records *r, const struct journal_job *job)
{
    size_t d = strlen(job->destination) + 1, p = strlen(job->repository) + 1;
    size_t g = strlen(job->digest) + 1;
    char *key = xmalloc(d + p + g);
    memcpy(key, job->destination, d);
    memcpy(key + d, job->repository, p);
    memcpy(key + d + p, job->digest, g);
    size_t key_len = d + p + g;

    int64_t now = clock_mono_ms();
    enum record_wait wait = record_wait(job);
    int64_t due = wait == RECORD_NOW ? now : now + RECORDS_OPEN_DELAY_MS;
    pthread_mutex_lock(&r->lock);
    struct record *rec = NULL;
    HASH_FIND(hh, r->table, key, key_len, rec);
    if (rec == NULL) {
        HASH_FIND(hh, r->later, key, key_len, rec);
        /* Due now (it ended): to the due ones. A state that waits keeps its
         * place and its older due time (a long job's progress does not hold
         * its record back). */
        if (rec != NULL && wait == RECORD_NOW) {
            HASH_DEL(r->later, rec);
            rec->due_ms = due;
            HASH_ADD_KEYPTR(hh, r->table, rec->key, rec->key_len, rec);
        }
    }
    if (rec == NULL) {
        HASH_FIND(hh, r->queued, key, key_len, rec);
        /* It started (its delay runs from now, the latest due time, so
         * `later` stays in order), or ended: out of the queued ones. */
        if (rec != NULL && wait != RECORD_QUEUED) {
            HASH_DEL(r->queued, rec);
            rec->due_ms = due;
            if (wait == RECORD_NOW)
                HASH_ADD_KEYPTR(hh, r->table, rec->key, rec->key_len, rec);
            else
                HASH_ADD_KEYPTR(hh, r->later, rec->key, rec->key_len, rec);
        }
    }
    if (rec != NULL) {
        /* Not written yet: only the newest state is. */
        free(key);
        journal_job_release(&rec->job);
        record_copy(&rec->job, job);
    } else {
        while (r->n >= RECORDS_PENDING_MAX && !r->closing) {
            pthread_cond_signal(&r->wake);
            pthread_cond_wait(&r->room, &r->lock);
        }
        rec = xcalloc(1, sizeof(*rec));
        rec->key = key;
        rec->key_len = key_len;
        record_copy(&rec->job, job);
        rec->due_ms = due;
        if (wait == RECORD_NOW)
            HASH_ADD_KEYPTR(hh, r->table, rec->key, rec->key_len, rec);
        else if (wait == RECORD_LATER)
            HASH_ADD_KEYPTR(hh, r->later, rec->key, rec->key_len, rec);
        else
            HASH_ADD_KEYPTR(hh, r->queued, rec->key, rec->key_len, rec);
        r->n++;
    }
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

size_t records_pending(struct records *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->n + r->writing;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void records_close(struct records *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->closing = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->writer, NULL); /* it writes what is left first */
    pthread_cond_destroy(&r->room);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
