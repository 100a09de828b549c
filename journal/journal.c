/*
 * journal.c: the journal's RocksDB store. Opening and closing (the column
 * families, the private directory, the seq numbering recovered, older
 * on-disk formats upgraded), the helpers every file of the module reads and
 * iterates RocksDB through, with its errors translated at this edge, and the
 * counters of `ferry journal stats`. Entries are journal_entry.c's, the
 * replication state journal_state.c's, retention journal_retention.c's.
 */
#include "journal/journal_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

/*
 * Memory and disk, sized on purpose (README, "Scale"). Eight families each
 * get a memtable of JOURNAL_WRITE_BUFFER, but all of them together hold at
 * most JOURNAL_MEMTABLES: past that RocksDB flushes the largest, so the
 * journal's memory does not grow with the catalog. The write-ahead log
 * holds every write not yet flushed, and a family written rarely (cursors)
 * would keep old log files alive: past JOURNAL_WAL_MAX RocksDB flushes the
 * families that pin the oldest file, so the log stays under that size plus
 * one memtable instead of growing to two thirds of the journal.
 */
/*
 * Reads go through one block cache of JOURNAL_BLOCK_CACHE, which also holds
 * the tables' index and filter blocks: left to RocksDB, each open table
 * keeps its index in memory (more tables, more memory, as the journal
 * grows) beside a default cache of its own.
 */
#define JOURNAL_BLOCK_CACHE  (4u << 20)
#define JOURNAL_OPEN_FILES   256
#define JOURNAL_WRITE_BUFFER (2u << 20)
#define JOURNAL_MEMTABLES    (4u << 20)
#define JOURNAL_WAL_MAX      (16u << 20)
#define JOURNAL_LOG_FILES    2
#define JOURNAL_LOG_SIZE     (1u << 20)

/* The tag state's family keeps its first name, "pollstate": once only the
 * poller wrote it; now every appended entry that names a tag does. */
static const char *const journal_cf_names[JOURNAL_CF_COUNT] = {
    "default", "entries", "dedup", "pollstate", "cursors", "fences", "jobs", "openjobs", "pollmemo",
};

/* ---- Helpers of the store ---- */

static void *journal_pb_alloc(void *data, size_t size)
{
    (void)data;
    return xmalloc(size);
}

static void journal_pb_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

ProtobufCAllocator journal_pb_allocator = {journal_pb_alloc, journal_pb_free, NULL};

void journal_key_encode(uint64_t seq, char key[JOURNAL_KEY_LEN])
{
    for (int i = JOURNAL_KEY_LEN - 1; i >= 0; i--) {
        key[i] = (char)(seq & 0xff);
        seq >>= 8;
    }
}

uint64_t journal_key_decode(const char *key)
{
    uint64_t seq = 0;
    for (int i = 0; i < JOURNAL_KEY_LEN; i++)
        seq = (seq << 8) | (unsigned char)key[i];
    return seq;
}

int journal_rocksdb_error(const struct journal_rdb *j, const char *op, char *errptr)
{
    int rc = -EIO;
    /* RocksDB names its lock file in both the other-process and same-process messages. */
    if (strstr(errptr, "/LOCK") != NULL || strstr(errptr, "lock file") != NULL ||
        strstr(errptr, "lock hold") != NULL)
        rc = -EBUSY;
    else if (strstr(errptr, "No such file or directory") != NULL)
        rc = -ENOENT;
    else if (strstr(errptr, "No space left") != NULL)
        rc = -ENOSPC;
    else if (strstr(errptr, "Permission denied") != NULL)
        rc = -EACCES;
    else if (strstr(errptr, "not a directory") != NULL || strstr(errptr, "Not a directory") != NULL)
        rc = -ENOTDIR;
    log_debug("journal rocksdb error op=%s dir=%s rc=%d: %s", op, j->dir, rc, errptr);
    rocksdb_free(errptr);
    return rc;
}

void journal_set_err(char **err, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL)
        return;
    free(*err);
    va_start(ap, fmt);
    *err = xvasprintf(fmt, ap);
    va_end(ap);
}

