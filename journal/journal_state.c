/*
 * journal_state.c: the state kept beside the entries. Named cursors (a
 * consumer's position), the tag states (the latest journaled digest of every
 * (source, repository, tag)), and the replication state of DESIGN.md §3 and
 * §5: fences and job status. Keys of three names are
 * "first\0second\0third"; seqs are 8 bytes big-endian; job status values are
 * Ferry__JobStatus records. A read-only journal opened on a database from
 * before a family existed reads that family as empty.
 */
#include "journal/journal_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

/* ---- Keys ---- */

/*
 * None of the three names can hold a NUL, so the encoding is unambiguous,
 * "first\0" prefixes exactly the records of one first name, and keys sort as
 * the (first, second, third) tuples do.
 */
int journal_tuple_key(const char *first, const char *second, const char *third, char **key,
                      size_t *key_len)
{
    if (journal_check_string(first, "first", true, JOURNAL_STRING_MAX, NULL) < 0 ||
        journal_check_string(second, "second", true, JOURNAL_STRING_MAX, NULL) < 0 ||
        journal_check_string(third, "third", true, JOURNAL_STRING_MAX, NULL) < 0)
        return FERRY_EINVAL;
    size_t f = strlen(first), s = strlen(second), t = strlen(third);
    *key_len = f + 1 + s + 1 + t;
    *key = xmalloc(*key_len);
    memcpy(*key, first, f + 1);
    memcpy(*key + f + 1, second, s + 1);
    memcpy(*key + f + 1 + s + 1, third, t);
    return 0;
}

char *journal_tuple_prefix(const char *first, const char *second, size_t *len)
{
    size_t f = strlen(first) + 1;
    size_t s = second != NULL ? strlen(second) + 1 : 0;
    char *prefix = xmalloc(f + s);
    memcpy(prefix, first, f);
    if (second != NULL)
        memcpy(prefix + f, second, s);
    *len = f + s;
    return prefix;
}

/*
 * The record of (first, second, third) in family `cf`: *key (the caller
 * frees it, NULL for a bad name) and, as journal_cf_get() gives them, the
 * code and *value. FERRY_EINVAL for a bad name.
 */
static int journal_tuple_get(struct journal_rdb *j, enum journal_cf cf, const char *first,
                             const char *second, const char *third, const char *what, char **key,
                             size_t *key_len, char **value, size_t *len)
{
    *key = NULL;
    *value = NULL;
    int rc = journal_tuple_key(first, second, third, key, key_len);
    if (rc < 0)
        return rc;
    return journal_cf_get(j, cf, *key, *key_len, what, value, len);
}

/* The key of a record about to be written: as journal_tuple_key(), or -EROFS read-only. */
static int journal_tuple_key_writable(struct journal_rdb *j, const char *first, const char *second,
                                      const char *third, char **key, size_t *key_len)
{
    *key = NULL;
    int rc = journal_tuple_key(first, second, third, key, key_len);
    if (rc < 0)
        return rc;
    return j->read_only ? -EROFS : 0;
}

/* ---- Cursors ---- */

static int journal_check_name(const char *s)
{
    return journal_check_string(s, "name", true, JOURNAL_STRING_MAX, NULL);
}

int journal_rdb_cursor_get(struct journal *jn, const char *name, uint64_t *seq)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    *seq = 0;
    if (journal_check_name(name) < 0)
        return FERRY_EINVAL;
    return journal_read_seq(j, JOURNAL_CF_CURSORS, name, strlen(name), "cursor_get", seq);
}

int journal_rdb_cursor_find(struct journal *jn, const char *name, uint64_t *seq)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *value = NULL;
    size_t len = 0;
    *seq = 0;
    if (journal_check_name(name) < 0)
        return FERRY_EINVAL;
    int rc = journal_cf_get(j, JOURNAL_CF_CURSORS, name, strlen(name), "cursor_find", &value, &len);
    if (rc < 0)
        return rc;
    if (len == JOURNAL_KEY_LEN)
        *seq = journal_key_decode(value);
    else
        rc = FERRY_EPARSE;
    rocksdb_free(value);
    return rc;
}

