#include "journal/journal.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

#include "ferry.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#define JOURNAL_EVENT_ID_MAX 512
#define JOURNAL_STRING_MAX   4096
#define JOURNAL_WRITE_BUFFER (4u << 20)
#define JOURNAL_LOG_FILES    2
#define JOURNAL_LOG_SIZE     (1u << 20)
/* Retention deletes in batches of this many entries, so memory stays bounded. */
#define JOURNAL_RETAIN_CHUNK 1024
#define JOURNAL_KEY_LEN      8

enum journal_cf {
    JOURNAL_CF_DEFAULT,
    JOURNAL_CF_ENTRIES,
    JOURNAL_CF_DEDUP,
    JOURNAL_CF_TAGSTATE,
    JOURNAL_CF_CURSORS,
    JOURNAL_CF_FENCES,
    JOURNAL_CF_JOBS,
    JOURNAL_CF_COUNT,
};

/* The tag state's family keeps its first name, "pollstate": once only the
 * poller wrote it; now every appended entry that names a tag does. */
static const char *const journal_cf_names[JOURNAL_CF_COUNT] = {
    "default", "entries", "dedup", "pollstate", "cursors", "fences", "jobs",
};

/*
 * The newest seq ever assigned, kept in the default column family and written
 * in every append batch: once retention has deleted every entry, the entries
 * alone could no longer tell where numbering stopped, and a reused seq would
 * break every consumer's cursor.
 */
static const char journal_last_seq_key[] = "last_seq";

struct journal {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_writeoptions_t *write_synced;
    rocksdb_writeoptions_t *write_unsynced;
    rocksdb_readoptions_t *read;
    /* NULL only in a read-only journal whose database lacks that family. */
    rocksdb_column_family_handle_t *cf[JOURNAL_CF_COUNT];
    /* Families someone else added; opened because RocksDB insists, never used. */
    rocksdb_column_family_handle_t **other_cf;
    size_t n_other_cf;
    char *dir;
    bool read_only;
    /*
     * Serialises appends, so that two threads can never hand out one seq
     * twice. Everything else only reads RocksDB, which is thread-safe, and
     * last_seq, which is atomic.
     */
    pthread_mutex_t append_lock;
    _Atomic uint64_t last_seq;
    /*
     * Serialises fence raises, whose read-compare-write must not interleave.
     * A lock of its own, so that a raise never waits for a group commit.
     */
    pthread_mutex_t fence_lock;
};

/* protobuf-c allocates through Ferry's family, so NULL from unpack means malformed. */
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

static ProtobufCAllocator journal_pb_allocator = {journal_pb_alloc, journal_pb_free, NULL};

static void journal_key_encode(uint64_t seq, char key[JOURNAL_KEY_LEN])
{
    for (int i = JOURNAL_KEY_LEN - 1; i >= 0; i--) {
        key[i] = (char)(seq & 0xff);
        seq >>= 8;
    }
}

static uint64_t journal_key_decode(const char *key)
{
    uint64_t seq = 0;
    for (int i = 0; i < JOURNAL_KEY_LEN; i++)
        seq = (seq << 8) | (unsigned char)key[i];
    return seq;
}

/*
 * Translate a RocksDB error string at the module edge: the text is logged,
 * the caller gets a code. Takes ownership of `errptr`.
 */
static int journal_rocksdb_error(const struct journal *j, const char *op, char *errptr)
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

static void journal_set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void journal_set_err(char **err, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL)
        return;
    free(*err);
    va_start(ap, fmt);
    *err = xvasprintf(fmt, ap);
    va_end(ap);
}

/* A string field: `required` ones must be non-empty; every one is capped. */
static int journal_check_string(const char *s, const char *name, bool required, size_t max,
                                char **err)
{
    if (s == NULL || s[0] == '\0') {
        if (!required)
            return 0;
        journal_set_err(err, "%s is missing", name);
        return FERRY_EINVAL;
    }
    if (strnlen(s, max + 1) > max) {
        journal_set_err(err, "%s is longer than %zu bytes", name, max);
        return FERRY_EINVAL;
    }
    return 0;
}

static bool journal_present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

int journal_event_validate(const struct journal_event *e, char **err)
{
    int rc;
    if (err != NULL)
        *err = NULL;
    if (e == NULL) {
        journal_set_err(err, "event is missing");
        return FERRY_EINVAL;
    }
    if (e->action != JOURNAL_PUSH && e->action != JOURNAL_DELETE) {
        journal_set_err(err, "action %d is neither push nor delete", (int)e->action);
        return FERRY_EINVAL;
    }
    if ((rc = journal_check_string(e->source, "source", true, JOURNAL_STRING_MAX, err)) < 0 ||
        (rc = journal_check_string(e->repository, "repository", true, JOURNAL_STRING_MAX, err)) <
            0 ||
        (rc = journal_check_string(e->event_id, "event_id", true, JOURNAL_EVENT_ID_MAX, err)) < 0 ||
        (rc = journal_check_string(e->digest, "digest", false, JOURNAL_STRING_MAX, err)) < 0 ||
        (rc = journal_check_string(e->tag, "tag", false, JOURNAL_STRING_MAX, err)) < 0 ||
        (rc = journal_check_string(e->media_type, "media_type", false, JOURNAL_STRING_MAX, err)) <
            0)
        return rc;
    if (e->if_changed && !journal_present(e->tag)) {
        journal_set_err(err, "an observation names no tag");
        return FERRY_EINVAL;
    }
    if (e->action == JOURNAL_PUSH && !journal_present(e->digest)) {
        journal_set_err(err, "digest is missing for a push");
        return FERRY_EINVAL;
    }
    if (e->action == JOURNAL_DELETE && !journal_present(e->digest) && !journal_present(e->tag)) {
        journal_set_err(err, "a delete names neither a digest nor a tag");
        return FERRY_EINVAL;
    }
    return 0;
}

/* A decoded optional string: absent (empty) becomes NULL. */
static char *journal_optional(const char *s)
{
    return journal_present(s) ? xstrdup(s) : NULL;
}

/*
 * Decode one stored entry and check it as strictly as an appended event, so
 * that nothing downstream ever sees a record append would have refused. On
 * failure *why names the problem and `out` is untouched.
 */
static int journal_decode(const char *key, size_t key_len, const char *value, size_t value_len,
                          struct journal_entry *out, const char **why)
{
    Ferry__JournalEntry *rec = NULL;
    struct journal_event check;
    int rc = FERRY_EPARSE;