int journal_cf_get(struct journal_rdb *j, enum journal_cf cf, const char *key, size_t key_len,
                   const char *what, char **value, size_t *len)
{
    char *rerr = NULL;
    *value = NULL;
    *len = 0;
    if (j->cf[cf] == NULL)
        return FERRY_ENOTFOUND;
    *value = rocksdb_get_cf(j->db, j->read, j->cf[cf], key, key_len, len, &rerr);
    if (rerr != NULL)
        return journal_rocksdb_error(j, what, rerr);
    return *value == NULL ? FERRY_ENOTFOUND : 0;
}

int journal_read_seq(struct journal_rdb *j, enum journal_cf cf, const char *key, size_t key_len,
                     const char *what, uint64_t *seq)
{
    char *value = NULL;
    size_t len = 0;
    *seq = 0;
    int rc = journal_cf_get(j, cf, key, key_len, what, &value, &len);
    if (rc == FERRY_ENOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    if (len == JOURNAL_KEY_LEN) {
        *seq = journal_key_decode(value);
    } else {
        log_warn("journal %s record is corrupt dir=%s len=%zu", what, j->dir, len);
        rc = FERRY_EPARSE;
    }
    rocksdb_free(value);
    return rc;
}

int journal_iterate(struct journal_rdb *j, enum journal_cf cf, const char *seek, size_t seek_len,
                    bool prefix, const char *what, journal_visit_fn visit, void *arg)
{
    char *rerr = NULL;
    int rc = 0;

    if (j->cf[cf] == NULL)
        return 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[cf]);
    if (seek != NULL)
        rocksdb_iter_seek(it, seek, seek_len);
    else
        rocksdb_iter_seek_to_first(it);
    while (rocksdb_iter_valid(it)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        if (prefix && (key_len < seek_len || memcmp(key, seek, seek_len) != 0))
            break;
        const char *value = rocksdb_iter_value(it, &value_len);
        rc = visit(key, key_len, value, value_len, arg);
        if (rc != 0)
            break;
        rocksdb_iter_next(it);
    }
    if (rc > 0)
        rc = 0;
    if (rc == 0) {
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL)
            rc = journal_rocksdb_error(j, what, rerr);
    }
    rocksdb_iter_destroy(it);
    return rc;
}

void journal_lock(pthread_mutex_t *lock)
{
    int rc = pthread_mutex_lock(lock);
    if (rc != 0) {
        log_error("journal cannot take a lock: %s", strerror(rc));
        abort();
    }
}

void journal_unlock(pthread_mutex_t *lock)
{
    int rc = pthread_mutex_unlock(lock);
    if (rc != 0) {
        log_error("journal cannot release a lock: %s", strerror(rc));
        abort();
    }
}

/* ---- Opening ---- */

/* The last entry, checked, and the last_seq record: the seq numbering resumes at the higher. */
static int journal_recover_last_seq(struct journal_rdb *j, char **err)
{
    rocksdb_iterator_t *it = NULL;
    char *rerr = NULL;
    char *value = NULL;
    size_t len = 0;
    uint64_t last = 0;
    int rc = 0;

    if (j->cf[JOURNAL_CF_ENTRIES] != NULL) {
        it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_ENTRIES]);
        rocksdb_iter_seek_to_last(it);
        if (rocksdb_iter_valid(it)) {
            size_t key_len, value_len;
            const char *key = rocksdb_iter_key(it, &key_len);
            const char *entry = rocksdb_iter_value(it, &value_len);
            struct journal_entry e;
            const char *why = NULL;
            rc = journal_entry_decode(key, key_len, entry, value_len, &e, &why);
            if (rc < 0) {
                journal_set_err(err, "cannot open journal %s: the last entry is corrupt (%s)",
                                j->dir, why);
                goto out;
            }
            last = e.seq;
            journal_entry_release(&e);
        }
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL) {
            rc = journal_rocksdb_error(j, "recover", rerr);
            journal_set_err(err, "cannot open journal %s: %s", j->dir, ferry_strerror(rc));
            goto out;
        }
    }

    /*
     * The newest seq ever assigned: once retention has deleted every entry,
     * the entries alone could no longer tell where numbering stopped, and a
     * reused seq would break every consumer's cursor.
     */
    rc = journal_cf_get(j, JOURNAL_CF_DEFAULT, JOURNAL_LAST_SEQ_KEY, JOURNAL_LAST_SEQ_KEY_LEN,
                        "recover", &value, &len);
    if (rc == FERRY_ENOTFOUND) {
        rc = 0;
    } else if (rc < 0) {
        journal_set_err(err, "cannot open journal %s: %s", j->dir, ferry_strerror(rc));
        goto out;
    } else if (len != JOURNAL_KEY_LEN) {
        rc = FERRY_EPARSE;
        journal_set_err(err, "cannot open journal %s: its last_seq record is corrupt", j->dir);
        goto out;
    } else if (journal_key_decode(value) > last) {
        last = journal_key_decode(value);
    }
    atomic_store(&j->last_seq, last);