int journal_rdb_cursor_set(struct journal *jn, const char *name, uint64_t seq)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char value[JOURNAL_KEY_LEN];
    char *rerr = NULL;

    if (journal_check_name(name) < 0)
        return FERRY_EINVAL;
    if (j->read_only)
        return -EROFS;
    journal_key_encode(seq, value);
    rocksdb_put_cf(j->db, j->write_unsynced, j->cf[JOURNAL_CF_CURSORS], name, strlen(name), value,
                   sizeof(value), &rerr);
    if (rerr != NULL)
        return journal_rocksdb_error(j, "cursor_set", rerr);
    return 0;
}

/* ---- Tag states: "source\0repository\0tag" -> digest ---- */

char *journal_tagstate_digest(const char *value, size_t len)
{
    if (len == 0 || len > JOURNAL_STRING_MAX || memchr(value, '\0', len) != NULL)
        return NULL;
    return xstrndup(value, len);
}

int journal_rdb_tagstate_get(struct journal *jn, const char *source, const char *repository,
                             const char *tag, char **digest)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *key = NULL;
    size_t key_len = 0, len = 0;
    char *value = NULL;

    *digest = NULL;
    int rc = journal_tuple_get(j, JOURNAL_CF_TAGSTATE, source, repository, tag, "tagstate_get",
                               &key, &key_len, &value, &len);
    if (rc < 0)
        goto out;
    *digest = journal_tagstate_digest(value, len);
    if (*digest == NULL) {
        log_warn("journal tag state is corrupt dir=%s source=%s repo=%s tag=%s", j->dir, source,
                 repository, tag);
        rc = FERRY_EPARSE;
    }
out:
    if (value != NULL)
        rocksdb_free(value);
    free(key);
    return rc;
}

int journal_rdb_tagstate_put(struct journal *jn, const char *source, const char *repository,
                             const char *tag, const char *digest)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *key = NULL;
    size_t key_len = 0;
    char *rerr = NULL;

    if (digest != NULL &&
        journal_check_string(digest, "digest", true, JOURNAL_STRING_MAX, NULL) < 0)
        return FERRY_EINVAL;
    int rc = journal_tuple_key_writable(j, source, repository, tag, &key, &key_len);
    if (rc < 0)
        goto out;
    /*
     * Not synced: the poller calls this on the loop thread, and a record lost
     * in a crash only makes the next poll emit the event again, which the
     * journal then drops by its synthetic event id.
     */
    if (digest != NULL)
        rocksdb_put_cf(j->db, j->write_unsynced, j->cf[JOURNAL_CF_TAGSTATE], key, key_len, digest,
                       strlen(digest), &rerr);
    else
        rocksdb_delete_cf(j->db, j->write_unsynced, j->cf[JOURNAL_CF_TAGSTATE], key, key_len,
                          &rerr);
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "tagstate_put", rerr);
out:
    free(key);
    return rc;
}

/* One journal_tagstate_scan() under way. */
struct journal_tagstate_scan {
    struct journal_rdb *j;
    const char *source;
    size_t source_len; /* with its NUL: where the repository starts in a key */
    int (*cb)(const char *repository, const char *tag, const char *digest, void *arg);
    void *arg;
};

static int journal_tagstate_visit(const char *key, size_t key_len, const char *value,
                                  size_t value_len, void *arg)
{
    struct journal_tagstate_scan *scan = arg;
    const char *rest = key + scan->source_len;
    size_t rest_len = key_len - scan->source_len;
    const char *sep = memchr(rest, '\0', rest_len);
    size_t repo_len = sep != NULL ? (size_t)(sep - rest) : 0;
    size_t tag_len = sep != NULL ? rest_len - repo_len - 1 : 0;
    char *digest = journal_tagstate_digest(value, value_len);
    if (sep == NULL || repo_len == 0 || tag_len == 0 || memchr(sep + 1, '\0', tag_len) != NULL ||
        digest == NULL) {
        free(digest);
        log_warn("journal tag state is corrupt dir=%s source=%s", scan->j->dir, scan->source);
        return FERRY_EPARSE;
    }
    char *repository = xstrndup(rest, repo_len);
    char *tag = xstrndup(sep + 1, tag_len);
    int stop = scan->cb(repository, tag, digest, scan->arg);
    free(repository);
    free(tag);
    free(digest);
    return stop ? 1 : 0;
}