    if (key_len != JOURNAL_KEY_LEN) {
        *why = "key is not an 8-byte seq";
        goto out;
    }
    rec = ferry__journal_entry__unpack(&journal_pb_allocator, value_len, (const uint8_t *)value);
    if (rec == NULL) {
        *why = "value does not decode";
        goto out;
    }
    if (rec->seq != journal_key_decode(key)) {
        *why = "seq does not match its key";
        goto out;
    }
    check = (struct journal_event){
        .action = (enum journal_action)rec->action,
        .source = rec->source,
        .repository = rec->repository,
        .digest = rec->digest,
        .tag = rec->tag,
        .media_type = rec->media_type,
        .event_id = rec->event_id,
    };
    if (journal_event_validate(&check, NULL) < 0) {
        *why = "a required field is missing or too long";
        goto out;
    }
    *out = (struct journal_entry){
        .seq = rec->seq,
        .action = (enum journal_action)rec->action,
        .source = xstrdup(rec->source),
        .repository = xstrdup(rec->repository),
        .digest = journal_optional(rec->digest),
        .tag = journal_optional(rec->tag),
        .media_type = journal_optional(rec->media_type),
        .event_id = xstrdup(rec->event_id),
        .received_unix_ms = rec->received_unix_ms,
        .event_unix_ms = rec->event_unix_ms,
        .ignored = journal_optional(rec->ignored),
    };
    rc = 0;
out:
    if (rec != NULL)
        ferry__journal_entry__free_unpacked(rec, &journal_pb_allocator);
    return rc;
}

void journal_entry_release(struct journal_entry *e)
{
    if (e == NULL)
        return;
    free(e->source);
    free(e->repository);
    free(e->digest);
    free(e->tag);
    free(e->media_type);
    free(e->event_id);
    free(e->ignored);
    memset(e, 0, sizeof(*e));
}

/* The last key and value of the entries family, checked: the seq numbering resumes there. */
static int journal_recover_last_seq(struct journal *j, char **err)
{
    rocksdb_iterator_t *it = NULL;
    char *rerr = NULL;
    uint64_t last = 0;
    int rc = 0;

    if (j->cf[JOURNAL_CF_ENTRIES] != NULL) {
        it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_ENTRIES]);
        rocksdb_iter_seek_to_last(it);
        if (rocksdb_iter_valid(it)) {
            size_t key_len, value_len;
            const char *key = rocksdb_iter_key(it, &key_len);
            const char *value = rocksdb_iter_value(it, &value_len);
            struct journal_entry e;
            const char *why = NULL;
            rc = journal_decode(key, key_len, value, value_len, &e, &why);
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

    size_t len = 0;
    char *value = rocksdb_get_cf(j->db, j->read, j->cf[JOURNAL_CF_DEFAULT], journal_last_seq_key,
                                 sizeof(journal_last_seq_key) - 1, &len, &rerr);
    if (rerr != NULL) {
        rc = journal_rocksdb_error(j, "recover", rerr);
        journal_set_err(err, "cannot open journal %s: %s", j->dir, ferry_strerror(rc));
        goto out;
    }
    if (value != NULL) {
        if (len != JOURNAL_KEY_LEN) {
            rocksdb_free(value);
            rc = FERRY_EPARSE;
            journal_set_err(err, "cannot open journal %s: its last_seq record is corrupt", j->dir);
            goto out;
        }
        uint64_t stored = journal_key_decode(value);
        rocksdb_free(value);
        if (stored > last)
            last = stored;
    }
    atomic_store(&j->last_seq, last);
out:
    if (it != NULL)
        rocksdb_iter_destroy(it);
    return rc;
}

/*
 * Open every family the database has (RocksDB refuses a read-write open that
 * leaves one out) plus, read-write, ours that are missing; read-only, ours
 * that exist.
 */
static int journal_open_db(struct journal *j, char **err)
{
    char *rerr = NULL;
    size_t n_existing = 0;
    char **existing = rocksdb_list_column_families(j->options, j->dir, &n_existing, &rerr);
    const char **names = NULL;
    rocksdb_column_family_handle_t **handles = NULL;
    const rocksdb_options_t **cf_options = NULL;
    int *slot = NULL;
    size_t n = 0;
    int rc = 0;

    if (rerr != NULL) {
        if (j->read_only) {
            rc = journal_rocksdb_error(j, "list", rerr);
            journal_set_err(err, "cannot open journal %s: %s", j->dir, ferry_strerror(rc));
            goto out;
        }
        /* A database that does not exist yet has no families to list. */
        log_debug("journal new database dir=%s: %s", j->dir, rerr);
        rocksdb_free(rerr);
        rerr = NULL;
        /* Even a failed listing returns an (empty) array to free. */
        if (existing != NULL)
            rocksdb_list_column_families_destroy(existing, n_existing);
        existing = NULL;
        n_existing = 0;
    }

    size_t cap = JOURNAL_CF_COUNT + n_existing;
    names = xcalloc(cap, sizeof(*names));
    handles = xcalloc(cap, sizeof(*handles));
    cf_options = xcalloc(cap, sizeof(*cf_options));
    slot = xcalloc(cap, sizeof(*slot));
    for (int c = 0; c < JOURNAL_CF_COUNT; c++) {
        bool found = false;
        for (size_t i = 0; i < n_existing; i++)
            found = found || strcmp(existing[i], journal_cf_names[c]) == 0;
        if (!found && j->read_only)
            continue;
        slot[n] = c;
        names[n++] = journal_cf_names[c];
    }
    if (!j->read_only) {
        for (size_t i = 0; i < n_existing; i++) {
            bool ours = false;
            for (int c = 0; c < JOURNAL_CF_COUNT; c++)
                ours = ours || strcmp(existing[i], journal_cf_names[c]) == 0;
            if (ours)
                continue;
            slot[n] = -1;
            names[n++] = existing[i];
        }
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

/* An event id is unique within its source only: the dedup key is
 * "source\nid" (a source name never holds a newline). */
static char *journal_dedup_key(const char *source, const char *event_id)
{
    return xasprintf("%s\n%s", source, event_id);
}

static int journal_tuple_key(const char *first, const char *second, const char *third, char **key,
                             size_t *key_len);
static char *journal_tagstate_digest(const char *value, size_t len);

/*
 * A tag state one append batch has set: the events after it in the batch
 * must see it, though the database will only once the batch is written.
 */
struct journal_tag_pending {
    char *key;
    size_t key_len;
    char *digest; /* NULL: the batch deleted the tag */
    UT_hash_handle hh;
};

static void journal_tag_pending_free(struct journal_tag_pending **pending)
{
    struct journal_tag_pending *p, *tmp;
    HASH_ITER(hh, *pending, p, tmp)
    {
        HASH_DEL(*pending, p);
        free(p->key);
        free(p->digest);
        free(p);
    }
}

/*
 * The latest journaled digest of a tag key, this batch's pending writes
 * first: 0 and *digest (NULL when the tag has none; caller frees), or a
 * negative code.
 */
static int journal_tag_current(struct journal *j, struct journal_tag_pending *pending,
                               const char *key, size_t key_len, char **digest)
{
    struct journal_tag_pending *p = NULL;
    char *rerr = NULL;
    size_t len = 0;

    *digest = NULL;
    HASH_FIND(hh, pending, key, key_len, p);
    if (p != NULL) {
        *digest = p->digest != NULL ? xstrdup(p->digest) : NULL;
        return 0;
    }
    char *value =
        rocksdb_get_cf(j->db, j->read, j->cf[JOURNAL_CF_TAGSTATE], key, key_len, &len, &rerr);
    if (rerr != NULL)
        return journal_rocksdb_error(j, "tagstate", rerr);
    if (value != NULL) {
        /* A corrupt record reads as no value: the entry is appended. */
        *digest = journal_tagstate_digest(value, len);
        rocksdb_free(value);
    }
    return 0;
}

/* Does an observation change what the journal last said of its tag? */
static bool journal_observation_changes(const struct journal_event *e, const char *current)
{
    if (e->action == JOURNAL_DELETE)
        return current != NULL;
    return current == NULL || strcmp(current, e->digest) != 0;
}

/* Record in `batch` (and in `pending`) what an appended entry says of its tag. */
static void journal_tag_apply(struct journal *j, rocksdb_writebatch_t *batch,
                              struct journal_tag_pending **pending, char *key, size_t key_len,
                              enum journal_action action, const char *digest)
{
    const char *value = action == JOURNAL_PUSH ? digest : NULL;
    if (value != NULL)
        rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_TAGSTATE], key, key_len, value,
                                  strlen(value));
    else
        rocksdb_writebatch_delete_cf(batch, j->cf[JOURNAL_CF_TAGSTATE], key, key_len);
    if (pending == NULL) {
        free(key);
        return;
    }
    struct journal_tag_pending *p = NULL;
    HASH_FIND(hh, *pending, key, key_len, p);
    if (p == NULL) {
        p = xcalloc(1, sizeof(*p));
        p->key = key;
        p->key_len = key_len;
        HASH_ADD_KEYPTR(hh, *pending, p->key, p->key_len, p);
    } else {
        free(key);
        free(p->digest);
    }
    p->digest = value != NULL ? xstrdup(value) : NULL;
}