out:
    if (value != NULL)
        rocksdb_free(value);
    if (it != NULL)
        rocksdb_iter_destroy(it);
    return rc;
}

static bool journal_cf_is_ours(const char *name)
{
    for (int c = 0; c < JOURNAL_CF_COUNT; c++) {
        if (strcmp(name, journal_cf_names[c]) == 0)
            return true;
    }
    return false;
}

/*
 * The families of the database as RocksDB lists them, or none for a
 * database that does not exist yet (read-write only: read-only, that is an
 * error with *err).
 */
static int journal_list_families(struct journal_rdb *j, char ***existing, size_t *n_existing,
                                 char **err)
{
    char *rerr = NULL;
    *existing = rocksdb_list_column_families(j->options, j->dir, n_existing, &rerr);
    if (rerr == NULL)
        return 0;
    int rc = 0;
    if (j->read_only) {
        rc = journal_rocksdb_error(j, "list", rerr);
        journal_set_err(err, "cannot open journal %s: %s", j->dir, ferry_strerror(rc));
    } else {
        /* A database that does not exist yet has no families to list. */
        log_debug("journal new database dir=%s: %s", j->dir, rerr);
        rocksdb_free(rerr);
    }
    /* Even a failed listing returns an (empty) array to free. */
    if (*existing != NULL)
        rocksdb_list_column_families_destroy(*existing, *n_existing);
    *existing = NULL;
    *n_existing = 0;
    return rc;
}

/*
 * Open every family the database has (RocksDB refuses a read-write open that
 * leaves one out) plus, read-write, ours that are missing; read-only, ours
 * that exist.
 */
static int journal_open_db(struct journal_rdb *j, char **err)
{
    char *rerr = NULL;
    size_t n_existing = 0;
    char **existing = NULL;
    size_t n = 0;
    int rc = journal_list_families(j, &existing, &n_existing, err);
    if (rc < 0)
        return rc;

    size_t cap = JOURNAL_CF_COUNT + n_existing;
    const char **names = xcalloc(cap, sizeof(*names));
    rocksdb_column_family_handle_t **handles = xcalloc(cap, sizeof(*handles));
    const rocksdb_options_t **cf_options = xcalloc(cap, sizeof(*cf_options));
    int *slot = xcalloc(cap, sizeof(*slot));
    for (int c = 0; c < JOURNAL_CF_COUNT; c++) {
        bool found = false;
        for (size_t i = 0; i < n_existing; i++)
            found = found || strcmp(existing[i], journal_cf_names[c]) == 0;
        if (!found && j->read_only)
            continue;
        slot[n] = c;
        names[n++] = journal_cf_names[c];
    }
    for (size_t i = 0; i < n_existing && !j->read_only; i++) {
        if (journal_cf_is_ours(existing[i]))
            continue;
        slot[n] = -1;
        names[n++] = existing[i];
    }
    for (size_t i = 0; i < n; i++)
        cf_options[i] = j->options;

    if (j->read_only)
        j->db = rocksdb_open_for_read_only_column_families(j->options, j->dir, (int)n, names,
                                                           cf_options, handles, 0, &rerr);
    else
        j->db = rocksdb_open_column_families(j->options, j->dir, (int)n, names, cf_options, handles,
                                             &rerr);
    if (rerr != NULL) {
        j->db = NULL;
        rc = journal_rocksdb_error(j, "open", rerr);
        if (rc == -EBUSY)
            journal_set_err(
                err, "cannot open journal %s: it is locked by another process or handle", j->dir);
        else
            journal_set_err(err, "cannot open journal %s: %s", j->dir, ferry_strerror(rc));
        goto out;
    }
    j->other_cf = xcalloc(n, sizeof(*j->other_cf));
    for (size_t i = 0; i < n; i++) {
        if (slot[i] >= 0)
            j->cf[slot[i]] = handles[i];
        else
            j->other_cf[j->n_other_cf++] = handles[i];
    }
out:
    if (existing != NULL)
        rocksdb_list_column_families_destroy(existing, n_existing);
    free(names);
    free(handles);
    free(cf_options);
    free(slot);
    return rc;
}

