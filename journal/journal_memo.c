/*
 * journal_memo.c: what the poller remembers of each source repository from
 * one round to the next (journal.h), in its own family: key
 * "source\0repository\0", value a Ferry__PollMemo record. The poller keeps
 * none of it in memory, so a catalog of a hundred thousand repositories
 * costs it disk, not RSS; it writes a memo only when the memo changes.
 */
#include "journal/journal_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"

/* The key of (source, repository), or FERRY_EINVAL for a bad name. */
static int memo_key(const char *source, const char *repository, char **key, size_t *key_len)
{
    *key = NULL;
    if (journal_check_string(source, "source", true, JOURNAL_STRING_MAX, NULL) < 0 ||
        journal_check_string(repository, "repository", true, JOURNAL_STRING_MAX, NULL) < 0)
        return FERRY_EINVAL;
    *key = journal_tuple_prefix(source, repository, key_len);
    return 0;
}

static int memo_decode(const char *value, size_t len, struct journal_poll_memo *out)
{
    Ferry__PollMemo *rec =
        ferry__poll_memo__unpack(&journal_pb_allocator, len, (const uint8_t *)value);
    if (rec == NULL)
        return FERRY_EPARSE;
    int rc = journal_check_string(rec->etag, "etag", false, JOURNAL_STRING_MAX, NULL);
    if (rc == 0)
        *out = (struct journal_poll_memo){
            .etag = journal_optional(rec->etag),
            .listed_round = rec->listed_round,
            .sweep_owed = rec->sweep_owed,
        };
    ferry__poll_memo__free_unpacked(rec, &journal_pb_allocator);
    return rc < 0 ? FERRY_EPARSE : 0;
}

int journal_rdb_poll_memo_get(struct journal *jn, const char *source, const char *repository,
                              struct journal_poll_memo *out)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *key = NULL, *value = NULL;
    size_t key_len = 0, len = 0;

    memset(out, 0, sizeof(*out));
    int rc = memo_key(source, repository, &key, &key_len);
    if (rc == 0)
        rc = journal_cf_get(j, JOURNAL_CF_POLL_MEMOS, key, key_len, "poll_memo_get", &value, &len);
    if (rc == 0) {
        rc = memo_decode(value, len, out);
        if (rc < 0)
            log_warn("journal poll memo is corrupt dir=%s source=%s repo=%s", j->dir, source,
                     repository);
    }
    if (value != NULL)
        rocksdb_free(value);
    free(key);
    return rc;
}

int journal_rdb_poll_memo_put(struct journal *jn, const char *source, const char *repository,
                              const struct journal_poll_memo *memo)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *key = NULL, *rerr = NULL;
    size_t key_len = 0;
    uint8_t *packed = NULL;

    if (memo != NULL &&
        journal_check_string(memo->etag, "etag", false, JOURNAL_STRING_MAX, NULL) < 0)
        return FERRY_EINVAL;
    int rc = memo_key(source, repository, &key, &key_len);
    if (rc < 0)
        return rc;
    if (j->read_only || j->cf[JOURNAL_CF_POLL_MEMOS] == NULL) {
        free(key);
        return -EROFS;
    }
    if (memo == NULL) {
        rocksdb_delete_cf(j->db, j->write_unsynced, j->cf[JOURNAL_CF_POLL_MEMOS], key, key_len,
                          &rerr);
    } else {
        Ferry__PollMemo rec = FERRY__POLL_MEMO__INIT;
        rec.etag = (char *)journal_or_empty(memo->etag);
        rec.listed_round = memo->listed_round;
        rec.sweep_owed = memo->sweep_owed;
        size_t size = ferry__poll_memo__get_packed_size(&rec);
        packed = xmalloc(size > 0 ? size : 1);
        ferry__poll_memo__pack(&rec, packed);
        rocksdb_put_cf(j->db, j->write_unsynced, j->cf[JOURNAL_CF_POLL_MEMOS], key, key_len,
                       (const char *)packed, size, &rerr);
    }
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "poll_memo_put", rerr);
    free(packed);
    free(key);
    return rc;
}

void journal_poll_memo_release(struct journal_poll_memo *memo)
{
    if (memo == NULL)
        return;
    free(memo->etag);
    memo->etag = NULL;
}