/*
 * The on-disk format, a decimal number in the default family. 1 (no record):
 * the dedup keys were bare event ids; 2: "source\nid"; 3: the tag state is
 * the latest journaled value of every tag (before, only what the poller saw).
 * Opening an older journal for writing rewrites the dedup keys (from 1) and
 * replays the entries it still holds into the tag state (from 1 or 2), once
 * (a crash halfway only means doing it again); a format newer than this
 * build knows is refused rather than misread.
 */
#define JOURNAL_FORMAT 3
static const char journal_format_key[] = "format";

static int journal_upgrade(struct journal *j, char **err)
{
    char *rerr = NULL;
    size_t len = 0;
    int rc = 0;
    char *value = rocksdb_get_cf(j->db, j->read, j->cf[JOURNAL_CF_DEFAULT], journal_format_key,
                                 sizeof(journal_format_key) - 1, &len, &rerr);
    if (rerr != NULL) {
        rc = journal_rocksdb_error(j, "format", rerr);
        journal_set_err(err, "cannot open journal %s: %s", j->dir, ferry_strerror(rc));
        return rc;
    }
    long format = 1;
    if (value != NULL) {
        char text[16] = {0};
        memcpy(text, value, len < sizeof(text) - 1 ? len : sizeof(text) - 1);
        char *end = NULL;
        format = strtol(text, &end, 10);
        bool bad = end == text || *end != '\0' || format < 2;
        rocksdb_free(value);
        if (bad) {
            journal_set_err(err, "cannot open journal %s: its format record is corrupt", j->dir);
            return FERRY_EPARSE;
        }
    }
    if (format > JOURNAL_FORMAT) {
        journal_set_err(err,
                        "cannot open journal %s: it is in format %ld, newer than this ferry "
                        "understands (%d)",
                        j->dir, format, JOURNAL_FORMAT);
        return FERRY_EINVAL;
    }
    if (format == JOURNAL_FORMAT || j->read_only)
        return 0;

    uint64_t moved = 0;
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_ENTRIES]);
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        const char *val = rocksdb_iter_value(it, &value_len);
        struct journal_entry e;
        const char *why = NULL;
        if (journal_decode(key, key_len, val, value_len, &e, &why) < 0)
            continue; /* a corrupt entry has no dedup key or tag worth keeping */
        if (format < 2) {
            char *dedup = journal_dedup_key(e.source, e.event_id);
            rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_DEDUP], dedup, strlen(dedup), key,
                                      key_len);
            rocksdb_writebatch_delete_cf(batch, j->cf[JOURNAL_CF_DEDUP], e.event_id,
                                         strlen(e.event_id));
            free(dedup);
        }
        char *tag_key = NULL;
        size_t tag_key_len = 0;
        /* In seq order, so the last entry naming a tag has the last word. */
        if (e.tag != NULL &&
            journal_tuple_key(e.source, e.repository, e.tag, &tag_key, &tag_key_len) == 0)
            journal_tag_apply(j, batch, NULL, tag_key, tag_key_len, e.action, e.digest);
        journal_entry_release(&e);
        if (++moved % JOURNAL_RETAIN_CHUNK == 0) {
            rocksdb_write(j->db, j->write_unsynced, batch, &rerr);
            rocksdb_writebatch_clear(batch);
            if (rerr != NULL)
                rc = journal_rocksdb_error(j, "upgrade", rerr);
        }
    }
    if (rc == 0) {
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL)
            rc = journal_rocksdb_error(j, "upgrade", rerr);
    }
    rocksdb_iter_destroy(it);
    if (rc == 0) {
        char text[16];
        int n = snprintf(text, sizeof(text), "%d", JOURNAL_FORMAT);
        rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_DEFAULT], journal_format_key,
                                  sizeof(journal_format_key) - 1, text, (size_t)n);
        rocksdb_write(j->db, j->write_synced, batch, &rerr);
        if (rerr != NULL)
            rc = journal_rocksdb_error(j, "upgrade", rerr);
    }
    rocksdb_writebatch_destroy(batch);
    if (rc < 0) {
        journal_set_err(err, "cannot upgrade journal %s to format %d: %s", j->dir, JOURNAL_FORMAT,
                        ferry_strerror(rc));
        return rc;
    }
    if (moved > 0)
        log_warn("journal upgraded to format %d dir=%s from=%ld entries=%llu", JOURNAL_FORMAT,
                 j->dir, format, (unsigned long long)moved);
    return 0;
}

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
        close(dfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (st.st_mode & 077) != 0 && fchmodat(dfd, e->d_name, st.st_mode & 0700, 0) == 0)
            changed++;
    }
    closedir(d);
    if (changed > 0)
        log_warn("journal was readable by group or others; made it private dir=%s changed=%zu", dir,
                 changed);
}