/* ---- The on-disk format ---- */

/*
 * The on-disk format, a decimal number in the default family. 1 (no record):
 * the dedup keys were bare event ids; 2: "source\nid"; 3: the tag state is
 * the latest journaled value of every tag (before, only what the poller saw);
 * 4: the counters of entries and dedup keys (journal_int.h), merged by
 * uint64add, which an older build could not read, and the index of the jobs
 * that have not settled (journal_state.c). Opening an older journal
 * for writing rewrites the dedup keys (from 1), replays the entries it still
 * holds into the tag state (from 1 or 2), counts them and indexes the open
 * jobs (from 1, 2 or 3),
 * once (a crash halfway only means doing it again); a format newer than this
 * build knows is refused rather than misread.
 */
#define JOURNAL_FORMAT 4
static const char journal_format_key[] = "format";

/* The format the journal is in: 0 and *format (1 when it has no record), or *err. */
static int journal_format_read(struct journal_rdb *j, long *format, char **err)
{
    char *value = NULL;
    size_t len = 0;
    *format = 1;
    int rc = journal_cf_get(j, JOURNAL_CF_DEFAULT, journal_format_key,
                            sizeof(journal_format_key) - 1, "format", &value, &len);
    if (rc == FERRY_ENOTFOUND)
        return 0;
    if (rc < 0) {
        journal_set_err(err, "cannot open journal %s: %s", j->dir, ferry_strerror(rc));
        return rc;
    }
    char text[16] = {0};
    memcpy(text, value, len < sizeof(text) - 1 ? len : sizeof(text) - 1);
    rocksdb_free(value);
    char *end = NULL;
    *format = strtol(text, &end, 10);
    if (end == text || *end != '\0' || *format < 2) {
        journal_set_err(err, "cannot open journal %s: its format record is corrupt", j->dir);
        return FERRY_EPARSE;
    }
    return 0;
}

/* One pass of the upgrade over the entries, written every JOURNAL_WRITE_CHUNK entries. */
struct journal_upgrade_pass {
    struct journal_rdb *j;
    rocksdb_writebatch_t *batch;
    long format; /* the format being upgraded from */
    uint64_t moved;
};

static int journal_upgrade_entry(const char *key, size_t key_len, const char *value,
                                 size_t value_len, void *arg)
{
    struct journal_upgrade_pass *pass = arg;
    struct journal_rdb *j = pass->j;
    struct journal_entry e;
    const char *why = NULL;
    char *rerr = NULL;

    if (journal_entry_decode(key, key_len, value, value_len, &e, &why) < 0)
        return 0; /* a corrupt entry has no dedup key or tag worth keeping */
    if (pass->format < 2) {
        char *dedup = journal_dedup_key(e.source, e.event_id);
        rocksdb_writebatch_put_cf(pass->batch, j->cf[JOURNAL_CF_DEDUP], dedup, strlen(dedup), key,
                                  key_len);
        rocksdb_writebatch_delete_cf(pass->batch, j->cf[JOURNAL_CF_DEDUP], e.event_id,
                                     strlen(e.event_id));
        free(dedup);
    }
    char *tag_key = NULL;
    size_t tag_key_len = 0;
    /* In seq order, so the last entry naming a tag has the last word. */
    if (e.tag != NULL &&
        journal_tuple_key(e.source, e.repository, e.tag, &tag_key, &tag_key_len) == 0)
        journal_tag_apply(j, pass->batch, NULL, tag_key, tag_key_len, e.action, e.digest);
    journal_entry_release(&e);
    if (++pass->moved % JOURNAL_WRITE_CHUNK != 0)
        return 0;
    rocksdb_write(j->db, j->write_unsynced, pass->batch, &rerr);
    rocksdb_writebatch_clear(pass->batch);
    return rerr != NULL ? journal_rocksdb_error(j, "upgrade", rerr) : 0;
}