int journal_rdb_tagstate_scan(struct journal *jn, const char *source, const char *repository,
                              int (*cb)(const char *repository, const char *tag, const char *digest,
                                        void *arg),
                              void *arg)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    struct journal_tagstate_scan scan = {.j = j, .source = source, .cb = cb, .arg = arg};
    size_t prefix_len = 0;

    if (journal_check_string(source, "source", true, JOURNAL_STRING_MAX, NULL) < 0 ||
        (repository != NULL &&
         journal_check_string(repository, "repository", true, JOURNAL_STRING_MAX, NULL) < 0))
        return FERRY_EINVAL;
    scan.source_len = strlen(source) + 1;
    char *prefix = journal_tuple_prefix(source, repository, &prefix_len);
    int rc = journal_iterate(j, JOURNAL_CF_TAGSTATE, prefix, prefix_len, true, "tagstate_scan",
                             journal_tagstate_visit, &scan);
    free(prefix);
    return rc;
}

/* ---- Fences: "destination\0repository\0tag" -> seq ---- */

/* The fence stored under `key`: 0 and *seq (0 when there is none), FERRY_EPARSE or -EIO. */
static int journal_fence_read(struct journal_rdb *j, const char *key, size_t key_len,
                              const char *destination, const char *repository, const char *tag,
                              uint64_t *seq)
{
    int rc = journal_read_seq(j, JOURNAL_CF_FENCES, key, key_len, "fence_get", seq);
    if (rc == FERRY_EPARSE)
        log_warn("journal fence is corrupt dir=%s dest=%s repo=%s tag=%s", j->dir, destination,
                 repository, tag);
    return rc;
}

int journal_rdb_fence_get(struct journal *jn, const char *destination, const char *repository,
                          const char *tag, uint64_t *seq)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *key = NULL;
    size_t key_len = 0;

    *seq = 0;
    int rc = journal_tuple_key(destination, repository, tag, &key, &key_len);
    if (rc == 0)
        rc = journal_fence_read(j, key, key_len, destination, repository, tag, seq);
    free(key);
    return rc;
}

static int fence_raise(struct journal_rdb *j, const char *destination, const char *repository,
                       const char *tag, uint64_t seq, bool synced)
{
    char value[JOURNAL_KEY_LEN];
    char *key = NULL;
    size_t key_len = 0;
    char *rerr = NULL;
    uint64_t fence = 0;

    int rc = journal_tuple_key_writable(j, destination, repository, tag, &key, &key_len);
    if (rc < 0) {
        free(key);
        return rc;
    }
    /*
     * Two raises that both read the old fence before either wrote would both
     * return 1, and the lower one could then move the tag back: the read and
     * the write happen under one lock.
     */
    journal_lock(&j->fence_lock);
    /* A fence that cannot be read cannot be compared: moving the tag could move it back. */
    rc = journal_fence_read(j, key, key_len, destination, repository, tag, &fence);
    if (rc < 0 || seq <= fence)
        goto out;
    /*
     * Synced: the caller moves the tag once this returns, and a fence lost in
     * a crash would let an older entry move it back after the restart.
     */
    journal_key_encode(seq, value);
    rocksdb_put_cf(j->db, synced ? j->write_synced : j->write_unsynced, j->cf[JOURNAL_CF_FENCES],
                   key, key_len, value, sizeof(value), &rerr);
    if (rerr != NULL) {
        rc = journal_rocksdb_error(j, "fence_raise", rerr);
        goto out;
    }
    log_debug("journal fence raised dir=%s dest=%s repo=%s tag=%s seq=%llu previous=%llu", j->dir,
              destination, repository, tag, (unsigned long long)seq, (unsigned long long)fence);
    rc = 1;
out:
    journal_unlock(&j->fence_lock);
    free(key);
    return rc;
}

int journal_rdb_fence_raise(struct journal *jn, const char *destination, const char *repository,
                            const char *tag, uint64_t seq)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    return fence_raise(j, destination, repository, tag, seq, true);
}

int journal_rdb_fence_raise_unsynced(struct journal *jn, const char *destination,
                                     const char *repository, const char *tag, uint64_t seq)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    return fence_raise(j, destination, repository, tag, seq, false);
}

/* ---- Job status: "destination\0repository\0digest" -> Ferry__JobStatus ---- */

/*
 * Check what a job status holds besides its key: a known state, a capped
 * last_error, and tags that are each present and capped. put refuses what
 * this refuses, so that decoding can refuse it too.
 */