int journal_open(const char *dir, const struct journal_options *opts, struct journal **out,
                 char **err)
{
    struct journal *j = NULL;
    int rc;

    *out = NULL;
    if (err != NULL)
        *err = NULL;
    if (dir == NULL || dir[0] == '\0') {
        journal_set_err(err, "cannot open journal: no directory given");
        return FERRY_EINVAL;
    }
    j = xcalloc(1, sizeof(*j));
    j->dir = xstrdup(dir);
    j->read_only = opts != NULL && opts->read_only;
    pthread_mutex_init(&j->append_lock, NULL);
    pthread_mutex_init(&j->fence_lock, NULL);
    atomic_init(&j->last_seq, 0);

    j->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(j->options, !j->read_only);
    rocksdb_options_set_create_missing_column_families(j->options, !j->read_only);
    rocksdb_options_set_write_buffer_size(j->options, JOURNAL_WRITE_BUFFER);
    rocksdb_options_set_keep_log_file_num(j->options, JOURNAL_LOG_FILES);
    rocksdb_options_set_max_log_file_size(j->options, JOURNAL_LOG_SIZE);
    rocksdb_options_set_info_log_level(j->options, 2 /* WARN_LEVEL */);
    j->write_synced = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(j->write_synced, 1);
    j->write_unsynced = rocksdb_writeoptions_create();
    j->read = rocksdb_readoptions_create();

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
        journal_close(j);
        return rc;
    }
    *out = j;
    return 0;
}

void journal_close(struct journal *j)
{
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
    pthread_mutex_destroy(&j->append_lock);
    pthread_mutex_destroy(&j->fence_lock);
    free(j->dir);
    free(j);
}

/*
 * The event ids of one batch, to catch a repeat inside it before it reaches
 * RocksDB (the batch is not visible to reads until written). Open addressing
 * over borrowed strings.
 */
struct journal_id_set {
    const char **slots;
    size_t mask;
};

static void journal_id_set_init(struct journal_id_set *s, size_t n)
{
    size_t size = 8;
    while (size < 2 * n)
        size *= 2;
    s->slots = xcalloc(size, sizeof(*s->slots));
    s->mask = size - 1;
}

/* Adds `id`; false when it was already there. */
static bool journal_id_set_add(struct journal_id_set *s, const char *id)
{
    uint64_t h = 14695981039346656037ull;
    for (const char *c = id; *c != '\0'; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    for (size_t i = (size_t)h & s->mask;; i = (i + 1) & s->mask) {
        if (s->slots[i] == NULL) {
            s->slots[i] = id;
            return true;
        }
        if (strcmp(s->slots[i], id) == 0)
            return false;
    }
}

static const char *journal_or_empty(const char *s)
{
    return s != NULL ? s : "";
}

int journal_append(struct journal *j, const struct journal_event *events, size_t n, uint64_t *seqs,
                   char **err)
{
    struct journal_id_set seen = {NULL, 0};
    struct journal_tag_pending *pending = NULL;
    rocksdb_writebatch_t *batch = NULL;
    uint8_t *packed = NULL;
    size_t packed_cap = 0;
    char **dedup_keys = NULL;
    char *rerr = NULL;
    bool locked = false;
    int rc = 0;

    if (err != NULL)
        *err = NULL;
    if (n == 0)
        return 0;
    if (events == NULL || seqs == NULL) {
        journal_set_err(err, "no events given");
        return FERRY_EINVAL;
    }
    memset(seqs, 0, n * sizeof(*seqs));
    if (j->read_only) {
        journal_set_err(err, "journal %s is open read-only", j->dir);
        return -EROFS;
    }
    for (size_t i = 0; i < n; i++) {
        char *why = NULL;
        rc = journal_event_validate(&events[i], &why);
        if (rc < 0) {
            journal_set_err(err, "event %zu: %s", i, why);
            free(why);
            return rc;
        }
    }

    dedup_keys = xcalloc(n, sizeof(*dedup_keys));
    pthread_mutex_lock(&j->append_lock);
    locked = true;
    int64_t now = clock_unix_ms();
    uint64_t first = atomic_load(&j->last_seq) + 1;
    uint64_t next = first;
    journal_id_set_init(&seen, n);
    batch = rocksdb_writebatch_create();
    for (size_t i = 0; i < n; i++) {
        const struct journal_event *e = &events[i];
        dedup_keys[i] = journal_dedup_key(e->source, e->event_id);
        size_t id_len = strlen(dedup_keys[i]);
        if (!journal_id_set_add(&seen, dedup_keys[i]))
            continue;
        size_t found_len = 0;
        char *found = rocksdb_get_cf(j->db, j->read, j->cf[JOURNAL_CF_DEDUP], dedup_keys[i], id_len,
                                     &found_len, &rerr);
        if (rerr != NULL) {
            rc = journal_rocksdb_error(j, "dedup", rerr);
            journal_set_err(err, "cannot read the journal's dedup keys: %s", ferry_strerror(rc));
            goto out;
        }
        if (found != NULL) {
            rocksdb_free(found);
            continue;
        }
        char *tag_key = NULL;
        size_t tag_key_len = 0;
        if (journal_present(e->tag) &&
            journal_tuple_key(e->source, e->repository, e->tag, &tag_key, &tag_key_len) < 0)
            tag_key = NULL; /* validated above: cannot happen */
        if (e->if_changed && tag_key != NULL) {
            char *current = NULL;
            rc = journal_tag_current(j, pending, tag_key, tag_key_len, &current);
            bool changes = rc == 0 && journal_observation_changes(e, current);
            free(current);
            if (rc < 0) {
                free(tag_key);
                journal_set_err(err, "cannot read the journal's tag state: %s", ferry_strerror(rc));
                goto out;
            }
            if (!changes) {
                free(tag_key);
                continue;
            }
        }

        uint64_t seq = next++;
        Ferry__JournalEntry rec = FERRY__JOURNAL_ENTRY__INIT;
        rec.seq = seq;
        rec.action = (Ferry__JournalEntry__Action)e->action;
        rec.source = (char *)e->source;
        rec.repository = (char *)e->repository;
        rec.digest = (char *)journal_or_empty(e->digest);
        rec.tag = (char *)journal_or_empty(e->tag);
        rec.media_type = (char *)journal_or_empty(e->media_type);
        rec.event_id = (char *)e->event_id;
        rec.received_unix_ms = now;
        rec.event_unix_ms = e->event_unix_ms;
        size_t size = ferry__journal_entry__get_packed_size(&rec);
        if (size > packed_cap) {
            packed_cap = size;
            packed = xrealloc(packed, packed_cap);
        }
        ferry__journal_entry__pack(&rec, packed);

        char key[JOURNAL_KEY_LEN];
        journal_key_encode(seq, key);
        rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_ENTRIES], key, sizeof(key),
                                  (const char *)packed, size);
        rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_DEDUP], dedup_keys[i], id_len, key,
                                  sizeof(key));
        if (tag_key != NULL)
            journal_tag_apply(j, batch, &pending, tag_key, tag_key_len, e->action, e->digest);
        seqs[i] = seq;
    }
    /* Only duplicates: they are on disk already, since every append is synced. */
    if (next == first)
        goto out;

    char last_key[JOURNAL_KEY_LEN];
    journal_key_encode(next - 1, last_key);
    rocksdb_writebatch_put_cf(batch, j->cf[JOURNAL_CF_DEFAULT], journal_last_seq_key,
                              sizeof(journal_last_seq_key) - 1, last_key, sizeof(last_key));
    rocksdb_write(j->db, j->write_synced, batch, &rerr);
    if (rerr != NULL) {
        rc = journal_rocksdb_error(j, "append", rerr);
        journal_set_err(err, "cannot write to journal %s: %s", j->dir, ferry_strerror(rc));
        goto out;
    }
    atomic_store(&j->last_seq, next - 1);
    log_debug("journal append dir=%s events=%zu first_seq=%llu last_seq=%llu", j->dir, n,
              (unsigned long long)first, (unsigned long long)(next - 1));