/* The keys of one family counted; with `first`, the first and last key as seqs too. */
struct journal_count {
    uint64_t *n;
    uint64_t *first;
    uint64_t *last;
};

static int journal_count_key(const char *key, size_t key_len, const char *value, size_t value_len,
                             void *arg)
{
    struct journal_count *count = arg;
    (void)value;
    (void)value_len;
    if (count->first != NULL && key_len == JOURNAL_KEY_LEN) {
        if (*count->n == 0)
            *count->first = journal_key_decode(key);
        *count->last = journal_key_decode(key);
    }
    (*count->n)++;
    return 0;
}

static const char *const journal_counter_keys[JOURNAL_COUNT_N] = {"count:entries", "count:dedup"};

static void journal_u64_le(uint64_t v, char out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (char)(v >> (8 * i));
}

void journal_count_add(struct journal_rdb *j, rocksdb_writebatch_t *batch, enum journal_counter c,
                       int64_t delta)
{
    char v[8];
    /* uint64add adds modulo 2^64: a two's complement operand takes away. */
    journal_u64_le((uint64_t)delta, v);
    const char *key = journal_counter_keys[c];
    rocksdb_writebatch_merge_cf(batch, j->cf[JOURNAL_CF_DEFAULT], key, strlen(key), v, sizeof(v));
}

/* A counter's value: 0 when it has none yet. */
static int journal_count_read(struct journal_rdb *j, enum journal_counter c, uint64_t *out)
{
    char *value = NULL;
    size_t len = 0;
    const char *key = journal_counter_keys[c];
    *out = 0;
    int rc = journal_cf_get(j, JOURNAL_CF_DEFAULT, key, strlen(key), "counter", &value, &len);
    if (rc == FERRY_ENOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    if (len != 8) {
        rocksdb_free(value);
        log_warn("journal counter %s is corrupt dir=%s", key, j->dir);
        return FERRY_EPARSE;
    }
    for (int i = 0; i < 8; i++)
        *out |= (uint64_t)(unsigned char)value[i] << (8 * i);
    rocksdb_free(value);
    return 0;
}

/* Format 4: count what the journal holds once, into `batch` (an absolute value, not a merge). */
static int journal_upgrade_counts(struct journal_rdb *j, rocksdb_writebatch_t *batch)
{
    uint64_t n[JOURNAL_COUNT_N] = {0};
    struct journal_count entries = {&n[JOURNAL_COUNT_ENTRIES], NULL, NULL};
    struct journal_count dedup = {&n[JOURNAL_COUNT_DEDUP], NULL, NULL};
    int rc = journal_iterate(j, JOURNAL_CF_ENTRIES, NULL, 0, false, "upgrade", journal_count_key,
                             &entries);
    if (rc == 0)
        rc = journal_iterate(j, JOURNAL_CF_DEDUP, NULL, 0, false, "upgrade", journal_count_key,
                             &dedup);
    for (int c = 0; c < JOURNAL_COUNT_N && rc == 0; c++) {
        char v[8];
        journal_u64_le(n[c], v);
        rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_DEFAULT], journal_counter_keys[c],
                                  strlen(journal_counter_keys[c]), v, sizeof(v));
    }
    return rc;
}

