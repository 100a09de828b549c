/*
 * journal_retention.c: retention. Deletes the oldest entries (and their
 * dedup keys) once every cursor has passed them and they are old enough,
 * in bounded batches, then compacts the range away.
 */
#include "journal/journal_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"

/* The lowest cursor seen so far; `any` false while there is none. */
struct journal_min_cursor {
    struct journal_rdb *j;
    uint64_t min;
    bool any;
};

static int journal_min_cursor_visit(const char *key, size_t key_len, const char *value,
                                    size_t value_len, void *arg)
{
    struct journal_min_cursor *cursor = arg;
    (void)key;
    (void)key_len;
    if (value_len != JOURNAL_KEY_LEN) {
        log_warn("journal cursor is corrupt dir=%s len=%zu", cursor->j->dir, value_len);
        return FERRY_EPARSE;
    }
    uint64_t seq = journal_key_decode(value);
    if (seq < cursor->min)
        cursor->min = seq;
    cursor->any = true;
    return 0;
}

/* True when an entry received at `received` is more than `max_age_ms` older than `now`. */
static bool journal_older_than(int64_t received, int64_t now, uint64_t max_age_ms)
{
    if (received >= now)
        return false;
    return (uint64_t)now - (uint64_t)received > max_age_ms;
}

/* One journal_retain() under way. */
struct journal_retention {
    struct journal_rdb *j;
    rocksdb_writebatch_t *batch;
    uint64_t min_cursor;
    uint64_t max_age_ms;
    int64_t now_unix_ms;
    size_t pending;    /* deletions in `batch` */
    uint64_t written;  /* deletions written */
    bool flush_failed; /* a batch could not be written */
    char first_key[JOURNAL_KEY_LEN];
    char last_key[JOURNAL_KEY_LEN];
};

/* Write the pending deletions (not synced: lost ones are made again next time). */
static int journal_retain_flush(struct journal_retention *r)
{
    char *rerr = NULL;
    if (r->pending == 0)
        return 0;
    /* Each entry went with its dedup key. */
    journal_count_add(r->j, r->batch, JOURNAL_COUNT_ENTRIES, -(int64_t)r->pending);
    journal_count_add(r->j, r->batch, JOURNAL_COUNT_DEDUP, -(int64_t)r->pending);
    rocksdb_write(r->j->db, r->j->write_unsynced, r->batch, &rerr);
    if (rerr != NULL) {
        r->flush_failed = true;
        return journal_rocksdb_error(r->j, "retain", rerr);
    }
    rocksdb_writebatch_clear(r->batch);
    r->written += r->pending;
    r->pending = 0;
    return 0;
}

/*
 * Retention removes a prefix of the journal and stops at the first entry it
 * must keep, even if a later one is old enough (a clock that stepped back),
 * so that the entries that remain stay consecutive. A corrupt entry stops it
 * too: what came before still goes, and the error is returned.
 */
static int journal_retain_entry(const char *key, size_t key_len, const char *value,
                                size_t value_len, void *arg)
{
    struct journal_retention *r = arg;
    struct journal_rdb *j = r->j;
    struct journal_entry e;
    const char *why = NULL;

    int rc = journal_entry_decode(key, key_len, value, value_len, &e, &why);
    if (rc < 0) {
        log_warn("journal retention stopped at a corrupt entry dir=%s: %s", j->dir, why);
        return rc;
    }
    bool expired = e.seq <= r->min_cursor &&
                   journal_older_than(e.received_unix_ms, r->now_unix_ms, r->max_age_ms);
    if (expired) {
        rocksdb_writebatch_delete_cf(r->batch, j->cf[JOURNAL_CF_ENTRIES], key, key_len);
        char *dedup_key = journal_dedup_key(e.source, e.event_id);
        rocksdb_writebatch_delete_cf(r->batch, j->cf[JOURNAL_CF_DEDUP], dedup_key,
                                     strlen(dedup_key));
        free(dedup_key);
        if (r->written + r->pending == 0)
            memcpy(r->first_key, key, JOURNAL_KEY_LEN);
        memcpy(r->last_key, key, JOURNAL_KEY_LEN);
        r->pending++;
    }
    journal_entry_release(&e);
    if (!expired)
        return 1;
    return r->pending == JOURNAL_WRITE_CHUNK ? journal_retain_flush(r) : 0;
}

int journal_rdb_retain(struct journal *jn, uint64_t max_age_ms, int64_t now_unix_ms,
                       uint64_t *deleted)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    struct journal_min_cursor cursor = {.j = j, .min = UINT64_MAX};
    struct journal_retention r = {.j = j, .max_age_ms = max_age_ms, .now_unix_ms = now_unix_ms};

    if (deleted != NULL)
        *deleted = 0;
    if (j->read_only)
        return -EROFS;
    int rc = journal_iterate(j, JOURNAL_CF_CURSORS, NULL, 0, false, "retain",
                             journal_min_cursor_visit, &cursor);
    if (rc < 0 || !cursor.any)
        return rc;

    r.min_cursor = cursor.min;
    r.batch = rocksdb_writebatch_create();
    rc = journal_iterate(j, JOURNAL_CF_ENTRIES, NULL, 0, false, "retain", journal_retain_entry, &r);
    /* A batch that failed inside the pass ends it: nothing more is written or compacted. */
    bool stopped = r.flush_failed;
    if (!stopped) {
        int flush_rc = journal_retain_flush(&r);
        if (rc == 0)
            rc = flush_rc;
    }
    if (!stopped && r.written > 0) {
        rocksdb_compact_range_cf(j->db, j->cf[JOURNAL_CF_ENTRIES], r.first_key, sizeof(r.first_key),
                                 r.last_key, sizeof(r.last_key));
        log_info("journal retention dir=%s deleted=%llu first_seq=%llu last_seq=%llu", j->dir,
                 (unsigned long long)r.written, (unsigned long long)journal_key_decode(r.first_key),
                 (unsigned long long)journal_key_decode(r.last_key));
    }
    /* Deletions already written stay written: report them even on failure. */
    if (deleted != NULL)
        *deleted = r.written;
    rocksdb_writebatch_destroy(r.batch);
    return rc;
}