static int journal_job_check(int state, const char *last_error, char *const *tags, size_t n_tags,
                             const char *node)
{
    if (state < JOURNAL_JOB_PENDING || state > JOURNAL_JOB_SUPERSEDED)
        return FERRY_EINVAL;
    if (journal_check_string(last_error, "last_error", false, JOURNAL_STRING_MAX, NULL) < 0)
        return FERRY_EINVAL;
    /* A node's name is logged and compared: a name, or none at all. */
    if (node != NULL && node[0] != '\0' && journal_node_check(node) < 0)
        return FERRY_EINVAL;
    if (n_tags > 0 && tags == NULL)
        return FERRY_EINVAL;
    for (size_t i = 0; i < n_tags; i++) {
        if (journal_check_string(tags[i], "tag", true, JOURNAL_STRING_MAX, NULL) < 0)
            return FERRY_EINVAL;
    }
    return 0;
}

/*
 * Decode one stored job status and check it as strictly as put checks a job,
 * and against its key. On failure *why names the problem and `out` is
 * untouched.
 */
int journal_job_decode(const char *key, size_t key_len, const char *value, size_t value_len,
                       struct journal_job *out, const char **why)
{
    Ferry__JobStatus *rec = NULL;
    char *expected = NULL;
    size_t expected_len = 0;
    int rc = FERRY_EPARSE;

    rec = ferry__job_status__unpack(&journal_pb_allocator, value_len, (const uint8_t *)value);
    if (rec == NULL) {
        *why = "value does not decode";
        goto out;
    }
    if (journal_tuple_key(rec->destination, rec->repository, rec->digest, &expected,
                          &expected_len) < 0) {
        *why = "destination, repository or digest is missing or too long";
        goto out;
    }
    if (expected_len != key_len || memcmp(expected, key, key_len) != 0) {
        *why = "destination, repository or digest does not match its key";
        goto out;
    }
    if (journal_job_check((int)rec->state, rec->last_error, rec->tags, rec->n_tags, rec->node) <
        0) {
        *why = "state is unknown, or last_error or a tag is missing or too long";
        goto out;
    }
    *out = (struct journal_job){
        .destination = xstrdup(rec->destination),
        .repository = xstrdup(rec->repository),
        .digest = xstrdup(rec->digest),
        .state = (enum journal_job_state)rec->state,
        .attempts = rec->attempts,
        .last_error = journal_optional(rec->last_error),
        .bytes = rec->bytes,
        .seq = rec->seq,
        .created_unix_ms = rec->created_unix_ms,
        .updated_unix_ms = rec->updated_unix_ms,
        .completed_unix_ms = rec->completed_unix_ms,
        .tags = rec->n_tags > 0 ? xcalloc(rec->n_tags, sizeof(char *)) : NULL,
        .n_tags = rec->n_tags,
        .node = journal_optional(rec->node),
    };
    for (size_t i = 0; i < rec->n_tags; i++)
        out->tags[i] = xstrdup(rec->tags[i]);
    rc = 0;
out:
    if (rec != NULL)
        ferry__job_status__free_unpacked(rec, &journal_pb_allocator);
    free(expected);
    return rc;
}

void journal_job_release(struct journal_job *job)
{
    if (job == NULL)
        return;
    free(job->destination);
    free(job->repository);
    free(job->digest);
    free(job->last_error);
    free(job->node);
    for (size_t i = 0; i < job->n_tags; i++)
        free(job->tags[i]);
    free(job->tags);
    memset(job, 0, sizeof(*job));
}

const char *journal_job_state_name(enum journal_job_state s)
{
    switch (s) {
    case JOURNAL_JOB_PENDING:
        return "PENDING";
    case JOURNAL_JOB_IN_PROGRESS:
        return "IN_PROGRESS";
    case JOURNAL_JOB_COMPLETE:
        return "COMPLETE";
    case JOURNAL_JOB_FAILED:
        return "FAILED";
    case JOURNAL_JOB_SUPERSEDED:
        return "SUPERSEDED";
    }
    return "UNKNOWN";
}

/* ---- The index of open jobs ---- */

bool journal_job_is_open(enum journal_job_state s)
{
    return s == JOURNAL_JOB_PENDING || s == JOURNAL_JOB_IN_PROGRESS || s == JOURNAL_JOB_FAILED;
}

/* Index or unindex the job record `key` as its state says, in `batch`. */
static void journal_open_jobs_note(struct journal_rdb *j, rocksdb_writebatch_t *batch,
                                   const char *key, size_t key_len, enum journal_job_state s)
{
    if (j->cf[JOURNAL_CF_OPEN_JOBS] == NULL)
        return;
    if (journal_job_is_open(s)) {
        char v = (char)s;
        rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_OPEN_JOBS], key, key_len, &v, 1);
    } else {
        rocksdb_writebatch_delete_cf(batch, j->cf[JOURNAL_CF_OPEN_JOBS], key, key_len);
    }
}