static int journal_upgrade(struct journal_rdb *j, char **err)
{
    struct journal_upgrade_pass pass = {.j = j};
    char *rerr = NULL;
    int rc = journal_format_read(j, &pass.format, err);
    if (rc < 0)
        return rc;
    if (pass.format > JOURNAL_FORMAT) {
        journal_set_err(err,
                        "cannot open journal %s: it is in format %ld, newer than this ferry "
                        "understands (%d)",
                        j->dir, pass.format, JOURNAL_FORMAT);
        return FERRY_EINVAL;
    }
    j->format = pass.format;
    if (pass.format == JOURNAL_FORMAT || j->read_only)
        return 0;

    pass.batch = rocksdb_writebatch_create();
    if (pass.format < 3)
        rc = journal_iterate(j, JOURNAL_CF_ENTRIES, NULL, 0, false, "upgrade",
                             journal_upgrade_entry, &pass);
    if (rc == 0)
        rc = journal_upgrade_counts(j, pass.batch);
    if (rc == 0)
        rc = journal_open_jobs_build(j, pass.batch);
    if (rc == 0) {
        char text[16];
        int n = snprintf(text, sizeof(text), "%d", JOURNAL_FORMAT);
        rocksdb_writebatch_put_cf(pass.batch, j->cf[JOURNAL_CF_DEFAULT], journal_format_key,
                                  sizeof(journal_format_key) - 1, text, (size_t)n);
        rocksdb_write(j->db, j->write_synced, pass.batch, &rerr);
        if (rerr != NULL)
            rc = journal_rocksdb_error(j, "upgrade", rerr);
    }
    rocksdb_writebatch_destroy(pass.batch);
    if (rc < 0) {
        journal_set_err(err, "cannot upgrade journal %s to format %d: %s", j->dir, JOURNAL_FORMAT,
                        ferry_strerror(rc));
        return rc;
    }
    j->format = JOURNAL_FORMAT;
    if (pass.moved > 0)
        log_warn("journal upgraded to format %d dir=%s from=%ld entries=%llu", JOURNAL_FORMAT,
                 j->dir, pass.format, (unsigned long long)pass.moved);
    return 0;
}

/* ---- Open and close ---- */

/*
 * Take group's and others' access to the journal away: its directory 0700,
 * its files at most 0600. New files get that from the umask; these are the
 * files an older Ferry, or another umask, left readable. One warning says
 * so; a file that cannot be changed is left to RocksDB to complain about.
 */
static void journal_make_private(const char *dir)
{
    struct stat st;
    size_t changed = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return; /* a journal not made yet */
    if (fstat(dfd, &st) == 0 && (st.st_mode & 077) != 0 && fchmod(dfd, 0700) == 0)
        changed++;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        if (close(dfd) < 0)
            log_debug("journal cannot close its directory dir=%s: %s", dir, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (st.st_mode & 077) != 0 && fchmodat(dfd, e->d_name, st.st_mode & 0700, 0) == 0)
            changed++;
    }
    if (closedir(d) < 0)
        log_debug("journal cannot close its directory dir=%s: %s", dir, strerror(errno));
    if (changed > 0)
        log_warn("journal was readable by group or others; made it private dir=%s changed=%zu", dir,
                 changed);
}

/* The journal's locks, both or neither: 0, or the error of the one that failed. */
static int journal_locks_init(struct journal_rdb *j)
{
    int rc = pthread_mutex_init(&j->append_lock, NULL);
    if (rc != 0)
        return -rc;
    rc = pthread_mutex_init(&j->fence_lock, NULL);
    if (rc != 0) {
        if (pthread_mutex_destroy(&j->append_lock) != 0)
            log_warn("journal cannot destroy a lock dir=%s", j->dir);
        return -rc;
    }
    j->locks_ready = true;
    return 0;
}

static void journal_locks_destroy(struct journal_rdb *j)
{
    if (!j->locks_ready)
        return;
    if (pthread_mutex_destroy(&j->append_lock) != 0 || pthread_mutex_destroy(&j->fence_lock) != 0)
        log_warn("journal cannot destroy a lock dir=%s", j->dir);
    j->locks_ready = false;
}