out:
    if (rc < 0)
        memset(seqs, 0, n * sizeof(*seqs));
    if (locked)
        pthread_mutex_unlock(&j->append_lock);
    if (batch != NULL)
        rocksdb_writebatch_destroy(batch);
    journal_tag_pending_free(&pending);
    free(seen.slots);
    free(packed);
    for (size_t i = 0; dedup_keys != NULL && i < n; i++)
        free(dedup_keys[i]);
    free(dedup_keys);
    return rc;
}

uint64_t journal_last_seq(struct journal *j)
{
    return atomic_load(&j->last_seq);
}

int journal_get(struct journal *j, uint64_t seq, struct journal_entry *out)
{
    char key[JOURNAL_KEY_LEN];
    char *rerr = NULL;
    size_t len = 0;
    const char *why = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (j->cf[JOURNAL_CF_ENTRIES] == NULL)
        return FERRY_ENOTFOUND;
    journal_key_encode(seq, key);
    char *value =
        rocksdb_get_cf(j->db, j->read, j->cf[JOURNAL_CF_ENTRIES], key, sizeof(key), &len, &rerr);
    if (rerr != NULL)
        return journal_rocksdb_error(j, "get", rerr);
    if (value == NULL)
        return FERRY_ENOTFOUND;
    rc = journal_decode(key, sizeof(key), value, len, out, &why);
    if (rc < 0)
        log_warn("journal entry is corrupt dir=%s seq=%llu: %s", j->dir, (unsigned long long)seq,
                 why);
    rocksdb_free(value);
    return rc;
}

#define JOURNAL_IGNORED_MAX 1024

int journal_entry_set_ignored(struct journal *j, uint64_t seq, const char *reason)
{
    char key[JOURNAL_KEY_LEN];
    char *rerr = NULL;
    size_t len = 0;
    Ferry__JournalEntry *rec = NULL;
    uint8_t *packed = NULL;
    char *kept = NULL;
    int rc = 0;

    if (reason == NULL || reason[0] == '\0')
        return FERRY_EINVAL;
    if (j->read_only)
        return -EROFS;
    journal_key_encode(seq, key);
    char *value =
        rocksdb_get_cf(j->db, j->read, j->cf[JOURNAL_CF_ENTRIES], key, sizeof(key), &len, &rerr);
    if (rerr != NULL)
        return journal_rocksdb_error(j, "set_ignored", rerr);
    if (value == NULL)
        return FERRY_ENOTFOUND;
    rec = ferry__journal_entry__unpack(&journal_pb_allocator, len, (const uint8_t *)value);
    rocksdb_free(value);
    if (rec == NULL) {
        rc = FERRY_EPARSE;
        goto out;
    }
    /* A newline would break `ferry journal ls`'s one line per entry. */
    kept = xstrndup(reason, JOURNAL_IGNORED_MAX);
    for (char *c = kept; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    char *was = rec->ignored;
    rec->ignored = kept;
    size_t size = ferry__journal_entry__get_packed_size(rec);
    packed = xmalloc(size);
    ferry__journal_entry__pack(rec, packed);
    rec->ignored = was;
    rocksdb_put_cf(j->db, j->write_unsynced, j->cf[JOURNAL_CF_ENTRIES], key, sizeof(key),
                   (const char *)packed, size, &rerr);
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "set_ignored", rerr);
out:
    if (rec != NULL)
        ferry__journal_entry__free_unpacked(rec, &journal_pb_allocator);
    free(packed);
    free(kept);
    return rc;
}

int journal_scan(struct journal *j, uint64_t after, size_t limit,
                 int (*cb)(const struct journal_entry *e, void *arg), void *arg)
{
    rocksdb_iterator_t *it;
    char key[JOURNAL_KEY_LEN];
    char *rerr = NULL;
    size_t done = 0;
    int rc = 0;

    if (j->cf[JOURNAL_CF_ENTRIES] == NULL || after == UINT64_MAX)
        return 0;
    it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_ENTRIES]);
    journal_key_encode(after + 1, key);
    for (rocksdb_iter_seek(it, key, sizeof(key)); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t key_len, value_len;
        const char *k = rocksdb_iter_key(it, &key_len);
        const char *v = rocksdb_iter_value(it, &value_len);
        struct journal_entry e;
        const char *why = NULL;
        if (limit != 0 && done == limit)
            break;
        rc = journal_decode(k, key_len, v, value_len, &e, &why);
        if (rc < 0) {
            log_warn("journal entry is corrupt dir=%s seq=%llu: %s", j->dir,
                     key_len == JOURNAL_KEY_LEN ? (unsigned long long)journal_key_decode(k) : 0ull,
                     why);
            goto out;
        }
        done++;
        int stop = cb(&e, arg);
        journal_entry_release(&e);
        if (stop)
            goto out;
    }
    rocksdb_iter_get_error(it, &rerr);
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "scan", rerr);
out:
    rocksdb_iter_destroy(it);
    return rc;
}

