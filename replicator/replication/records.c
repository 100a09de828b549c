/*
 * records.c: job status records written by a thread (records.h). Put takes
 * the lock, replaces or adds the record in a table kept in the order of
 * first put, and wakes the writer; the writer takes the whole table, writes
 * it without the lock, and goes round again.
 */
#include "replication/records.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

struct record {
    char *key; /* destination, repository and digest, NUL-separated */
    size_t key_len;
    struct journal_job job; /* owned */
    UT_hash_handle hh;
};

struct records {
    struct journal *journal;
    pthread_t writer;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* work to do, or closing */
    pthread_cond_t room; /* the table is below its cap again */
    struct record *table;
    size_t n;
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

static void *records_writer(void *arg)
{
    struct records *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (r->table == NULL && !r->closing)
            pthread_cond_wait(&r->wake, &r->lock);
        if (r->table == NULL && r->closing)
            break;
        struct record *batch = r->table;
        r->table = NULL;
        r->writing = r->n;
        r->n = 0;
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
    pthread_cond_init(&r->wake, NULL);
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

    pthread_mutex_lock(&r->lock);
    struct record *rec = NULL;
    HASH_FIND(hh, r->table, key, key_len, rec);
    if (rec != NULL) {
        /* Not written yet: only the newest state is. */
        journal_job_release(&rec->job);
        record_copy(&rec->job, job);
        free(key);
    } else {
        while (r->n >= RECORDS_PENDING_MAX && !r->closing)
            pthread_cond_wait(&r->room, &r->lock);
        rec = xcalloc(1, sizeof(*rec));
        rec->key = key;
        rec->key_len = key_len;
        record_copy(&rec->job, job);
        HASH_ADD_KEYPTR(hh, r->table, rec->key, rec->key_len, rec);
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
