/*
 * journal_entry.c: events and entries. The checks every event passes, the
 * entry records (Ferry__JournalEntry, key: big-endian seq) and their
 * decoding, the append that numbers, deduplicates and keeps the tag state
 * in one synced WriteBatch, and the reads: one entry, or a scan in seq order.
 */
#include "journal/journal_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

/* ---- Events ---- */

int journal_check_string(const char *s, const char *name, bool required, size_t max, char **err)
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

/* Letters, digits, '_', '-' and '.': 1 to JOURNAL_NODE_MAX of them. */
int journal_name_check(const char *name)
{
    static const char allowed[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.";
    if (journal_check_string(name, "name", true, JOURNAL_NODE_MAX, NULL) < 0 ||
        strspn(name, allowed) != strlen(name))
        return FERRY_EINVAL;
    return 0;
}

int journal_node_check(const char *node)
{
    if (journal_name_check(node) < 0)
        return FERRY_EINVAL;
    size_t n = strlen(node);
    if (node[0] == '.' || node[n - 1] == '.' || strstr(node, "..") != NULL)
        return FERRY_EINVAL;
    return 0;
}

bool journal_present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

char *journal_optional(const char *s)
{
    return journal_present(s) ? xstrdup(s) : NULL;
}

const char *journal_or_empty(const char *s)
{
    return s != NULL ? s : "";
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

void journal_event_release(struct journal_event *e)
{
    if (e == NULL)
        return;
    free((char *)e->source);
    free((char *)e->repository);
    free((char *)e->digest);
    free((char *)e->tag);
    free((char *)e->media_type);
    free((char *)e->event_id);
    memset(e, 0, sizeof(*e));
}

char *journal_dedup_key(const char *source, const char *event_id)
{
    return xasprintf("%s\n%s", source, event_id);
}

/* ---- Entry records ---- */

int journal_entry_from_record(const char *value, size_t value_len, uint64_t seq, bool has_seq,
                              struct journal_entry *out, const char **why)
{
    Ferry__JournalEntry *rec = NULL;
    struct journal_event check;
    int rc = FERRY_EPARSE;

    rec = ferry__journal_entry__unpack(&journal_pb_allocator, value_len, (const uint8_t *)value);
    if (rec == NULL) {
        *why = "value does not decode";
        goto out;
    }
    if (rec->seq != (has_seq ? seq : 0)) {
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
        .seq = seq,
        .action = (enum journal_action)rec->action,
        .source = xstrdup(rec->source),
        .repository = xstrdup(rec->repository),
        .digest = journal_optional(rec->digest),
        .tag = journal_optional(rec->tag),
        .media_type = journal_optional(rec->media_type),
        .event_id = xstrdup(rec->event_id),
        .received_unix_ms = rec->received_unix_ms,
        .event_unix_ms = rec->event_unix_ms,
        /* A stream's record never says it: the mark is kept beside it. */
        .ignored = has_seq ? journal_optional(rec->ignored) : NULL,
    };
    rc = 0;
out:
    if (rec != NULL)
        ferry__journal_entry__free_unpacked(rec, &journal_pb_allocator);
    return rc;
}

int journal_entry_decode(const char *key, size_t key_len, const char *value, size_t value_len,
                         struct journal_entry *out, const char **why)
{
    if (key_len != JOURNAL_KEY_LEN) {
        *why = "key is not an 8-byte seq";
        return FERRY_EPARSE;
    }
    return journal_entry_from_record(value, value_len, journal_key_decode(key), true, out, why);
}

size_t journal_entry_pack(const struct journal_event *e, uint64_t seq, int64_t received_unix_ms,
                          uint8_t **buf, size_t *cap)
{
    Ferry__JournalEntry rec = FERRY__JOURNAL_ENTRY__INIT;
    rec.seq = seq;
    rec.action = (Ferry__JournalEntry__Action)e->action;
    rec.source = (char *)e->source;
    rec.repository = (char *)e->repository;
    rec.digest = (char *)journal_or_empty(e->digest);
    rec.tag = (char *)journal_or_empty(e->tag);
    rec.media_type = (char *)journal_or_empty(e->media_type);
    rec.event_id = (char *)e->event_id;
    rec.received_unix_ms = received_unix_ms;
    rec.event_unix_ms = e->event_unix_ms;
    size_t size = ferry__journal_entry__get_packed_size(&rec);
    if (size > *cap) {
        *cap = size;
        *buf = xrealloc(*buf, *cap);
    }
    ferry__journal_entry__pack(&rec, *buf);
    return size;
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

/* ---- The tag state an append keeps ---- */

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
static int journal_tag_current(struct journal_rdb *j, struct journal_tag_pending *pending,
                               const char *key, size_t key_len, char **digest)
{
    struct journal_tag_pending *p = NULL;
    char *value = NULL;
    size_t len = 0;

    *digest = NULL;
    HASH_FIND(hh, pending, key, key_len, p);
    if (p != NULL) {
        *digest = p->digest != NULL ? xstrdup(p->digest) : NULL;
        return 0;
    }
    int rc = journal_cf_get(j, JOURNAL_CF_TAGSTATE, key, key_len, "tagstate", &value, &len);
    if (rc == FERRY_ENOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    /* A corrupt record reads as no value: the entry is appended. */
    *digest = journal_tagstate_digest(value, len);
    rocksdb_free(value);
    return 0;
}

/* Does an observation change what the journal last said of its tag? */
static bool journal_observation_changes(const struct journal_event *e, const char *current)
{
    if (e->action == JOURNAL_DELETE)
        return current != NULL;
    return current == NULL || strcmp(current, e->digest) != 0;
}

void journal_tag_apply(struct journal_rdb *j, rocksdb_writebatch_t *batch,
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

/* ---- Append ---- */

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

/* One journal_append() under way, holding the append lock. */
struct journal_append_batch {
    struct journal_rdb *j;
    rocksdb_writebatch_t *batch;
    char **dedup_keys;                   /* one per event; `seen` borrows them */
    struct journal_id_set seen;          /* the dedup keys of this batch so far */
    struct journal_tag_pending *pending; /* the tag states this batch has set */
    uint8_t *packed;                     /* the last record packed, reused */
    size_t packed_cap;
    int64_t now;   /* every entry's received_unix_ms */
    uint64_t next; /* the seq the next new entry gets */
};

static void journal_append_batch_release(struct journal_append_batch *a, size_t n)
{
    if (a->batch != NULL)
        rocksdb_writebatch_destroy(a->batch);
    journal_tag_pending_free(&a->pending);
    free(a->seen.slots);
    free(a->packed);
    for (size_t i = 0; a->dedup_keys != NULL && i < n; i++)
        free(a->dedup_keys[i]);
    free(a->dedup_keys);
}

int journal_append_args_check(const struct journal_event *events, size_t n, uint64_t *seqs,
                              char **err)
{
    if (events == NULL || seqs == NULL) {
        journal_set_err(err, "no events given");
        return FERRY_EINVAL;
    }
    memset(seqs, 0, n * sizeof(*seqs));
    for (size_t i = 0; i < n; i++) {
        char *why = NULL;
        int rc = journal_event_validate(&events[i], &why);
        if (rc < 0) {
            journal_set_err(err, "event %zu: %s", i, why);
            free(why);
            return rc;
        }
    }
    return 0;
}

/* The arguments of journal_append() checked, every event validated, and the journal writable. */
static int journal_append_check(struct journal_rdb *j, const struct journal_event *events, size_t n,
                                uint64_t *seqs, char **err)
{
    int rc = journal_append_args_check(events, n, seqs, err);
    if (rc == 0 && j->read_only) {
        journal_set_err(err, "journal %s is open read-only", j->dir);
        rc = -EROFS;
    }
    return rc;
}

/* 1 when an observation changes its tag's state (so it is appended), 0 when not, or an error. */
static int journal_append_changes(struct journal_append_batch *a, const struct journal_event *e,
                                  const char *tag_key, size_t tag_key_len, char **err)
{
    char *current = NULL;
    int rc = journal_tag_current(a->j, a->pending, tag_key, tag_key_len, &current);
    if (rc < 0) {
        journal_set_err(err, "cannot read the journal's tag state: %s", ferry_strerror(rc));
        return rc;
    }
    bool changes = journal_observation_changes(e, current);
    free(current);
    return changes ? 1 : 0;
}

/* Put the entry of `e` as `seq`, and its dedup key, into the batch. */
static void journal_append_record(struct journal_append_batch *a, const struct journal_event *e,
                                  uint64_t seq, const char *dedup_key, size_t dedup_len)
{
    size_t size = journal_entry_pack(e, seq, a->now, &a->packed, &a->packed_cap);

    char key[JOURNAL_KEY_LEN];
    journal_key_encode(seq, key);
    rocksdb_writebatch_put_cf(a->batch, a->j->cf[JOURNAL_CF_ENTRIES], key, sizeof(key),
                              (const char *)a->packed, size);
    rocksdb_writebatch_put_cf(a->batch, a->j->cf[JOURNAL_CF_DEDUP], dedup_key, dedup_len, key,
                              sizeof(key));
}

/*
 * Event `i` into the batch with the next seq in *seq, unless the journal or
 * this batch has its event id, or it is an observation that changes nothing
 * (*seq stays 0). Returns 0 or a negative code with *err.
 */
static int journal_append_one(struct journal_append_batch *a, size_t i,
                              const struct journal_event *e, uint64_t *seq, char **err)
{
    char *found = NULL;
    size_t found_len = 0;
    char *tag_key = NULL;
    size_t tag_key_len = 0;

    a->dedup_keys[i] = journal_dedup_key(e->source, e->event_id);
    size_t id_len = strlen(a->dedup_keys[i]);
    if (!journal_id_set_add(&a->seen, a->dedup_keys[i]))
        return 0;
    int rc = journal_cf_get(a->j, JOURNAL_CF_DEDUP, a->dedup_keys[i], id_len, "dedup", &found,
                            &found_len);
    if (rc == 0) {
        rocksdb_free(found);
        return 0;
    }
    if (rc != FERRY_ENOTFOUND) {
        journal_set_err(err, "cannot read the journal's dedup keys: %s", ferry_strerror(rc));
        return rc;
    }
    if (journal_present(e->tag) &&
        journal_tuple_key(e->source, e->repository, e->tag, &tag_key, &tag_key_len) < 0)
        tag_key = NULL; /* validated before: cannot happen */
    if (e->if_changed && tag_key != NULL) {
        rc = journal_append_changes(a, e, tag_key, tag_key_len, err);
        if (rc <= 0) {
            free(tag_key);
            return rc;
        }
    }
    *seq = a->next++;
    journal_append_record(a, e, *seq, a->dedup_keys[i], id_len);
    if (tag_key != NULL)
        journal_tag_apply(a->j, a->batch, &a->pending, tag_key, tag_key_len, e->action, e->digest);
    return 0;
}

/* Write the batch, synced, with the new last_seq; entries first..a->next - 1. */
static int journal_append_write(struct journal_append_batch *a, uint64_t first, size_t n,
                                char **err)
{
    struct journal_rdb *j = a->j;
    char last_key[JOURNAL_KEY_LEN];
    char *rerr = NULL;

    journal_key_encode(a->next - 1, last_key);
    rocksdb_writebatch_put_cf(a->batch, j->cf[JOURNAL_CF_DEFAULT], JOURNAL_LAST_SEQ_KEY,
                              JOURNAL_LAST_SEQ_KEY_LEN, last_key, sizeof(last_key));
    /* Each entry came with its dedup key (journal_append_record()). */
    journal_count_add(j, a->batch, JOURNAL_COUNT_ENTRIES, (int64_t)(a->next - first));
    journal_count_add(j, a->batch, JOURNAL_COUNT_DEDUP, (int64_t)(a->next - first));
    rocksdb_write(j->db, j->write_synced, a->batch, &rerr);
    if (rerr != NULL) {
        int rc = journal_rocksdb_error(j, "append", rerr);
        journal_set_err(err, "cannot write to journal %s: %s", j->dir, ferry_strerror(rc));
        return rc;
    }
    atomic_store(&j->last_seq, a->next - 1);
    log_debug("journal append dir=%s events=%zu first_seq=%llu last_seq=%llu", j->dir, n,
              (unsigned long long)first, (unsigned long long)(a->next - 1));
    return 0;
}

int journal_rdb_append(struct journal *jn, const struct journal_event *events, size_t n,
                       uint64_t *seqs, char **err)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    struct journal_append_batch a = {.j = j};
    int rc;

    if (err != NULL)
        *err = NULL;
    if (n == 0)
        return 0;
    rc = journal_append_check(j, events, n, seqs, err);
    if (rc < 0)
        return rc;

    a.dedup_keys = xcalloc(n, sizeof(*a.dedup_keys));
    journal_lock(&j->append_lock);
    a.now = clock_unix_ms();
    uint64_t first = atomic_load(&j->last_seq) + 1;
    a.next = first;
    journal_id_set_init(&a.seen, n);
    a.batch = rocksdb_writebatch_create();
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = journal_append_one(&a, i, &events[i], &seqs[i], err);
    /* Only duplicates: they are on disk already, since every append is synced. */
    if (rc == 0 && a.next != first)
        rc = journal_append_write(&a, first, n, err);
    if (rc < 0)
        memset(seqs, 0, n * sizeof(*seqs));
    journal_unlock(&j->append_lock);
    journal_append_batch_release(&a, n);
    return rc;
}

/* ---- Reads ---- */

int journal_rdb_get(struct journal *jn, uint64_t seq, struct journal_entry *out)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char key[JOURNAL_KEY_LEN];
    char *value = NULL;
    size_t len = 0;
    const char *why = NULL;

    memset(out, 0, sizeof(*out));
    journal_key_encode(seq, key);
    int rc = journal_cf_get(j, JOURNAL_CF_ENTRIES, key, sizeof(key), "get", &value, &len);
    if (rc < 0)
        return rc;
    rc = journal_entry_decode(key, sizeof(key), value, len, out, &why);
    if (rc < 0)
        log_warn("journal entry is corrupt dir=%s seq=%llu: %s", j->dir, (unsigned long long)seq,
                 why);
    rocksdb_free(value);
    return rc;
}

char *journal_ignored_line(const char *reason)
{
    /* A newline would break `ferry journal ls`'s one line per entry. */
    char *kept = xstrndup(reason, JOURNAL_IGNORED_MAX);
    for (char *c = kept; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    return kept;
}

int journal_rdb_entry_set_ignored(struct journal *jn, uint64_t seq, const char *reason)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    char key[JOURNAL_KEY_LEN];
    char *rerr = NULL;
    char *value = NULL;
    size_t len = 0;
    Ferry__JournalEntry *rec = NULL;
    uint8_t *packed = NULL;
    char *kept = NULL;

    if (reason == NULL || reason[0] == '\0')
        return FERRY_EINVAL;
    if (j->read_only)
        return -EROFS;
    journal_key_encode(seq, key);
    int rc = journal_cf_get(j, JOURNAL_CF_ENTRIES, key, sizeof(key), "set_ignored", &value, &len);
    if (rc < 0)
        return rc;
    rec = ferry__journal_entry__unpack(&journal_pb_allocator, len, (const uint8_t *)value);
    rocksdb_free(value);
    if (rec == NULL) {
        rc = FERRY_EPARSE;
        goto out;
    }
    kept = journal_ignored_line(reason);
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

/* One journal_scan() under way. */
struct journal_scan {
    struct journal_rdb *j;
    size_t limit; /* 0: all */
    size_t done;
    int (*cb)(const struct journal_entry *e, void *arg);
    void *arg;
};

static int journal_scan_entry(const char *key, size_t key_len, const char *value, size_t value_len,
                              void *arg)
{
    struct journal_scan *scan = arg;
    struct journal_entry e;
    const char *why = NULL;

    if (scan->limit != 0 && scan->done == scan->limit)
        return 1;
    int rc = journal_entry_decode(key, key_len, value, value_len, &e, &why);
    if (rc < 0) {
        log_warn("journal entry is corrupt dir=%s seq=%llu: %s", scan->j->dir,
                 key_len == JOURNAL_KEY_LEN ? (unsigned long long)journal_key_decode(key) : 0ull,
                 why);
        return rc;
    }
    scan->done++;
    int stop = scan->cb(&e, scan->arg);
    journal_entry_release(&e);
    return stop ? 1 : 0;
}

int journal_rdb_scan(struct journal *jn, uint64_t after, size_t limit,
                     int (*cb)(const struct journal_entry *e, void *arg), void *arg)
{
    struct journal_rdb *j = journal_rdb_of(jn);
    struct journal_scan scan = {.j = j, .limit = limit, .cb = cb, .arg = arg};
    char key[JOURNAL_KEY_LEN];

    if (after == UINT64_MAX)
        return 0;
    journal_key_encode(after + 1, key);
    return journal_iterate(j, JOURNAL_CF_ENTRIES, key, sizeof(key), false, "scan",
                           journal_scan_entry, &scan);
}