static int journal_check_name(const char *s)
{
    return journal_check_string(s, "name", true, JOURNAL_STRING_MAX, NULL);
}

/*
 * Look `key` up in column family `cf`: 0 and *value (free with rocksdb_free)
 * when found, FERRY_ENOTFOUND when absent (or the family does not exist in
 * an older, read-only journal), or the translated RocksDB error.
 */
static int journal_cf_get(struct journal *j, int cf, const char *key, size_t key_len,
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

/* A seq stored as an 8-byte value under `key` (cursors, fences): 0 when absent. */
static int journal_read_seq(struct journal *j, int cf, const char *key, size_t key_len,
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

int journal_cursor_get(struct journal *j, const char *name, uint64_t *seq)
{
    *seq = 0;
    if (journal_check_name(name) < 0)
        return FERRY_EINVAL;
    return journal_read_seq(j, JOURNAL_CF_CURSORS, name, strlen(name), "cursor_get", seq);
}

int journal_cursor_find(struct journal *j, const char *name, uint64_t *seq)
{
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

int journal_cursor_set(struct journal *j, const char *name, uint64_t seq)
{
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

/*
 * Keys made of three names are "first\0second\0third": none of the three can
 * hold a NUL, so the encoding is unambiguous, "first\0" prefixes exactly the
 * records of one first name, and keys sort as the (first, second, third)
 * tuples do. Each name must be non-empty and at most JOURNAL_STRING_MAX bytes.
 */
static int journal_tuple_key(const char *first, const char *second, const char *third, char **key,
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

/* Poller state keys are "source\0repository\0tag". */
static int journal_tagstate_key(const char *source, const char *repository, const char *tag,
                                char **key, size_t *key_len)
{
    return journal_tuple_key(source, repository, tag, key, key_len);
}

/* A stored digest: non-empty, capped, no NUL. Returns a fresh string or NULL. */
static char *journal_tagstate_digest(const char *value, size_t len)
{
    if (len == 0 || len > JOURNAL_STRING_MAX || memchr(value, '\0', len) != NULL)
        return NULL;
    return xstrndup(value, len);
}

int journal_tagstate_get(struct journal *j, const char *source, const char *repository,
                         const char *tag, char **digest)
{
    char *key = NULL;
    size_t key_len = 0, len = 0;
    char *value = NULL;
    int rc;

    *digest = NULL;
    rc = journal_tagstate_key(source, repository, tag, &key, &key_len);
    if (rc < 0)
        goto out;
    rc = journal_cf_get(j, JOURNAL_CF_TAGSTATE, key, key_len, "tagstate_get", &value, &len);
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

int journal_tagstate_put(struct journal *j, const char *source, const char *repository,
                         const char *tag, const char *digest)
{
    char *key = NULL;
    size_t key_len = 0;
    char *rerr = NULL;
    int rc;

    if (digest != NULL &&
        journal_check_string(digest, "digest", true, JOURNAL_STRING_MAX, NULL) < 0)
        return FERRY_EINVAL;
    rc = journal_tagstate_key(source, repository, tag, &key, &key_len);
    if (rc < 0)
        goto out;
    if (j->read_only) {
        rc = -EROFS;
        goto out;
    }
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

int journal_tagstate_scan(struct journal *j, const char *source, const char *repository,
                          int (*cb)(const char *repository, const char *tag, const char *digest,
                                    void *arg),
                          void *arg)
{
    rocksdb_iterator_t *it = NULL;
    char *rerr = NULL;
    int rc = 0;

    if (journal_check_string(source, "source", true, JOURNAL_STRING_MAX, NULL) < 0 ||
        (repository != NULL &&
         journal_check_string(repository, "repository", true, JOURNAL_STRING_MAX, NULL) < 0))
        return FERRY_EINVAL;
    if (j->cf[JOURNAL_CF_TAGSTATE] == NULL)
        return 0;
    /* The prefix includes the source's terminating NUL, and the
     * repository's when there is one: keys are "source\0repo\0tag". */
    size_t source_len = strlen(source) + 1;
    size_t prefix_len = source_len + (repository != NULL ? strlen(repository) + 1 : 0);
    char *prefix = xmalloc(prefix_len);
    memcpy(prefix, source, source_len);
    if (repository != NULL)
        memcpy(prefix + source_len, repository, prefix_len - source_len);
    it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_TAGSTATE]);
    for (rocksdb_iter_seek(it, prefix, prefix_len); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        const char *value = rocksdb_iter_value(it, &value_len);
        if (key_len < prefix_len || memcmp(key, prefix, prefix_len) != 0)
            break;
        const char *rest = key + source_len;
        size_t rest_len = key_len - source_len;
        const char *sep = memchr(rest, '\0', rest_len);
        size_t repo_len = sep != NULL ? (size_t)(sep - rest) : 0;
        size_t tag_len = sep != NULL ? rest_len - repo_len - 1 : 0;
        char *digest = journal_tagstate_digest(value, value_len);
        if (sep == NULL || repo_len == 0 || tag_len == 0 ||
            memchr(sep + 1, '\0', tag_len) != NULL || digest == NULL) {
            free(digest);
            log_warn("journal tag state is corrupt dir=%s source=%s", j->dir, source);
            rc = FERRY_EPARSE;
            goto out;
        }
        char *repository = xstrndup(rest, repo_len);
        char *tag = xstrndup(sep + 1, tag_len);
        int stop = cb(repository, tag, digest, arg);
        free(repository);
        free(tag);
        free(digest);
        if (stop)
            goto out;
    }
    rocksdb_iter_get_error(it, &rerr);
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "tagstate_scan", rerr);
out:
    rocksdb_iter_destroy(it);
    free(prefix);
    return rc;
}

/* The lowest cursor; *any false when there is none. */
static int journal_min_cursor(struct journal *j, uint64_t *min, bool *any)
{
    rocksdb_iterator_t *it;
    char *rerr = NULL;
    int rc = 0;

    *min = UINT64_MAX;
    *any = false;
    it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_CURSORS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t len;
        const char *value = rocksdb_iter_value(it, &len);
        if (len != JOURNAL_KEY_LEN) {
            log_warn("journal cursor is corrupt dir=%s len=%zu", j->dir, len);
            rc = FERRY_EPARSE;
            goto out;
        }
        uint64_t seq = journal_key_decode(value);
        if (seq < *min)
            *min = seq;
        *any = true;
    }
    rocksdb_iter_get_error(it, &rerr);
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "retain", rerr);
out:
    rocksdb_iter_destroy(it);
    return rc;
}

/* True when an entry received at `received` is more than `max_age_ms` older than `now`. */
static bool journal_older_than(int64_t received, int64_t now, uint64_t max_age_ms)
{
    if (received >= now)
        return false;
    return (uint64_t)now - (uint64_t)received > max_age_ms;
}

/* Write the pending deletions of retention (not synced: lost ones are made again next time). */
static int journal_retain_flush(struct journal *j, rocksdb_writebatch_t *batch, size_t *pending,
                                uint64_t *written)
{
    char *rerr = NULL;
    if (*pending == 0)
        return 0;
    rocksdb_write(j->db, j->write_unsynced, batch, &rerr);
    if (rerr != NULL)
        return journal_rocksdb_error(j, "retain", rerr);
    rocksdb_writebatch_clear(batch);
    *written += *pending;
    *pending = 0;
    return 0;
}

int journal_retain(struct journal *j, uint64_t max_age_ms, int64_t now_unix_ms, uint64_t *deleted)
{
    rocksdb_iterator_t *it = NULL;
    rocksdb_writebatch_t *batch = NULL;
    char first_key[JOURNAL_KEY_LEN], last_key[JOURNAL_KEY_LEN];
    char *rerr = NULL;
    uint64_t min_cursor, written = 0;
    size_t pending = 0;
    bool any;
    int rc, flush_rc;

    if (deleted != NULL)
        *deleted = 0;
    if (j->read_only)
        return -EROFS;
    rc = journal_min_cursor(j, &min_cursor, &any);
    if (rc < 0 || !any)
        return rc;

    /*
     * Retention removes a prefix of the journal and stops at the first entry
     * it must keep, even if a later one is old enough (a clock that stepped
     * back), so that the entries that remain stay consecutive. A corrupt
     * entry stops it too: what came before still goes, and the error is
     * returned.
     */
    batch = rocksdb_writebatch_create();
    it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_ENTRIES]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        const char *value = rocksdb_iter_value(it, &value_len);
        struct journal_entry e;
        const char *why = NULL;
        rc = journal_decode(key, key_len, value, value_len, &e, &why);
        if (rc < 0) {
            log_warn("journal retention stopped at a corrupt entry dir=%s: %s", j->dir, why);
            break;
        }
        bool expired =
            e.seq <= min_cursor && journal_older_than(e.received_unix_ms, now_unix_ms, max_age_ms);
        if (expired) {
            rocksdb_writebatch_delete_cf(batch, j->cf[JOURNAL_CF_ENTRIES], key, key_len);
            char *dedup_key = journal_dedup_key(e.source, e.event_id);
            rocksdb_writebatch_delete_cf(batch, j->cf[JOURNAL_CF_DEDUP], dedup_key,
                                         strlen(dedup_key));
            free(dedup_key);
            if (written + pending == 0)
                memcpy(first_key, key, JOURNAL_KEY_LEN);
            memcpy(last_key, key, JOURNAL_KEY_LEN);
            pending++;
        }
        journal_entry_release(&e);
        if (!expired)
            break;
        if (pending == JOURNAL_RETAIN_CHUNK) {
            rc = journal_retain_flush(j, batch, &pending, &written);
            if (rc < 0)
                goto out;
        }
    }
    if (rc == 0) {
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL)
            rc = journal_rocksdb_error(j, "retain", rerr);
    }
    flush_rc = journal_retain_flush(j, batch, &pending, &written);
    if (rc == 0)
        rc = flush_rc;
    if (written > 0) {
        rocksdb_compact_range_cf(j->db, j->cf[JOURNAL_CF_ENTRIES], first_key, sizeof(first_key),
                                 last_key, sizeof(last_key));
        log_info("journal retention dir=%s deleted=%llu first_seq=%llu last_seq=%llu", j->dir,
                 (unsigned long long)written, (unsigned long long)journal_key_decode(first_key),
                 (unsigned long long)journal_key_decode(last_key));
    }