static void journal_options_init(struct journal_rdb *j)
{
    j->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(j->options, !j->read_only);
    rocksdb_options_set_create_missing_column_families(j->options, !j->read_only);
    rocksdb_options_set_write_buffer_size(j->options, JOURNAL_WRITE_BUFFER);
    rocksdb_options_set_db_write_buffer_size(j->options, JOURNAL_MEMTABLES);
    rocksdb_options_set_max_total_wal_size(j->options, JOURNAL_WAL_MAX);
    rocksdb_options_set_uint64add_merge_operator(j->options);
    rocksdb_options_set_keep_log_file_num(j->options, JOURNAL_LOG_FILES);
    rocksdb_options_set_max_log_file_size(j->options, JOURNAL_LOG_SIZE);
    rocksdb_options_set_info_log_level(j->options, 2 /* WARN_LEVEL */);
    rocksdb_options_set_max_open_files(j->options, JOURNAL_OPEN_FILES);
    j->cache = rocksdb_cache_create_lru(JOURNAL_BLOCK_CACHE);
    j->table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(j->table, j->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(j->table, 1);
    rocksdb_options_set_block_based_table_factory(j->options, j->table);
    j->write_synced = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(j->write_synced, 1);
    j->write_unsynced = rocksdb_writeoptions_create();
    j->read = rocksdb_readoptions_create();
}

int journal_open(const char *dir, const struct journal_options *opts, struct journal **out,
                 char **err)
{
    struct journal_rdb *j = NULL;
    int rc;

    *out = NULL;
    if (err != NULL)
        *err = NULL;
    if (dir == NULL || dir[0] == '\0') {
        journal_set_err(err, "cannot open journal: no directory given");
        return FERRY_EINVAL;
    }
    j = xcalloc(1, sizeof(*j));
    j->base.ops = &journal_rdb_ops;
    j->dir = xstrdup(dir);
    j->read_only = opts != NULL && opts->read_only;
    atomic_init(&j->last_seq, 0);
    journal_options_init(j);
    rc = journal_locks_init(j);
    if (rc < 0) {
        journal_set_err(err, "cannot open journal %s: %s", dir, ferry_strerror(rc));
        goto out;
    }

    if (!j->read_only)
        journal_make_private(dir);
    rc = journal_open_db(j, err);
    if (rc < 0)
        goto out;
    rc = journal_recover_last_seq(j, err);
    if (rc < 0)
        goto out;
    rc = journal_upgrade(j, err);
    if (rc < 0)
        goto out;
    log_debug("journal open dir=%s read_only=%d last_seq=%llu", dir, (int)j->read_only,
              (unsigned long long)atomic_load(&j->last_seq));
out:
    if (rc < 0) {
        journal_rdb_close(&j->base);
        return rc;
    }
    *out = &j->base;
    return 0;
}

void journal_rdb_close(struct journal *jn)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    if (j == NULL)
        return;
    for (int c = 0; c < JOURNAL_CF_COUNT; c++) {
        if (j->cf[c] != NULL)
            rocksdb_column_family_handle_destroy(j->cf[c]);
    }
    for (size_t i = 0; i < j->n_other_cf; i++)
        rocksdb_column_family_handle_destroy(j->other_cf[i]);
    free(j->other_cf);
    if (j->db != NULL)
        rocksdb_close(j->db);
    rocksdb_readoptions_destroy(j->read);
    rocksdb_writeoptions_destroy(j->write_synced);
    rocksdb_writeoptions_destroy(j->write_unsynced);
    rocksdb_options_destroy(j->options);
    rocksdb_block_based_options_destroy(j->table);
    rocksdb_cache_destroy(j->cache);
    journal_locks_destroy(j);
    free(j->dir);
    free(j);
}

/* ---- Counters ---- */

uint64_t journal_rdb_last_seq(struct journal *jn)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    return atomic_load(&j->last_seq);
}