/* One pass of journal_open_jobs_build() over the job records. */
struct journal_open_jobs_pass {
    struct journal_rdb *j;
    rocksdb_writebatch_t *batch;
};

static int journal_open_jobs_visit(const char *key, size_t key_len, const char *value,
                                   size_t value_len, void *arg)
{
    struct journal_open_jobs_pass *pass = arg;
    struct journal_job job;
    const char *why = NULL;
    if (journal_job_decode(key, key_len, value, value_len, &job, &why) < 0)
        return 0; /* a corrupt record is found and named by the full scans */
    if (journal_job_is_open(job.state))
        journal_open_jobs_note(pass->j, pass->batch, key, key_len, job.state);
    journal_job_release(&job);
    return 0;
}

/* Whatever the index held before a rebuild goes (the batch's puts come after). */
static int journal_open_jobs_clear(const char *key, size_t key_len, const char *value,
                                   size_t value_len, void *arg)
{
    struct journal_open_jobs_pass *pass = arg;
    (void)value;
    (void)value_len;
    rocksdb_writebatch_delete_cf(pass->batch, pass->j->cf[JOURNAL_CF_OPEN_JOBS], key, key_len);
    return 0;
}

int journal_open_jobs_build(struct journal_rdb *j, rocksdb_writebatch_t *batch)
{
    struct journal_open_jobs_pass pass = {.j = j, .batch = batch};
    int rc = journal_iterate(j, JOURNAL_CF_OPEN_JOBS, NULL, 0, false, "upgrade",
                             journal_open_jobs_clear, &pass);
    if (rc < 0)
        return rc;
    return journal_iterate(j, JOURNAL_CF_JOBS, NULL, 0, false, "upgrade", journal_open_jobs_visit,
                           &pass);
}

uint8_t *journal_job_pack(const struct journal_job *job, size_t *size)
{
    Ferry__JobStatus rec = FERRY__JOB_STATUS__INIT;
    if (job == NULL ||
        journal_job_check((int)job->state, job->last_error, job->tags, job->n_tags, job->node) < 0)
        return NULL;
    rec.destination = job->destination;
    rec.repository = job->repository;
    rec.digest = job->digest;
    rec.state = (Ferry__JobStatus__State)job->state;
    rec.attempts = job->attempts;
    rec.last_error = (char *)journal_or_empty(job->last_error);
    rec.bytes = job->bytes;
    rec.seq = job->seq;
    rec.created_unix_ms = job->created_unix_ms;
    rec.updated_unix_ms = job->updated_unix_ms;
    rec.completed_unix_ms = job->completed_unix_ms;
    rec.n_tags = job->n_tags;
    rec.tags = job->tags;
    rec.node = (char *)journal_or_empty(job->node);
    *size = ferry__job_status__get_packed_size(&rec);
    uint8_t *packed = xmalloc(*size);
    ferry__job_status__pack(&rec, packed);
    return packed;
}

int journal_rdb_job_put(struct journal *jn, const struct journal_job *job)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *key = NULL;
    size_t key_len = 0, size = 0;
    uint8_t *packed = NULL;
    char *rerr = NULL;

    packed = journal_job_pack(job, &size);
    if (packed == NULL)
        return FERRY_EINVAL;
    int rc = journal_tuple_key_writable(j, job->destination, job->repository, job->digest, &key,
                                        &key_len);
    if (rc < 0)
        goto out;
    /*
     * Not synced: status changes often and on the loop thread, and one lost
     * in a crash is redone when the engine takes the job up again. The
     * index of open jobs changes in the same batch.
     */
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_JOBS], key, key_len, (const char *)packed,
                              size);
    journal_open_jobs_note(j, batch, key, key_len, job->state);
    rocksdb_write(j->db, j->write_unsynced, batch, &rerr);
    rocksdb_writebatch_destroy(batch);
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "job_put", rerr);
out:
    free(packed);
    free(key);
    return rc;
}