out:
    /* Deletions already written stay written: report them even on failure. */
    if (deleted != NULL)
        *deleted = written;
    rocksdb_iter_destroy(it);
    rocksdb_writebatch_destroy(batch);
    return rc;
}

/* Count the keys of one family; *first and *last get the first and last key as seqs. */
static int journal_count(struct journal *j, enum journal_cf cf, uint64_t *n, uint64_t *first,
                         uint64_t *last)
{
    rocksdb_iterator_t *it;
    char *rerr = NULL;

    if (j->cf[cf] == NULL)
        return 0;
    it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[cf]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t len;
        const char *key = rocksdb_iter_key(it, &len);
        if (first != NULL && len == JOURNAL_KEY_LEN) {
            if (*n == 0)
                *first = journal_key_decode(key);
            *last = journal_key_decode(key);
        }
        (*n)++;
    }
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rerr != NULL)
        return journal_rocksdb_error(j, "stats", rerr);
    return 0;
}

int journal_get_stats(struct journal *j, struct journal_stats *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    rc = journal_count(j, JOURNAL_CF_ENTRIES, &out->entries, &out->first_seq, &out->last_seq);
    if (rc < 0)
        return rc;
    return journal_count(j, JOURNAL_CF_DEDUP, &out->dedup_keys, NULL, NULL);
}

/*
 * Replication state (DESIGN.md §3, §5). Fence keys are
 * "destination\0repository\0tag" and their values the seq, 8 bytes big-endian;
 * job status keys are "destination\0repository\0digest" and their values
 * Ferry__JobStatus records. A read-only journal opened on a database from
 * before these families existed has neither, and reads them as empty.
 */

/* The fence stored under `key`: 0 and *seq (0 when there is none), FERRY_EPARSE or -EIO. */
static int journal_fence_read(struct journal *j, const char *key, size_t key_len, uint64_t *seq)
{
    return journal_read_seq(j, JOURNAL_CF_FENCES, key, key_len, "fence_get", seq);
}

int journal_fence_get(struct journal *j, const char *destination, const char *repository,
                      const char *tag, uint64_t *seq)
{
    char *key = NULL;
    size_t key_len = 0;
    int rc;

    *seq = 0;
    rc = journal_tuple_key(destination, repository, tag, &key, &key_len);
    if (rc < 0)
        goto out;
    rc = journal_fence_read(j, key, key_len, seq);
    if (rc == FERRY_EPARSE)
        log_warn("journal fence is corrupt dir=%s dest=%s repo=%s tag=%s", j->dir, destination,
                 repository, tag);
out:
    free(key);
    return rc;
}