/* The first or the last seq the entries family holds: 0 when it is empty. */
static uint64_t journal_edge_seq(struct journal_rdb *j, bool last)
{
    uint64_t seq = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_ENTRIES]);
    if (last)
        rocksdb_iter_seek_to_last(it);
    else
        rocksdb_iter_seek_to_first(it);
    if (rocksdb_iter_valid(it)) {
        size_t len = 0;
        const char *key = rocksdb_iter_key(it, &len);
        if (len == JOURNAL_KEY_LEN)
            seq = journal_key_decode(key);
    }
    rocksdb_iter_destroy(it);
    return seq;
}

/* What the journal's files hold on disk: its tables, and its write-ahead log. */
static void journal_disk_bytes(struct journal_rdb *j, struct journal_stats *out)
{
    for (int c = 0; c < JOURNAL_CF_COUNT; c++) {
        if (j->cf[c] == NULL)
            continue;
        char *v = rocksdb_property_value_cf(j->db, j->cf[c], "rocksdb.total-sst-files-size");
        if (v != NULL)
            out->table_bytes += strtoull(v, NULL, 10);
        rocksdb_free(v);
    }
    DIR *d = opendir(j->dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        struct stat st;
        if (len < 4 || strcmp(de->d_name + len - 4, ".log") != 0 ||
            fstatat(dirfd(d), de->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
            continue;
        out->wal_bytes += (uint64_t)st.st_size;
    }
    closedir(d);
}

int journal_rdb_get_stats(struct journal *jn, struct journal_stats *out)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    int rc = 0;
    memset(out, 0, sizeof(*out));
    if (j->format >= 4) {
        /* Maintained counters (journal_int.h): no scan, whatever the size. */
        rc = journal_count_read(j, JOURNAL_COUNT_ENTRIES, &out->entries);
        if (rc == 0)
            rc = journal_count_read(j, JOURNAL_COUNT_DEDUP, &out->dedup_keys);
        if (rc < 0)
            return rc;
        if (out->entries > 0) {
            out->first_seq = journal_edge_seq(j, false);
            out->last_seq = journal_edge_seq(j, true);
        }
    } else {
        /* An older journal opened read-only has no counters yet: count. */
        struct journal_count entries = {&out->entries, &out->first_seq, &out->last_seq};
        struct journal_count dedup = {&out->dedup_keys, NULL, NULL};
        rc = journal_iterate(j, JOURNAL_CF_ENTRIES, NULL, 0, false, "stats", journal_count_key,
                             &entries);
        if (rc == 0)
            rc = journal_iterate(j, JOURNAL_CF_DEDUP, NULL, 0, false, "stats", journal_count_key,
                                 &dedup);
        if (rc < 0)
            return rc;
    }
    journal_disk_bytes(j, out);
    return 0;
}

/* ---- The backend (journal_backend.h) ---- */

const struct journal_ops journal_rdb_ops = {
    .name = "rocksdb",
    .close = journal_rdb_close,
    .append = journal_rdb_append,
    .last_seq = journal_rdb_last_seq,
    .get = journal_rdb_get,
    .scan = journal_rdb_scan,
    .entry_set_ignored = journal_rdb_entry_set_ignored,
    .retain = journal_rdb_retain,
    .get_stats = journal_rdb_get_stats,
    .cursor_get = journal_rdb_cursor_get,
    .cursor_find = journal_rdb_cursor_find,
    .cursor_set = journal_rdb_cursor_set,
    .tagstate_get = journal_rdb_tagstate_get,
    .tagstate_put = journal_rdb_tagstate_put,
    .tagstate_scan = journal_rdb_tagstate_scan,
    .fence_get = journal_rdb_fence_get,
    .fence_raise = journal_rdb_fence_raise,
    .fence_raise_unsynced = journal_rdb_fence_raise_unsynced,
    .job_put = journal_rdb_job_put,
    .job_get = journal_rdb_job_get,
    .job_scan = journal_rdb_job_scan,
    .job_scan_open = journal_rdb_job_scan_open,
    .job_scan_in = journal_rdb_job_scan_in,
    .poll_memo_get = journal_rdb_poll_memo_get,
    .poll_memo_put = journal_rdb_poll_memo_put,
    .poll_memo_prune = journal_rdb_poll_memo_prune,
    .poll_memo_clear = journal_rdb_poll_memo_clear,
};