int journal_rdb_job_get(struct journal *jn, const char *destination, const char *repository,
                        const char *digest, struct journal_job *out)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char *key = NULL;
    size_t key_len = 0, len = 0;
    char *value = NULL;
    const char *why = NULL;

    memset(out, 0, sizeof(*out));
    int rc = journal_tuple_get(j, JOURNAL_CF_JOBS, destination, repository, digest, "job_get", &key,
                               &key_len, &value, &len);
    if (rc < 0)
        goto out;
    rc = journal_job_decode(key, key_len, value, len, out, &why);
    if (rc < 0)
        log_warn("journal job status is corrupt dir=%s dest=%s repo=%s digest=%s: %s", j->dir,
                 destination, repository, digest, why);
out:
    if (value != NULL)
        rocksdb_free(value);
    free(key);
    return rc;
}

/* One journal_job_scan_in() under way. */
struct journal_job_scan {
    struct journal_rdb *j;
    int (*cb)(const struct journal_job *job, void *arg);
    void *arg;
};

static int journal_job_visit(const char *key, size_t key_len, const char *value, size_t value_len,
                             void *arg)
{
    struct journal_job_scan *scan = arg;
    struct journal_job job;
    const char *why = NULL;

    int rc = journal_job_decode(key, key_len, value, value_len, &job, &why);
    if (rc < 0) {
        /*
         * The key up to its first NUL names the destination, if it is a
         * key of ours at all; ferry_printable() shows at most 64 bytes.
         */
        char shown[FERRY_PRINTABLE_MAX];
        char *destination = xstrndup(key, key_len < 65 ? key_len : 65);
        log_warn("journal job status is corrupt dir=%s dest=%s: %s", scan->j->dir,
                 ferry_printable(destination, shown), why);
        free(destination);
        return rc;
    }
    int stop = scan->cb(&job, scan->arg);
    journal_job_release(&job);
    return stop ? 1 : 0;
}

int journal_rdb_job_scan(struct journal *jn, int (*cb)(const struct journal_job *job, void *arg),
                         void *arg)
{
    return journal_rdb_job_scan_in(jn, NULL, NULL, cb, arg);
}

/* One journal_job_scan_open() under way. */
struct journal_open_scan {
    struct journal_rdb *j;
    int (*cb)(const struct journal_job *job, void *arg);
    void *arg;
};

/* Only the jobs that have not settled (for the full scan of an older journal, and as a check). */
static int journal_open_job_filter(const struct journal_job *job, void *arg)
{
    struct journal_open_scan *scan = arg;
    return journal_job_is_open(job->state) ? scan->cb(job, scan->arg) : 0;
}

static int journal_open_job_visit(const char *key, size_t key_len, const char *value,
                                  size_t value_len, void *arg)
{
    struct journal_open_scan *scan = arg;
    char *record = NULL;
    size_t len = 0;
    (void)value;
    (void)value_len;
    int rc = journal_cf_get(scan->j, JOURNAL_CF_JOBS, key, key_len, "job_scan", &record, &len);
    if (rc == FERRY_ENOTFOUND)
        return 0; /* cannot be: record and index change in one batch */
    if (rc < 0)
        return rc;
    /* The record has the last word (both change in one batch, so they agree). */
    struct journal_job_scan inner = {.j = scan->j, .cb = journal_open_job_filter, .arg = scan};
    rc = journal_job_visit(key, key_len, record, len, &inner);
    rocksdb_free(record);
    return rc;
}

int journal_rdb_job_scan_open(struct journal *jn,
                              int (*cb)(const struct journal_job *job, void *arg), void *arg)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    struct journal_open_scan scan = {.j = j, .cb = cb, .arg = arg};
    if (j->cf[JOURNAL_CF_OPEN_JOBS] == NULL || j->format < 4)
        return journal_rdb_job_scan(jn, journal_open_job_filter, &scan);
    return journal_iterate(j, JOURNAL_CF_OPEN_JOBS, NULL, 0, false, "job_scan",
                           journal_open_job_visit, &scan);
}

int journal_rdb_job_scan_in(struct journal *jn, const char *destination, const char *repository,
                            int (*cb)(const struct journal_job *job, void *arg), void *arg)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    struct journal_job_scan scan = {.j = j, .cb = cb, .arg = arg};
    char *prefix = NULL;
    size_t prefix_len = 0;

    if (destination != NULL)
        prefix = journal_tuple_prefix(destination, repository, &prefix_len);
    int rc = journal_iterate(j, JOURNAL_CF_JOBS, prefix, prefix_len, prefix != NULL, "job_scan",
                             journal_job_visit, &scan);
    free(prefix);
    return rc;
}