int journal_fence_raise(struct journal *j, const char *destination, const char *repository,
                        const char *tag, uint64_t seq)
{
    char value[JOURNAL_KEY_LEN];
    char *key = NULL;
    size_t key_len = 0;
    char *rerr = NULL;
    uint64_t fence = 0;
    bool locked = false;
    int rc;

    rc = journal_tuple_key(destination, repository, tag, &key, &key_len);
    if (rc < 0)
        goto out;
    if (j->read_only) {
        rc = -EROFS;
        goto out;
    }
    /*
     * Two raises that both read the old fence before either wrote would both
     * return 1, and the lower one could then move the tag back: the read and
     * the write happen under one lock.
     */
    pthread_mutex_lock(&j->fence_lock);
    locked = true;
    rc = journal_fence_read(j, key, key_len, &fence);
    if (rc < 0) {
        /* A fence that cannot be read cannot be compared: moving the tag could move it back. */
        if (rc == FERRY_EPARSE)
            log_warn("journal fence is corrupt dir=%s dest=%s repo=%s tag=%s", j->dir, destination,
                     repository, tag);
        goto out;
    }
    if (seq <= fence)
        goto out;
    /*
     * Synced: the caller moves the tag once this returns, and a fence lost in
     * a crash would let an older entry move it back after the restart.
     */
    journal_key_encode(seq, value);
    rocksdb_put_cf(j->db, j->write_synced, j->cf[JOURNAL_CF_FENCES], key, key_len, value,
                   sizeof(value), &rerr);
    if (rerr != NULL) {
        rc = journal_rocksdb_error(j, "fence_raise", rerr);
        goto out;
    }
    log_debug("journal fence raised dir=%s dest=%s repo=%s tag=%s seq=%llu previous=%llu", j->dir,
              destination, repository, tag, (unsigned long long)seq, (unsigned long long)fence);
    rc = 1;
out:
    if (locked)
        pthread_mutex_unlock(&j->fence_lock);
    free(key);
    return rc;
}

/*
 * Check what a job status holds besides its key: a known state, a capped
 * last_error, and tags that are each present and capped. put refuses what
 * this refuses, so that decoding can refuse it too.
 */
static int journal_job_check(int state, const char *last_error, char *const *tags, size_t n_tags)
{
    if (state < JOURNAL_JOB_PENDING || state > JOURNAL_JOB_SUPERSEDED)
        return FERRY_EINVAL;
    if (journal_check_string(last_error, "last_error", false, JOURNAL_STRING_MAX, NULL) < 0)
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
static int journal_job_decode(const char *key, size_t key_len, const char *value, size_t value_len,
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
    if (journal_job_check((int)rec->state, rec->last_error, rec->tags, rec->n_tags) < 0) {
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

int journal_job_put(struct journal *j, const struct journal_job *job)
{
    Ferry__JobStatus rec = FERRY__JOB_STATUS__INIT;
    char *key = NULL;
    size_t key_len = 0;
    uint8_t *packed = NULL;
    char *rerr = NULL;
    int rc;

    if (job == NULL)
        return FERRY_EINVAL;
    rc = journal_tuple_key(job->destination, job->repository, job->digest, &key, &key_len);
    if (rc < 0)
        goto out;
    rc = journal_job_check((int)job->state, job->last_error, job->tags, job->n_tags);
    if (rc < 0)
        goto out;
    if (j->read_only) {
        rc = -EROFS;
        goto out;
    }
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
    size_t size = ferry__job_status__get_packed_size(&rec);
    packed = xmalloc(size);
    ferry__job_status__pack(&rec, packed);
    /*
     * Not synced: status changes often and on the loop thread, and one lost
     * in a crash is redone when the engine takes the job up again.
     */
    rocksdb_put_cf(j->db, j->write_unsynced, j->cf[JOURNAL_CF_JOBS], key, key_len,
                   (const char *)packed, size, &rerr);
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "job_put", rerr);
out:
    free(packed);
    free(key);
    return rc;
}

int journal_job_get(struct journal *j, const char *destination, const char *repository,
                    const char *digest, struct journal_job *out)
{
    char *key = NULL;
    size_t key_len = 0, len = 0;
    char *value = NULL;
    const char *why = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = journal_tuple_key(destination, repository, digest, &key, &key_len);
    if (rc < 0)
        goto out;
    rc = journal_cf_get(j, JOURNAL_CF_JOBS, key, key_len, "job_get", &value, &len);
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

int journal_job_scan(struct journal *j, int (*cb)(const struct journal_job *job, void *arg),
                     void *arg)
{
    return journal_job_scan_in(j, NULL, NULL, cb, arg);
}

int journal_job_scan_in(struct journal *j, const char *destination, const char *repository,
                        int (*cb)(const struct journal_job *job, void *arg), void *arg)
{
    rocksdb_iterator_t *it;
    char *rerr = NULL;
    char *prefix = NULL;
    size_t prefix_len = 0;
    int rc = 0;

    if (j->cf[JOURNAL_CF_JOBS] == NULL)
        return 0;
    if (destination != NULL) {
        /* Keys are "destination\0repository\0digest": the prefix keeps its NULs. */
        size_t d = strlen(destination) + 1;
        size_t r = repository != NULL ? strlen(repository) + 1 : 0;
        prefix_len = d + r;
        prefix = xmalloc(prefix_len);
        memcpy(prefix, destination, d);
        if (repository != NULL)
            memcpy(prefix + d, repository, r);
    }
    it = rocksdb_create_iterator_cf(j->db, j->read, j->cf[JOURNAL_CF_JOBS]);
    if (prefix != NULL)
        rocksdb_iter_seek(it, prefix, prefix_len);
    else
        rocksdb_iter_seek_to_first(it);
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        if (prefix != NULL && (key_len < prefix_len || memcmp(key, prefix, prefix_len) != 0))
            break;
        const char *value = rocksdb_iter_value(it, &value_len);
        struct journal_job job;
        const char *why = NULL;
        rc = journal_job_decode(key, key_len, value, value_len, &job, &why);
        if (rc < 0) {
            /*
             * The key up to its first NUL names the destination, if it is a
             * key of ours at all; ferry_printable() shows at most 64 bytes.
             */
            char shown[FERRY_PRINTABLE_MAX];
            char *destination = xstrndup(key, key_len < 65 ? key_len : 65);
            log_warn("journal job status is corrupt dir=%s dest=%s: %s", j->dir,
                     ferry_printable(destination, shown), why);
            free(destination);
            goto out;
        }
        int stop = cb(&job, arg);
        journal_job_release(&job);
        if (stop)
            goto out;
    }
    rocksdb_iter_get_error(it, &rerr);
    if (rerr != NULL)
        rc = journal_rocksdb_error(j, "job_scan", rerr);
out:
    rocksdb_iter_destroy(it);
    free(prefix);
    return rc;
}