int journal_rdb_poll_memo_clear(struct journal *jn)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *rerr = NULL;
    if (j->read_only || j->cf[JOURNAL_CF_POLL_MEMOS] == NULL)
        return -EROFS;
    /* Keys start with a source name: a registry name of the config, ASCII, never a 0xff byte. */
    rocksdb_delete_range_cf(j->db, j->write_unsynced, j->cf[JOURNAL_CF_POLL_MEMOS], "", 0, "\xff",
                            1, &rerr);
    return rerr != NULL ? journal_rocksdb_error(j, "poll_memo_clear", rerr) : 0;
}

/* ---- Pruning ---- */

/* One journal_poll_memo_prune() under way: the names to keep, sorted as the keys are. */
struct memo_prune {
    struct journal_rdb *j;
    size_t prefix_len; /* "source\0" */
    const char **keep;
    size_t n_keep;
    size_t next; /* the first name of keep not below the keys visited so far */
    rocksdb_writebatch_t *batch;
    size_t in_batch;
    uint64_t deleted;
};

/* strcmp compares as unsigned char, as RocksDB's bytewise comparator does. */
static int memo_name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int memo_prune_flush(struct memo_prune *pr)
{
    char *rerr = NULL;
    if (pr->in_batch == 0)
        return 0;
    rocksdb_write(pr->j->db, pr->j->write_unsynced, pr->batch, &rerr);
    rocksdb_writebatch_clear(pr->batch);
    pr->in_batch = 0;
    return rerr != NULL ? journal_rocksdb_error(pr->j, "poll_memo_prune", rerr) : 0;
}

static int memo_prune_visit(const char *key, size_t key_len, const char *value, size_t value_len,
                            void *arg)
{
    struct memo_prune *pr = arg;
    (void)value;
    (void)value_len;
    /* The repository: between the source's NUL and the key's last byte (a NUL). */
    const char *repo = key + pr->prefix_len;
    size_t repo_len = key_len > pr->prefix_len ? key_len - pr->prefix_len - 1 : 0;
    bool keep = false;
    if (repo_len > 0 && key[key_len - 1] == '\0' && memchr(repo, '\0', repo_len) == NULL) {
        while (pr->next < pr->n_keep) {
            int c = strcmp(pr->keep[pr->next], repo);
            if (c >= 0) {
                keep = c == 0;
                break;
            }
            pr->next++;
        }
    }
    if (keep)
        return 0;
    rocksdb_writebatch_delete_cf(pr->batch, pr->j->cf[JOURNAL_CF_POLL_MEMOS], key, key_len);
    pr->deleted++;
    if (++pr->in_batch < JOURNAL_WRITE_CHUNK)
        return 0;
    return memo_prune_flush(pr);
}

int journal_rdb_poll_memo_prune(struct journal *jn, const char *source, char *const *keep,
                                size_t n_keep, uint64_t *deleted)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    size_t prefix_len = 0;

    if (deleted != NULL)
        *deleted = 0;
    if (journal_check_string(source, "source", true, JOURNAL_STRING_MAX, NULL) < 0)
        return FERRY_EINVAL;
    if (j->read_only)
        return -EROFS;
    struct memo_prune pr = {.j = j, .n_keep = n_keep};
    if (n_keep > 0) {
        pr.keep = xcalloc(n_keep, sizeof(*pr.keep));
        memcpy(pr.keep, keep, n_keep * sizeof(*pr.keep));
        qsort(pr.keep, n_keep, sizeof(*pr.keep), memo_name_cmp);
    }
    char *prefix = journal_tuple_prefix(source, NULL, &prefix_len);
    pr.prefix_len = prefix_len;
    pr.batch = rocksdb_writebatch_create();
    int rc = journal_iterate(j, JOURNAL_CF_POLL_MEMOS, prefix, prefix_len, true, "poll_memo_prune",
                             memo_prune_visit, &pr);
    if (rc == 0)
        rc = memo_prune_flush(&pr);
    rocksdb_writebatch_destroy(pr.batch);
    free(prefix);
    free(pr.keep);
    if (deleted != NULL)
        *deleted = rc == 0 ? pr.deleted : 0;
    return rc;
}
