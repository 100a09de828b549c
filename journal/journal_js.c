/*
 * journal_js.c: the cluster's journal, on NATS JetStream (journal.h,
 * journal_open_cluster(); DESIGN.md, "Running as a cluster").
 *
 *   entries     the stream: a packed Ferry__JournalEntry whose seq is the
 *               stream's sequence, on the subject of its tag,
 *               "<stream>.entry.<source>.<repository>.<tag>" (for no tag,
 *               "...<repository>._.<digest>"), published with Nats-Msg-Id =
 *               the sha256 of (source, event id), so the servers drop a
 *               repeat inside the duplicate window. The stream keeps the
 *               last JS_KEEP_PER_SUBJECT entries of each subject and drops
 *               older ones: its size follows the tags, not the pushes, and
 *               the last entry of a tag (its state) is never dropped
 *   tag states  the last entry on a tag's subject: kept by the stream in
 *               its own order, whichever node appended; an observation is
 *               appended only if that last entry is still the one it was
 *               compared with (ExpectLastSubjectSeq). Before nats-server
 *               2.10 two nodes observing one change at the same instant
 *               may both append it (see fences): one entry too many, which
 *               changes nothing (same digest, and the job asks the source)
 *   fences      streams <prefix>_fences_0..JS_FENCE_SHARDS-1, one subject
 *               per fence ("<prefix>.fence.<shard>.d.r.t" -> 8-byte seq, the
 *               last one kept; while a node holds the tag, its pending seq,
 *               the hold's expiry and token and the holder follow:
 *               js_tag_hold()),
 *               written with a compare-and-set on the whole shard's last
 *               sequence (Nats-Expected-Last-Sequence). The
 *               per-subject form (what a key-value bucket's update uses) is
 *               not serialised between concurrent publishes on a replicated
 *               stream before nats-server 2.10 (nats-server issue 4320; the
 *               fence race check here caught it on Debian's 2.9.10); the
 *               stream-wide one is checked against the proposals in flight
 *   job status  bucket <prefix>_jobs:    d.r.g -> Ferry__JobStatus, and
 *               bucket <prefix>_open:    d.r.g of the jobs not settled
 *   ignored     bucket <prefix>_ignored: "<seq>" -> why (entries are
 *               immutable in a stream), kept JS_IGNORED_TTL_DAYS
 *   nodes       bucket <prefix>_nodes: node name -> its last heartbeat, the
 *               writer's clock (8 bytes, big-endian unix ms) then what it
 *               said of itself; kept JS_NODES_TTL_HOURS, so that a node that
 *               died long ago falls out; one that left cleanly is purged
 *   blob hints  bucket <prefix>_blobs, one replica: sha256(digest) -> the
 *               node that claimed its upload and until when;
 *               sha256(registry, digest) -> the repository it landed in
 *               there (js_blob_claim()); an economy, never a truth
 *   cursors, poll memos: the node's own RocksDB journal (`local`)
 *
 * Names in keys and subjects are each base64url (no '.'), so "s.r.>" is
 * exactly the keys of one repository, and a name can hold any character a
 * registry allows; a node's name, whose characters are a key's already, is
 * its key as it is. What comes from the servers is checked as a RocksDB
 * record is: an entry must decode, and name the tag whose subject it is on.
 * Reads of the buckets go to each stream's leader (never a lagging replica),
 * and compare-and-set is a publish with an expected last sequence.
 * libnats has its own threads; every call here blocks for at most the
 * configured timeout per request.
 */
#include "journal/journal_int.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "common/base64.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"

/* Longest key: the servers' subjects have room for far more, a registry's names need less. */
#define JS_KEY_MAX 2048
/* Compare-and-set attempts before a raise gives up (each lost one means another node moved). */
#define JS_CAS_ATTEMPTS 32
/* How stale journal_last_seq() may be, in ms, before it asks the stream again. */
#define JS_LAST_SEQ_TTL_MS 500
/* Entries the stream keeps per subject (per tag, or per untagged digest). */
#define JS_KEEP_PER_SUBJECT 64
/* How long the bucket of ignored marks keeps one. */
#define JS_IGNORED_TTL_DAYS 30
/* How long the bucket of nodes keeps a node's last beat. */
#define JS_NODES_TTL_HOURS 24
/* A claim not dropped within this long (its job long over, its drop lost) goes. */
#define JS_CLAIMS_TTL_DAYS 30
/* The bucket of blob hints, not bound at the start (its server down), is tried again this often. */
#define JS_BLOBS_RETRY_MS 10000
/* A blob hint not written again within this long goes (each node's presence cache stays). */
#define JS_BLOBS_TTL_DAYS 7
/* The bucket of blob hints holds at most this much (about a million hints); past it, none is new.
 */
#define JS_BLOBS_MAX_BYTES ((int64_t)256 * 1024 * 1024)
/* What the shared consumer lets the nodes hold between them. */
#define JS_MAX_ACK_PENDING 1000000
#define JS_NS_PER_MS       ((int64_t)1000000)

enum js_bucket {
    JS_JOBS,
    JS_OPEN,
    JS_IGNORED,
    JS_NODES,
    JS_CLAIMS,
    JS_BLOBS,
    JS_BUCKET_COUNT,
};

static const char *const js_bucket_suffix[JS_BUCKET_COUNT] = {"jobs",  "open",   "ignored",
                                                              "nodes", "claims", "blobs"};

/* Fence raises conflict within a shard only: more shards, fewer retries, more Raft groups. */
#define JS_FENCE_SHARDS 8

struct journal_js {
    struct journal base; /* first */
    struct journal *local;
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv[JS_BUCKET_COUNT];
    char *bucket[JS_BUCKET_COUNT]; /* their names */
    char *fence_stream[JS_FENCE_SHARDS];
    char *fence_subject; /* "<prefix>.fence": shard N's subjects are under "<prefix>.fence.N" */
    /* Each shard's last sequence as this node last saw it (0: ask): its next compare-and-set. */
    _Atomic uint64_t fence_last[JS_FENCE_SHARDS];
    /* First attempts on the shard that ask its last sequence before they
     * write (js_shard_update()): set when the one last seen was stale. */
    _Atomic unsigned fence_ask[JS_FENCE_SHARDS];
    char *stream;
    char *subject; /* "<stream>.entry": an entry's subject is under it */
    int64_t timeout_ms;
    _Atomic uint64_t last_seq;
    _Atomic int64_t last_seq_at; /* clock_mono_ms() of the last look at the stream */
    /*
     * Appends publish a batch without waiting for each ack: a second
     * JetStream context whose ack handler fills the batch under way. One
     * append at a time (append_lock).
     */
    jsCtx *js_async;
    pthread_mutex_t append_lock;
    pthread_mutex_t batch_lock; /* the handler's thread against the appender's */
    struct js_batch *batch;
    /* The bucket of blob hints has one replica: while its server is down it
     * cannot be bound, and the node runs without hints; bound again at most
     * every JS_BLOBS_RETRY_MS (js_blobs_kv()). */
    pthread_mutex_t blobs_lock;
    int64_t blobs_retry_at; /* clock_mono_ms() */
    bool locks_ready;
};

/* One published event of a batch: its message (until acked) and what the ack said. */
struct js_slot {
    natsMsg *msg; /* the key of `by_msg`; the library owns it once published */
    size_t index; /* in the batch's events */
    uint64_t seq;
    bool acked, duplicate;
    int rc;
    UT_hash_handle hh;
};

struct js_batch {
    struct js_slot *slots;
    struct js_slot *by_msg;
};

static struct journal_js *js_of(struct journal *j)
{
    return (struct journal_js *)j;
}

/* Set once a cluster journal was opened: libnats then has threads to stop at exit. */
static atomic_bool js_used;

/* ---- Errors ---- */

/* A libnats status as Ferry's code; the text goes to the debug log, with `op`. */
static int js_error(const char *op, natsStatus s, jsErrCode jerr)
{
    log_debug("journal cluster %s: %s (%d)", op, natsStatus_GetText(s), (int)jerr);
    /* The servers' own code says more than the client's status: a stream
     * that is gone is not a message that is not there. */
    if (jerr == JSNoMessageFoundErr)
        return FERRY_ENOTFOUND;
    if (jerr == JSStreamNotFoundErr || jerr == JSConsumerNotFoundErr)
        return -ENOENT;
    if (jerr != 0)
        return -EIO;
    switch (s) {
    case NATS_OK:
        return 0;
    case NATS_NOT_FOUND:
        return FERRY_ENOTFOUND;
    case NATS_TIMEOUT:
        return -ETIMEDOUT;
    case NATS_NO_SERVER:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
        return -ECONNREFUSED;
    case NATS_INVALID_ARG:
        return FERRY_EINVAL;
    default:
        break;
    }
    return -EIO;
}

/* ---- Keys ---- */

/*
 * "b64(a).b64(b).b64(c)", or its prefix "b64(a).b64(b).>" (c NULL) or
 * "b64(a).>" (b NULL too): 0 and a fresh *key, or FERRY_EINVAL for a missing,
 * overlong or too long a name.
 */
static int js_key(const char *a, const char *b, const char *c, char **key)
{
    const char *names[3] = {a, b, c};
    char *parts[3] = {NULL, NULL, NULL};
    int rc = 0;
    size_t n = 0;

    *key = NULL;
    for (size_t i = 0; i < 3 && names[i] != NULL; i++) {
        if (journal_check_string(names[i], "name", true, JOURNAL_STRING_MAX, NULL) < 0) {
            rc = FERRY_EINVAL;
            goto out;
        }
        parts[i] = base64url_encode(names[i], strlen(names[i]));
        n = i + 1;
    }
    if (n == 0) {
        rc = FERRY_EINVAL;
        goto out;
    }
    if (n == 1)
        *key = xasprintf("%s.>", parts[0]);
    else if (n == 2)
        *key = xasprintf("%s.%s.>", parts[0], parts[1]);
    else
        *key = xasprintf("%s.%s.%s", parts[0], parts[1], parts[2]);
    if (strlen(*key) > JS_KEY_MAX) {
        free(*key);
        *key = NULL;
        rc = FERRY_EINVAL;
    }
out:
    for (size_t i = 0; i < 3; i++)
        free(parts[i]);
    return rc;
}

/* The three names of a key of js_key(): 0, or FERRY_EPARSE for a key not of that form. */
static int js_key_names(const char *key, char *names[3])
{
    const char *p = key;
    for (size_t i = 0; i < 3; i++) {
        const char *end = i < 2 ? strchr(p, '.') : p + strlen(p);
        names[i] = end != NULL && end > p ? base64_decode_text(p, (size_t)(end - p), true) : NULL;
        if (names[i] == NULL) {
            for (size_t k = 0; k < i; k++) {
                free(names[k]);
                names[k] = NULL;
            }
            return FERRY_EPARSE;
        }
        /* One name, one spelling: what does not encode back the same is not ours. */
        char *again = base64url_encode(names[i], strlen(names[i]));
        bool same = strlen(again) == (size_t)(end - p) && memcmp(again, p, strlen(again)) == 0;
        free(again);
        if (!same) {
            for (size_t k = 0; k <= i; k++) {
                free(names[k]);
                names[k] = NULL;
            }
            return FERRY_EPARSE;
        }
        p = end + (i < 2 ? 1 : 0);
    }
    return 0;
}

/* ---- Buckets ---- */

/* The stream of bucket `b` and the subject of its `key`, both fresh. */
static void js_kv_where(struct journal_js *j, enum js_bucket b, const char *key, char **stream,
                        char **subject)
{
    *stream = xasprintf("KV_%s", j->bucket[b]);
    *subject = xasprintf("$KV.%s.%s", j->bucket[b], key);
}

/*
 * Read `key` from its stream's leader (a direct get, which kvStore_Get does,
 * may be answered by a replica that lags): 0 with *msg (natsMsg_Destroy it;
 * its data is the value), FERRY_ENOTFOUND (deleted, or never written), or an
 * error. *revision (may be NULL) gets the last write's seq, deletes
 * included, 0 for none.
 */
static int js_kv_read(struct journal_js *j, enum js_bucket b, const char *key, natsMsg **msg,
                      uint64_t *revision)
{
    char *stream = NULL, *subject = NULL;
    js_kv_where(j, b, key, &stream, &subject);
    jsErrCode jerr = 0;
    *msg = NULL;
    if (revision != NULL)
        *revision = 0;
    natsStatus s = js_GetLastMsg(msg, j->js, stream, subject, NULL, &jerr);
    free(subject);
    free(stream);
    if (s != NATS_OK) {
        *msg = NULL;
        return js_error("kv read", s, jerr);
    }
    if (revision != NULL)
        *revision = natsMsg_GetSequence(*msg);
    const char *op = NULL;
    if (natsMsgHeader_Get(*msg, "KV-Operation", &op) == NATS_OK && op != NULL) {
        natsMsg_Destroy(*msg); /* DEL or PURGE */
        *msg = NULL;
        return FERRY_ENOTFOUND;
    }
    return 0;
}

/*
 * Visit every current value of bucket `b` whose key matches `filter` (a
 * js_key() prefix, or ">" for all): `visit` returns 0 to go on, 1 to stop,
 * or a negative code, which is returned.
 */
static int js_kv_each(struct journal_js *j, enum js_bucket b, const char *filter,
                      int (*visit)(kvEntry *e, void *arg), void *arg)
{
    kvWatcher *w = NULL;
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    o.IgnoreDeletes = true;
    natsStatus s = kvStore_Watch(&w, j->kv[b], filter, &o);
    if (s != NATS_OK)
        return js_error("kv watch", s, 0);
    int rc = 0;
    for (;;) {
        kvEntry *e = NULL;
        s = kvWatcher_Next(&e, w, j->timeout_ms);
        if (s != NATS_OK) {
            rc = js_error("kv watch next", s, 0);
            break;
        }
        if (e == NULL)
            break; /* every value there was when the watch began */
        if (kvEntry_Operation(e) == kvOp_Put)
            rc = visit(e, arg);
        kvEntry_Destroy(e);
        if (rc != 0)
            break;
    }
    kvWatcher_Destroy(w);
    return rc < 0 ? rc : 0;
}

/*
 * Remove `key` from bucket `b` without a trace: a purge of its subject. A
 * delete would leave a marker per key, which every watch of the bucket reads
 * again for ever (kvStore_PurgeDeletes, which clears markers, leaks in
 * libnats 3.4.1). 0, also when the key was not there, or an error.
 */
static int js_kv_purge(struct journal_js *j, enum js_bucket b, const char *key, const char *op)
{
    char *stream = NULL, *subject = NULL;
    js_kv_where(j, b, key, &stream, &subject);
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subject;
    jsErrCode jerr = 0;
    natsStatus s = js_PurgeStream(j->js, stream, &o, &jerr);
    free(subject);
    free(stream);
    return s == NATS_OK ? 0 : js_error(op, s, jerr);
}

/* Bind to bucket `name`, or create it the first time. */
static int js_bucket_open(struct journal_js *j, const char *name, int replicas, int64_t ttl_ns,
                          int64_t max_bytes, kvStore **kv, char **err)
{
    natsStatus s = js_KeyValue(kv, j->js, name);
    if (s == NATS_NOT_FOUND) {
        kvConfig c;
        kvConfig_Init(&c);
        c.Bucket = name;
        c.History = 1;
        c.Replicas = replicas;
        c.StorageType = js_FileStorage;
        c.TTL = ttl_ns; /* nanoseconds, as the servers take it */
        if (max_bytes > 0)
            c.MaxBytes = max_bytes;
        s = js_CreateKeyValue(kv, j->js, &c);
    }
    if (s != NATS_OK) {
        int rc = js_error("bucket", s, 0);
        journal_set_err(err, "cannot open the cluster's bucket %s: %s", name,
                        natsStatus_GetText(s));
        return rc;
    }
    return 0;
}

/* ---- Opening ---- */

static int js_check_options(const struct journal_cluster_options *o, char **err)
{
    if (o == NULL || o->n_servers == 0 || o->servers == NULL) {
        journal_set_err(err, "cluster: no NATS server given");
        return FERRY_EINVAL;
    }
    for (size_t i = 0; i < o->n_servers; i++) {
        /* A URL is said in errors: credentials go in user/password, a token or creds. */
        if (o->servers[i] == NULL || o->servers[i][0] == '\0' ||
            strchr(o->servers[i], '@') != NULL) {
            journal_set_err(err, "cluster: server %zu is empty or holds credentials", i + 1);
            return FERRY_EINVAL;
        }
    }
    if (o->stream == NULL || o->stream[0] == '\0' || strpbrk(o->stream, ".*> \t") != NULL) {
        journal_set_err(err, "cluster: the stream's name is empty or holds '.', '*', '>' or a "
                             "space");
        return FERRY_EINVAL;
    }
    if (o->bucket_prefix == NULL || o->bucket_prefix[0] == '\0' ||
        strspn(o->bucket_prefix,
               "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
            strlen(o->bucket_prefix)) {
        journal_set_err(err, "cluster: the buckets' prefix must be letters, digits, '_' or '-'");
        return FERRY_EINVAL;
    }
    if (o->replicas < 1 || o->replicas > 5) {
        journal_set_err(err, "cluster: replicas must be 1 to 5");
        return FERRY_EINVAL;
    }
    if (o->timeout_ms == 0 || o->timeout_ms > 600000) {
        journal_set_err(err, "cluster: the timeout must be 1 ms to 10 min");
        return FERRY_EINVAL;
    }
    if (o->duplicate_window_ms < 1000 || o->duplicate_window_ms > (uint64_t)7 * 24 * 3600 * 1000) {
        journal_set_err(err, "cluster: the duplicate window must be 1 s to 7 days");
        return FERRY_EINVAL;
    }
    return 0;
}

/* Appends published and not yet acked, at most (a batch waits for room beyond). */
#define JS_ASYNC_MAX_PENDING 4096

/* An ack (or its failure) of a batch's publish, on libnats' thread: noted in its slot. */
static void js_ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    struct journal_js *j = closure;
    struct js_slot *slot = NULL;
    (void)js;
    pthread_mutex_lock(&j->batch_lock);
    if (j->batch != NULL)
        HASH_FIND_PTR(j->batch->by_msg, &msg, slot);
    if (slot != NULL) {
        slot->acked = true;
        if (pa != NULL) {
            slot->seq = pa->Sequence;
            slot->duplicate = pa->Duplicate;
        } else {
            slot->rc = js_error("publish", pae != NULL ? pae->Err : NATS_ERR,
                                pae != NULL ? pae->ErrCode : 0);
        }
        HASH_DEL(j->batch->by_msg, slot);
    }
    pthread_mutex_unlock(&j->batch_lock);
    natsMsg_Destroy(msg); /* the handler owns it (libnats' contract) */
}

static int js_connect(struct journal_js *j, const struct journal_cluster_options *o, char **err)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(opts, (const char **)o->servers, (int)o->n_servers);
    if (s == NATS_OK && o->name != NULL)
        s = natsOptions_SetName(opts, o->name);
    if (s == NATS_OK && o->user != NULL)
        s = natsOptions_SetUserInfo(opts, o->user, o->password);
    if (s == NATS_OK && o->token != NULL)
        s = natsOptions_SetToken(opts, o->token);
    if (s == NATS_OK && o->creds_file != NULL)
        s = natsOptions_SetUserCredentialsFromFiles(opts, o->creds_file, NULL);
    if (s == NATS_OK && (o->tls || o->ca_file != NULL || o->cert_file != NULL))
        s = natsOptions_SetSecure(opts, true);
    if (s == NATS_OK && o->ca_file != NULL)
        s = natsOptions_LoadCATrustedCertificates(opts, o->ca_file);
    if (s == NATS_OK && o->cert_file != NULL)
        s = natsOptions_LoadCertificatesChain(opts, o->cert_file, o->key_file);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, (int64_t)o->timeout_ms);
    /* A node outlives any one server: it reconnects, to the others, for ever. */
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 250);
    if (s != NATS_OK) {
        natsOptions_Destroy(opts);
        /* The option's own text may quote a file's content: say which step failed, only. */
        journal_set_err(err, "cluster: bad NATS options (%s)", natsStatus_GetText(s));
        return FERRY_EINVAL;
    }
    s = natsConnection_Connect(&j->nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK) {
        journal_set_err(err, "cluster: cannot connect to NATS (%s): %s", o->servers[0],
                        natsStatus_GetText(s));
        return s == NATS_NO_SERVER || s == NATS_TIMEOUT ? -ECONNREFUSED : -EIO;
    }
    if (!o->tls && o->ca_file == NULL && o->cert_file == NULL &&
        (o->password != NULL || o->token != NULL))
        log_warn("cluster: the NATS password or token goes over plain nats:// (set tls: true)");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = (int64_t)o->timeout_ms;
    s = natsConnection_JetStream(&j->js, j->nc, &jo);
    if (s == NATS_OK) {
        jo.PublishAsync.AckHandler = js_ack_handler;
        jo.PublishAsync.AckHandlerClosure = j;
        jo.PublishAsync.MaxPending = JS_ASYNC_MAX_PENDING;
        s = natsConnection_JetStream(&j->js_async, j->nc, &jo);
    }
    if (s != NATS_OK) {
        journal_set_err(err, "cluster: no JetStream context: %s", natsStatus_GetText(s));
        return -EIO;
    }
    return 0;
}

/* Find the stream, or create it the first time. */
static int js_stream_open(struct journal_js *j, const struct journal_cluster_options *o, char **err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, j->js, j->stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        jsStreamConfig c;
        char *all = xasprintf("%s.>", j->subject);
        const char *subjects[1] = {all};
        jsStreamConfig_Init(&c);
        c.Name = j->stream;
        c.Subjects = subjects;
        c.SubjectsLen = 1;
        c.Storage = js_FileStorage;
        c.Replicas = o->replicas;
        /* Durations are nanoseconds, as the servers take them. */
        c.Duplicates = (int64_t)o->duplicate_window_ms * JS_NS_PER_MS;
        /* No age limit: that would drop entries no node has taken yet, and
         * the tags' states; the stream keeps a bounded history of each tag. */
        c.MaxMsgsPerSubject = JS_KEEP_PER_SUBJECT;
        c.DenyDelete = true;
        c.DenyPurge = true;
        c.AllowDirect = true;
        s = js_AddStream(&si, j->js, &c, NULL, &jerr);
        free(all);
    }
    if (s != NATS_OK) {
        int rc = js_error("stream", s, jerr);
        journal_set_err(err, "cluster: cannot open the stream %s: %s", j->stream,
                        natsStatus_GetText(s));
        return rc;
    }
    /* Made by another node or an operator: it must be one Ferry can work with. */
    const jsStreamConfig *c = si->Config;
    if (c != NULL &&
        (c->MaxAge != 0 || c->Retention != js_LimitsPolicy || c->Replicas != o->replicas))
        log_warn("cluster: the stream %s has max age %" PRId64 " s, retention %d, %" PRId64
                 " replicas; Ferry makes it without a max age, with limits retention and %d",
                 j->stream, c->MaxAge / (1000 * JS_NS_PER_MS), (int)c->Retention, c->Replicas,
                 o->replicas);
    atomic_store(&j->last_seq, si->State.LastSeq);
    atomic_store(&j->last_seq_at, clock_mono_ms());
    jsStreamInfo_Destroy(si);
    return 0;
}

static int js_fence_shard_open(struct journal_js *j, int n, const struct journal_cluster_options *o,
                               char **err);
static int js_blobs_bind(struct journal_js *j, char **why);

int journal_open_cluster(const struct journal_cluster_options *o, struct journal *local,
                         struct journal **out, char **err)
{
    *out = NULL;
    if (err != NULL)
        *err = NULL;
    int rc = js_check_options(o, err);
    if (rc < 0) {
        journal_close(local);
        return rc;
    }
    atomic_store(&js_used, true);
    struct journal_js *j = xcalloc(1, sizeof(*j));
    j->base.ops = &journal_js_ops;
    pthread_mutex_init(&j->append_lock, NULL);
    pthread_mutex_init(&j->batch_lock, NULL);
    pthread_mutex_init(&j->blobs_lock, NULL);
    j->locks_ready = true;
    j->local = local;
    j->stream = xstrdup(o->stream);
    j->subject = xasprintf("%s.entry", o->stream);
    j->timeout_ms = (int64_t)o->timeout_ms;
    atomic_init(&j->last_seq, 0);
    atomic_init(&j->last_seq_at, 0);

    rc = js_connect(j, o, err);
    if (rc == 0)
        rc = js_stream_open(j, o, err);
    for (int b = 0; rc == 0 && b < JS_BUCKET_COUNT; b++) {
        j->bucket[b] = xasprintf("%s_%s", o->bucket_prefix, js_bucket_suffix[b]);
        int64_t ttl = 0;
        if (b == JS_IGNORED)
            ttl = (int64_t)JS_IGNORED_TTL_DAYS * 24 * 3600 * 1000 * JS_NS_PER_MS;
        else if (b == JS_NODES)
            ttl = (int64_t)JS_NODES_TTL_HOURS * 3600 * 1000 * JS_NS_PER_MS;
        else if (b == JS_CLAIMS)
            ttl = (int64_t)JS_CLAIMS_TTL_DAYS * 24 * 3600 * 1000 * JS_NS_PER_MS;
        if (b == JS_BLOBS) {
            /* A node starts without them: js_blobs_bind(). */
            char *why = NULL;
            if (js_blobs_bind(j, &why) < 0)
                log_warn("cluster: no blob hints for now, blobs are uploaded without them: %s",
                         why != NULL ? why : "?");
            free(why);
            continue;
        }
        rc = js_bucket_open(j, j->bucket[b], o->replicas, ttl, 0, &j->kv[b], err);
    }
    j->fence_subject = xasprintf("%s.fence", o->bucket_prefix);
    for (int n = 0; rc == 0 && n < JS_FENCE_SHARDS; n++) {
        j->fence_stream[n] = xasprintf("%s_fences_%d", o->bucket_prefix, n);
        rc = js_fence_shard_open(j, n, o, err);
    }
    if (rc < 0) {
        journal_close(&j->base);
        return rc;
    }
    log_info("journal on NATS JetStream stream=%s last_seq=%" PRIu64 " replicas=%d", j->stream,
             atomic_load(&j->last_seq), o->replicas);
    *out = &j->base;
    return 0;
}

static void js_close(struct journal *jn)
{
    struct journal_js *j = js_of(jn);
    for (int b = 0; b < JS_BUCKET_COUNT; b++) {
        kvStore_Destroy(j->kv[b]);
        free(j->bucket[b]);
    }
    for (int n = 0; n < JS_FENCE_SHARDS; n++)
        free(j->fence_stream[n]);
    free(j->fence_subject);
    jsCtx_Destroy(j->js);
    jsCtx_Destroy(j->js_async);
    if (j->nc != NULL) {
        natsConnection_Close(j->nc);
        natsConnection_Destroy(j->nc);
    }
    journal_close(j->local);
    if (j->locks_ready) {
        pthread_mutex_destroy(&j->append_lock);
        pthread_mutex_destroy(&j->batch_lock);
        pthread_mutex_destroy(&j->blobs_lock);
    }
    free(j->stream);
    free(j->subject);
    free(j);
}

/* ---- Tag states: the last entry on a tag's subject ---- */

/*
 * The subject of an entry: "<stream>.entry.s.r.t" for tag t, or
 * "<stream>.entry.s.r._.d" for digest d without a tag (each digest a subject
 * of its own, so JS_KEEP_PER_SUBJECT never drops one for another).
 */
static int js_subject(struct journal_js *j, const char *source, const char *repository,
                      const char *tag, const char *digest, char **subject)
{
    char *key = NULL;
    *subject = NULL;
    int rc = journal_present(tag) ? js_key(source, repository, tag, &key)
                                  : js_key(source, repository, digest, &key);
    if (rc < 0)
        return rc;
    if (journal_present(tag)) {
        *subject = xasprintf("%s.%s", j->subject, key);
    } else {
        char *dot = strrchr(key, '.'); /* "s.r.d" -> "s.r._.d" */
        *subject = xasprintf("%s.%.*s._%s", j->subject, (int)(dot - key), key, dot);
    }
    free(key);
    return strlen(*subject) > JS_KEY_MAX ? FERRY_EINVAL : 0;
}

/*
 * A message of the stream as entry `seq`: it must decode as strictly as a
 * RocksDB record, and be on the subject its own names give (a message put
 * on another tag's subject would set that tag's state). 0, or FERRY_EPARSE
 * with the reason logged.
 */
static int js_msg_entry(struct journal_js *j, natsMsg *msg, uint64_t seq, struct journal_entry *out)
{
    const char *why = NULL;
    int rc = journal_entry_from_record(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                                       seq, false, out, &why);
    if (rc == 0) {
        char *subject = NULL;
        const char *on = natsMsg_GetSubject(msg);
        if (js_subject(j, out->source, out->repository, out->tag, out->digest, &subject) < 0 ||
            on == NULL || strcmp(subject, on) != 0) {
            why = "it is not on the subject of its tag";
            journal_entry_release(out);
            rc = FERRY_EPARSE;
        }
        free(subject);
    }
    if (rc < 0)
        log_warn("journal cluster entry is corrupt seq=%" PRIu64 ": %s", seq, why);
    return rc;
}

/*
 * The last entry on `subject`: 0 with *seq and *digest (NULL when that entry
 * deleted the tag; caller frees), *seq 0 when the subject has none, or an
 * error.
 */
static int js_subject_last(struct journal_js *j, const char *subject, uint64_t *seq, char **digest)
{
    natsMsg *msg = NULL;
    jsErrCode jerr = 0;
    *seq = 0;
    *digest = NULL;
    natsStatus s = js_GetLastMsg(&msg, j->js, j->stream, subject, NULL, &jerr);
    if (s != NATS_OK) {
        int rc = js_error("last on subject", s, jerr);
        return rc == FERRY_ENOTFOUND ? 0 : rc;
    }
    struct journal_entry e;
    uint64_t at = natsMsg_GetSequence(msg);
    int rc = js_msg_entry(j, msg, at, &e);
    natsMsg_Destroy(msg);
    *seq = at;
    /* As the RocksDB backend: a corrupt state reads as none, and is written over. */
    if (rc < 0)
        return 0;
    if (e.action == JOURNAL_PUSH) {
        *digest = e.digest;
        e.digest = NULL;
    }
    journal_entry_release(&e);
    return 0;
}

static int js_tagstate_get(struct journal *jn, const char *source, const char *repository,
                           const char *tag, char **digest)
{
    struct journal_js *j = js_of(jn);
    char *subject = NULL;
    uint64_t seq = 0;
    *digest = NULL;
    if (!journal_present(tag))
        return FERRY_EINVAL;
    int rc = js_subject(j, source, repository, tag, NULL, &subject);
    if (rc == 0)
        rc = js_subject_last(j, subject, &seq, digest);
    free(subject);
    if (rc == 0 && *digest == NULL)
        rc = FERRY_ENOTFOUND;
    return rc;
}

/* A tag state is the last entry on its subject: none can be written without an entry. */
static int js_tagstate_put(struct journal *jn, const char *source, const char *repository,
                           const char *tag, const char *digest)
{
    (void)jn;
    (void)source;
    (void)repository;
    (void)tag;
    (void)digest;
    return -ENOTSUP;
}

/*
 * The tags of one repository (`repository` NULL: of the whole source): the
 * stream lists the subjects under the prefix, and the last entry of each says
 * the tag's state.
 */
static int js_tagstate_scan(struct journal *jn, const char *source, const char *repository,
                            int (*cb)(const char *repository, const char *tag, const char *digest,
                                      void *arg),
                            void *arg)
{
    struct journal_js *j = js_of(jn);
    char *key = NULL;
    int rc = js_key(source, repository, NULL, &key);
    if (rc < 0)
        return rc;
    char *filter = xasprintf("%s.%s", j->subject, key);
    free(key);
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = filter;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, j->js, j->stream, &o, &jerr);
    if (s != NATS_OK) {
        free(filter);
        return js_error("tag scan", s, jerr);
    }
    size_t skip = strlen(j->subject) + 1;
    jsStreamStateSubjects *list = si->State.Subjects;
    for (int i = 0; rc == 0 && list != NULL && i < list->Count; i++) {
        const char *subject = list->List[i].Subject;
        char *names[3];
        uint64_t seq = 0;
        char *digest = NULL;
        if (strlen(subject) <= skip || js_key_names(subject + skip, names) < 0)
            continue; /* an entry without a tag ("_"), or not a subject of ours */
        rc = js_subject_last(j, subject, &seq, &digest);
        if (rc == 0 && digest != NULL && cb(names[1], names[2], digest, arg) != 0)
            rc = 1;
        free(digest);
        for (int k = 0; k < 3; k++)
            free(names[k]);
    }
    jsStreamInfo_Destroy(si);
    free(filter);
    return rc < 0 ? rc : 0;
}

/* ---- Entries ---- */

/* Nats-Msg-Id of an event: the sha256 of its dedup key, fixed length, any characters. */
static void js_msg_id(const struct journal_event *e, char out[DIGEST_MAX])
{
    char *key = journal_dedup_key(e->source, e->event_id);
    digest_of(key, strlen(key), out);
    free(key);
}

static void js_seen(struct journal_js *j, uint64_t seq)
{
    uint64_t cur = atomic_load(&j->last_seq);
    while (seq > cur && !atomic_compare_exchange_weak(&j->last_seq, &cur, seq))
        ;
}

/*
 * Publish one event on its tag's subject; *seq gets its stream seq, or 0 for
 * a repeat the servers dropped or an observation that changes nothing. An
 * observation is compared with the last entry on its subject and published
 * only if that is still the last (ExpectLastSubjectSeq): when another node
 * appended meanwhile, it compares again.
 */
static int js_append_one(struct journal_js *j, const struct journal_event *e, int64_t now,
                         uint8_t **packed, size_t *cap, uint64_t *seq, char **err)
{
    char *subject = NULL;
    int rc = js_subject(j, e->source, e->repository, e->tag, e->digest, &subject);
    *seq = 0;
    if (rc < 0) {
        free(subject);
        journal_set_err(err, "a name is too long for the cluster's subjects");
        return FERRY_EINVAL;
    }
    size_t len = journal_entry_pack(e, 0, now, packed, cap);
    char id[DIGEST_MAX];
    js_msg_id(e, id);
    bool observe = e->if_changed && journal_present(e->tag);
    rc = -EAGAIN;
    for (int attempt = 0; attempt < JS_CAS_ATTEMPTS && rc == -EAGAIN; attempt++) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.ExpectStream = j->stream;
        if (observe) {
            uint64_t last = 0;
            char *current = NULL;
            rc = js_subject_last(j, subject, &last, &current);
            if (rc < 0) {
                journal_set_err(err, "cannot read the cluster's tag state: %s", ferry_strerror(rc));
                break;
            }
            bool changes = e->action == JOURNAL_DELETE
                               ? current != NULL
                               : current == NULL || strcmp(current, e->digest) != 0;
            free(current);
            if (!changes) {
                rc = 0;
                break;
            }
            if (last != 0)
                po.ExpectLastSubjectSeq = last;
            else
                po.ExpectNoMessage = true;
        }
        jsPubAck *ack = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_Publish(&ack, j->js, subject, *packed, (int)len, &po, &jerr);
        if (s == NATS_OK) {
            if (!ack->Duplicate) {
                *seq = ack->Sequence;
                js_seen(j, ack->Sequence);
            }
            jsPubAck_Destroy(ack);
            rc = 0;
        } else if (observe && jerr == JSStreamWrongLastSequenceErr) {
            rc = -EAGAIN; /* another node appended to this tag: compare again */
        } else {
            rc = js_error("publish", s, jerr);
            journal_set_err(err, "cannot publish to the cluster's journal: %s",
                            natsStatus_GetText(s));
        }
    }
    if (rc == -EAGAIN) {
        journal_set_err(err, "the tag kept changing under %d attempts", JS_CAS_ATTEMPTS);
        rc = -EBUSY;
    }
    free(subject);
    return rc;
}

/*
 * Publish events [from, to) without waiting for each ack, then wait for all
 * of them (at most the timeout): seqs[i] as js_append_one() gives them. On a
 * failure, the events whose publish failed are not in the stream; the others
 * may be (a retry is de-duplicated).
 */
static int js_publish_batch(struct journal_js *j, const struct journal_event *events, size_t from,
                            size_t to, int64_t now, uint8_t **packed, size_t *cap, uint64_t *seqs,
                            char **err)
{
    struct js_batch batch = {.slots = xcalloc(to - from, sizeof(*batch.slots))};
    int rc = 0;
    pthread_mutex_lock(&j->batch_lock);
    j->batch = &batch;
    pthread_mutex_unlock(&j->batch_lock);
    size_t sent = 0;
    for (size_t i = from; i < to && rc == 0; i++) {
        struct js_slot *slot = &batch.slots[i - from];
        char *subject = NULL;
        slot->index = i;
        rc = js_subject(j, events[i].source, events[i].repository, events[i].tag, events[i].digest,
                        &subject);
        if (rc < 0) {
            free(subject);
            break; /* checked before: cannot happen */
        }
        size_t len = journal_entry_pack(&events[i], 0, now, packed, cap);
        natsMsg *m = NULL;
        natsStatus s = natsMsg_Create(&m, subject, NULL, (const char *)*packed, (int)len);
        free(subject);
        char id[DIGEST_MAX];
        js_msg_id(&events[i], id);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.ExpectStream = j->stream;
        if (s == NATS_OK) {
            /* Indexed before the publish: its ack may come at once. */
            slot->msg = m;
            pthread_mutex_lock(&j->batch_lock);
            HASH_ADD_PTR(batch.by_msg, msg, slot);
            pthread_mutex_unlock(&j->batch_lock);
            s = js_PublishMsgAsync(j->js_async, &m, &po);
            if (s != NATS_OK) {
                pthread_mutex_lock(&j->batch_lock);
                HASH_DEL(batch.by_msg, slot);
                pthread_mutex_unlock(&j->batch_lock);
            }
        }
        natsMsg_Destroy(m); /* NULL once the library took it */
        if (s != NATS_OK) {
            rc = js_error("publish", s, 0);
            journal_set_err(err, "cannot publish to the cluster's journal: %s",
                            natsStatus_GetText(s));
            break;
        }
        sent++;
    }
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = j->timeout_ms;
    natsStatus s = sent > 0 ? js_PublishAsyncComplete(j->js_async, &wait) : NATS_OK;
    if (s != NATS_OK) {
        /* Never acked: they may still land, and a retry is de-duplicated. */
        natsMsgList pending = {0};
        if (js_PublishAsyncGetPendingList(&pending, j->js_async) == NATS_OK)
            natsMsgList_Destroy(&pending);
        if (rc == 0) {
            rc = js_error("publish", s, 0);
            journal_set_err(err, "the cluster did not acknowledge the journal's appends: %s",
                            natsStatus_GetText(s));
        }
    }
    pthread_mutex_lock(&j->batch_lock);
    j->batch = NULL;
    HASH_CLEAR(hh, batch.by_msg);
    pthread_mutex_unlock(&j->batch_lock);
    for (size_t k = 0; k < sent; k++) {
        struct js_slot *slot = &batch.slots[k];
        if (slot->acked && slot->rc == 0 && !slot->duplicate) {
            seqs[slot->index] = slot->seq;
            js_seen(j, slot->seq);
        } else if (slot->acked && slot->rc < 0 && rc == 0) {
            rc = slot->rc;
            journal_set_err(err, "the cluster refused a journal append: %s", ferry_strerror(rc));
        }
    }
    free(batch.slots);
    return rc;
}

/*
 * Unlike the RocksDB backend, a batch is not one write: a failure can leave
 * the events before it published. Whoever retries it (a webhook's sender,
 * the poller's next round) publishes them again, and the servers drop the
 * repeats inside the duplicate window; beyond it, a repeat becomes a new
 * entry, which the engine checks against the source before it moves a tag.
 */
static int js_append(struct journal *jn, const struct journal_event *events, size_t n,
                     uint64_t *seqs, char **err)
{
    struct journal_js *j = js_of(jn);
    if (err != NULL)
        *err = NULL;
    if (n == 0)
        return 0;
    int check = journal_append_args_check(events, n, seqs, err);
    if (check < 0)
        return check;
    /* Nothing is published unless every event can be. */
    for (size_t i = 0; i < n; i++) {
        char *subject = NULL;
        int rc = js_subject(j, events[i].source, events[i].repository, events[i].tag,
                            events[i].digest, &subject);
        free(subject);
        if (rc < 0) {
            journal_set_err(err, "event %zu: a name is too long for the cluster's subjects", i);
            return FERRY_EINVAL;
        }
    }
    uint8_t *packed = NULL;
    size_t cap = 0;
    int64_t now = clock_unix_ms();
    int rc = 0;
    pthread_mutex_lock(&j->append_lock);
    /* Observations one by one (each compares with its tag's last entry, which
     * the events before it may be); the events between them as one batch. */
    for (size_t i = 0; i < n && rc == 0;) {
        if (events[i].if_changed && journal_present(events[i].tag)) {
            rc = js_append_one(j, &events[i], now, &packed, &cap, &seqs[i], err);
            i++;
            continue;
        }
        size_t end = i;
        while (end < n && !(events[end].if_changed && journal_present(events[end].tag)))
            end++;
        rc = js_publish_batch(j, events, i, end, now, &packed, &cap, seqs, err);
        i = end;
    }
    pthread_mutex_unlock(&j->append_lock);
    free(packed);
    if (rc < 0)
        memset(seqs, 0, n * sizeof(*seqs));
    return rc;
}

static uint64_t js_last_seq(struct journal *jn)
{
    struct journal_js *j = js_of(jn);
    int64_t now = clock_mono_ms();
    if (now - atomic_load(&j->last_seq_at) < JS_LAST_SEQ_TTL_MS)
        return atomic_load(&j->last_seq);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, j->js, j->stream, NULL, &jerr);
    /* Stamped also when the servers do not answer: callers on the loop must
     * not wait a timeout each, and the last value known is still true. */
    atomic_store(&j->last_seq_at, now);
    if (s == NATS_OK) {
        js_seen(j, si->State.LastSeq);
        jsStreamInfo_Destroy(si);
    }
    return atomic_load(&j->last_seq);
}

/* The reason entry `seq` changed nothing, when one was recorded: NULL when none. */
static char *js_ignored_get(struct journal_js *j, uint64_t seq)
{
    char key[24];
    natsMsg *m = NULL;
    snprintf(key, sizeof(key), "%" PRIu64, seq);
    if (js_kv_read(j, JS_IGNORED, key, &m, NULL) < 0)
        return NULL;
    /* As it was written: one line, capped (journal_ignored_line()). */
    char *why = xstrndup(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    char *line = journal_ignored_line(why);
    free(why);
    return line;
}

static int js_get(struct journal *jn, uint64_t seq, struct journal_entry *out)
{
    struct journal_js *j = js_of(jn);
    natsMsg *msg = NULL;
    jsErrCode jerr = 0;
    memset(out, 0, sizeof(*out));
    if (seq == 0)
        return FERRY_ENOTFOUND;
    natsStatus s = js_GetMsg(&msg, j->js, j->stream, seq, NULL, &jerr);
    if (s != NATS_OK)
        return js_error("get", s, jerr);
    int rc = js_msg_entry(j, msg, seq, out);
    natsMsg_Destroy(msg);
    if (rc < 0)
        return rc;
    out->ignored = js_ignored_get(j, seq);
    return 0;
}

/*
 * A scan asks entry by entry (two requests each: the entry, its ignored
 * mark) up to this many; past it, the entries come through one ordered
 * consumer, and the ignored marks in one read of their bucket.
 */
#define JS_SCAN_BY_GET 64
/* The ignored marks a scan holds at most, in bytes; past it, it asks entry by entry. */
#define JS_SCAN_IGNORED_BYTES ((size_t)8 * 1024 * 1024)

/* The ignored marks of the entries a scan covers, read once. */
struct js_scan_mark {
    uint64_t seq;
    char *why;
    UT_hash_handle hh;
};

struct js_scan_marks {
    struct js_scan_mark *by_seq;
    uint64_t from, to; /* the seqs kept */
    size_t bytes;
    bool full; /* over JS_SCAN_IGNORED_BYTES: the scan asks entry by entry */
};

static int js_scan_mark_keep(kvEntry *e, void *arg)
{
    struct js_scan_marks *m = arg;
    const char *key = kvEntry_Key(e);
    char *end = NULL;
    errno = 0;
    unsigned long long seq = strtoull(key, &end, 10);
    if (errno != 0 || end == key || *end != '\0' || seq < m->from || seq > m->to)
        return 0; /* not an entry of this scan's, or not a mark Ferry wrote */
    /* A mark's bytes and what holding it costs: many short ones are no cheaper. */
    size_t len = (size_t)kvEntry_ValueLen(e);
    size_t cost = len + sizeof(struct js_scan_mark);
    if (m->bytes + cost > JS_SCAN_IGNORED_BYTES) {
        m->full = true;
        return 1;
    }
    struct js_scan_mark *had = NULL;
    uint64_t at = seq;
    HASH_FIND(hh, m->by_seq, &at, sizeof(at), had);
    if (had != NULL)
        return 0; /* a key is a bucket's once */
    char *why = xstrndup(kvEntry_Value(e), len);
    struct js_scan_mark *k = xcalloc(1, sizeof(*k));
    k->seq = at;
    k->why = journal_ignored_line(why);
    free(why);
    m->bytes += cost;
    HASH_ADD(hh, m->by_seq, seq, sizeof(k->seq), k);
    return 0;
}

static void js_scan_marks_free(struct js_scan_marks *m)
{
    struct js_scan_mark *k, *tmp;
    HASH_ITER(hh, m->by_seq, k, tmp)
    {
        HASH_DEL(m->by_seq, k);
        free(k->why);
        free(k);
    }
}

/*
 * Read the ignored marks of seqs from..to, when that costs less than asking
 * for each: 0 with `m` filled, or with m->full set when they would be too
 * many to hold (the caller asks entry by entry).
 */
static int js_scan_marks_read(struct journal_js *j, uint64_t from, uint64_t to,
                              struct js_scan_marks *m)
{
    memset(m, 0, sizeof(*m));
    m->from = from;
    m->to = to;
    kvStatus *st = NULL;
    natsStatus s = kvStore_Status(&st, j->kv[JS_IGNORED]);
    if (s != NATS_OK)
        return js_error("scan ignored", s, 0);
    uint64_t marks = kvStatus_Values(st);
    kvStatus_Destroy(st);
    if (marks == 0)
        return 0;
    if (marks > to - from + 1) {
        m->full = true; /* more marks than entries: asking for each is less */
        return 0;
    }
    int rc = js_kv_each(j, JS_IGNORED, ">", js_scan_mark_keep, m);
    if (rc < 0)
        js_scan_marks_free(m);
    return rc;
}

/* Entry by entry, each with its mark: two requests each. */
static int js_scan_by_get(struct journal *jn, uint64_t from, uint64_t last, size_t limit,
                          int (*cb)(const struct journal_entry *e, void *arg), void *arg)
{
    size_t seen = 0;
    for (uint64_t seq = from; seq <= last && (limit == 0 || seen < limit); seq++) {
        struct journal_entry e;
        int rc = js_get(jn, seq, &e);
        if (rc == FERRY_ENOTFOUND || rc == FERRY_EPARSE)
            continue; /* an older entry of a tag the stream keeps newer ones of; a corrupt one */
        if (rc < 0)
            return rc;
        seen++;
        int stop = cb(&e, arg);
        journal_entry_release(&e);
        if (stop)
            break;
    }
    return 0;
}

/*
 * Entries from..last through an ordered consumer (the servers push them in
 * order, with flow control; no acks, and the consumer goes with the
 * subscription). The ignored marks come from `marks`, or entry by entry.
 */
static int js_scan_ordered(struct journal_js *j, uint64_t from, uint64_t last, size_t limit,
                           struct js_scan_marks *marks,
                           int (*cb)(const struct journal_entry *e, void *arg), void *arg)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = j->stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from;
    char *all = xasprintf("%s.>", j->subject);
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&sub, j->js, all, NULL, &so, &jerr);
    free(all);
    if (s != NATS_OK)
        return js_error("scan", s, jerr);
    int rc = 0;
    size_t seen = 0;
    while (limit == 0 || seen < limit) {
        natsMsg *msg = NULL;
        s = natsSubscription_NextMsg(&msg, sub, j->timeout_ms);
        if (s != NATS_OK) {
            rc = js_error("scan next", s, 0);
            break;
        }
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
            natsMsg_Destroy(msg); /* not from the consumer: nothing of the stream's */
            continue;
        }
        uint64_t seq = meta->Sequence.Stream, pending = meta->NumPending;
        jsMsgMetaData_Destroy(meta);
        if (seq > last) {
            natsMsg_Destroy(msg); /* appended since the scan began */
            break;
        }
        struct journal_entry e;
        int got = js_msg_entry(j, msg, seq, &e);
        natsMsg_Destroy(msg);
        if (got == 0) {
            if (marks->full) {
                e.ignored = js_ignored_get(j, seq);
            } else {
                struct js_scan_mark *k = NULL;
                HASH_FIND(hh, marks->by_seq, &seq, sizeof(seq), k);
                if (k != NULL)
                    e.ignored = xstrdup(k->why);
            }
            seen++;
            int stop = cb(&e, arg);
            journal_entry_release(&e);
            if (stop)
                break;
        }
        if (seq == last || pending == 0)
            break; /* the stream holds nothing more for it */
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rc;
}

/*
 * Entry by entry, up to the stream's last seq when the scan began: a `ferry
 * journal ls`, not the engine's reading (the engine takes its work from the
 * cluster's consumer). A short scan asks for each entry; a long one takes
 * them through an ordered consumer, a few requests in all.
 */
static int js_scan(struct journal *jn, uint64_t after, size_t limit,
                   int (*cb)(const struct journal_entry *e, void *arg), void *arg)
{
    struct journal_js *j = js_of(jn);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, j->js, j->stream, NULL, &jerr);
    if (s != NATS_OK)
        return js_error("scan", s, jerr);
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    js_seen(j, last);
    uint64_t from = after + 1 > first ? after + 1 : first;
    if (msgs == 0 || from > last)
        return 0;
    if (last - from < JS_SCAN_BY_GET || (limit != 0 && limit <= JS_SCAN_BY_GET))
        return js_scan_by_get(jn, from, last, limit, cb, arg);
    struct js_scan_marks marks;
    int rc = js_scan_marks_read(j, from, last, &marks);
    if (rc < 0)
        return rc;
    rc = js_scan_ordered(j, from, last, limit, &marks, cb, arg);
    js_scan_marks_free(&marks);
    return rc;
}

static int js_entry_set_ignored(struct journal *jn, uint64_t seq, const char *reason)
{
    struct journal_js *j = js_of(jn);
    char key[24];
    uint64_t rev = 0;
    if (reason == NULL || reason[0] == '\0')
        return FERRY_EINVAL;
    natsMsg *msg = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&msg, j->js, j->stream, seq, NULL, &jerr);
    if (s != NATS_OK)
        return js_error("set ignored", s, jerr);
    natsMsg_Destroy(msg);
    char *kept = journal_ignored_line(reason);
    snprintf(key, sizeof(key), "%" PRIu64, seq);
    s = kvStore_Put(&rev, j->kv[JS_IGNORED], key, kept, (int)strlen(kept));
    free(kept);
    return s == NATS_OK ? 0 : js_error("set ignored", s, 0);
}

/* The stream keeps the last entries of each tag (MaxMsgsPerSubject) and has
 * no max age, which would drop entries no node has taken: nothing to do here. */
static int js_retain(struct journal *jn, uint64_t max_age_ms, int64_t now_unix_ms,
                     uint64_t *deleted)
{
    (void)jn;
    (void)max_age_ms;
    (void)now_unix_ms;
    if (deleted != NULL)
        *deleted = 0;
    return 0;
}

static int js_get_stats(struct journal *jn, struct journal_stats *out)
{
    struct journal_js *j = js_of(jn);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    memset(out, 0, sizeof(*out));
    natsStatus s = js_GetStreamInfo(&si, j->js, j->stream, NULL, &jerr);
    if (s != NATS_OK)
        return js_error("stats", s, jerr);
    out->entries = si->State.Msgs;
    if (out->entries > 0) {
        out->first_seq = si->State.FirstSeq;
        out->last_seq = si->State.LastSeq;
    }
    out->table_bytes = si->State.Bytes; /* the stream's bytes, on each replica */
    js_seen(j, si->State.LastSeq);
    jsStreamInfo_Destroy(si);
    return 0;
}

/* ---- Fences ---- */

/*
 * The shard and subject of a fence key (of js_key()): FNV-1a of the key,
 * mixed by MurmurHash3's finaliser, picks the shard. FNV-1a alone spreads
 * its high bits only: its low ones follow the key's last bytes, so the
 * fences of tags v1 to v5 fell on 4 shards of 8, and those of v1 to v3
 * mostly on 2, where each node's compare-and-set lost to the others.
 */
static char *js_fence_subject(struct journal_js *j, const char *key, int *shard)
{
    uint32_t h = 2166136261u;
    for (const char *c = key; *c != '\0'; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    *shard = (int)(h % JS_FENCE_SHARDS);
    return xasprintf("%s.%d.%s", j->fence_subject, *shard, key);
}

/* The shard and subject of the fence of (destination, repository, tag): 0, or FERRY_EINVAL. */
static int js_fence_locate(struct journal_js *j, const char *destination, const char *repository,
                           const char *tag, char **subject, int *shard)
{
    char *key = NULL;
    *subject = NULL;
    int rc = js_key(destination, repository, tag, &key);
    if (rc == 0)
        *subject = js_fence_subject(j, key, shard);
    free(key);
    return rc;
}

/*
 * A fence's record: the fence (8 bytes, a journal key), then, while a node
 * holds the tag (js_tag_hold()), the pending seq of its job, the hold's
 * expiry (unix ms) and token (8 bytes each), and the holder's name.
 */
#define JS_HOLD_HEAD (4 * JOURNAL_KEY_LEN)

struct js_fence_rec {
    uint64_t fence, pending, token;
    int64_t expires;
    const char *holder; /* in the message; NULL: not held */
    int holder_len;
};

static int js_fence_parse(const void *data, int len, struct js_fence_rec *r)
{
    memset(r, 0, sizeof(*r));
    if (data == NULL)
        return 0;
    if (len != JOURNAL_KEY_LEN && (len <= JS_HOLD_HEAD || len > JS_HOLD_HEAD + 256))
        return FERRY_EPARSE; /* cannot be compared: moving the tag could move it back */
    const char *p = data;
    r->fence = journal_key_decode(p);
    if (len == JOURNAL_KEY_LEN)
        return 0;
    r->pending = journal_key_decode(p + JOURNAL_KEY_LEN);
    r->expires = (int64_t)journal_key_decode(p + 2 * JOURNAL_KEY_LEN);
    r->token = journal_key_decode(p + 3 * JOURNAL_KEY_LEN);
    r->holder = p + JS_HOLD_HEAD;
    r->holder_len = len - JS_HOLD_HEAD;
    return 0;
}

/* The fence as a reader counts it: the pending seq of a hold may have moved the tag already. */
static uint64_t js_fence_of(const struct js_fence_rec *r)
{
    return r->pending > r->fence ? r->pending : r->fence;
}

/* Is the record's hold `holder`'s hold `token`? */
static bool js_held_by(const struct js_fence_rec *r, const char *holder, uint64_t token)
{
    return r->holder != NULL && r->token == token && (size_t)r->holder_len == strlen(holder) &&
           memcmp(r->holder, holder, (size_t)r->holder_len) == 0;
}

/* The fence on `subject` of `shard`: 0 and *seq (0: none), or an error. */
static int js_fence_read(struct journal_js *j, int shard, const char *subject, uint64_t *seq)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    *seq = 0;
    natsStatus s = js_GetLastMsg(&m, j->js, j->fence_stream[shard], subject, NULL, &jerr);
    if (s != NATS_OK) {
        int rc = js_error("fence read", s, jerr);
        return rc == FERRY_ENOTFOUND ? 0 : rc;
    }
    struct js_fence_rec r;
    int rc = js_fence_parse(natsMsg_GetData(m), natsMsg_GetDataLength(m), &r);
    if (rc == 0)
        *seq = js_fence_of(&r);
    natsMsg_Destroy(m);
    if (rc < 0)
        log_warn("journal cluster fence is corrupt subject=%.128s", subject);
    return rc;
}

static int js_fence_get(struct journal *jn, const char *destination, const char *repository,
                        const char *tag, uint64_t *seq)
{
    struct journal_js *j = js_of(jn);
    char *subject = NULL;
    int shard = 0;
    *seq = 0;
    int rc = js_fence_locate(j, destination, repository, tag, &subject, &shard);
    if (rc == 0)
        rc = js_fence_read(j, shard, subject, seq);
    free(subject);
    return rc;
}

/*
 * What a read-compare-write on a shard writes: given the subject's last
 * value (NULL and 0 when none), 1 with *value and *len set to write it, 0 to
 * write nothing, or a negative code.
 */
typedef int (*js_decide_fn)(const void *current, int len, void *arg, const void **value,
                            int *value_len);

/*
 * The shard's last sequence in the servers' answer to a lost compare-and-set
 * ("wrong last sequence: N"): 0 when it does not say.
 */
static uint64_t js_wrong_last_seq(void)
{
    const char *text = nats_GetLastError(NULL);
    const char *at = text != NULL ? strstr(text, "wrong last sequence: ") : NULL;
    if (at == NULL)
        return 0;
    return strtoull(at + strlen("wrong last sequence: "), NULL, 10);
}

/*
 * A read-compare-write of one subject of shard `shard`: take the shard's
 * last sequence L (the one this node last saw, or asked first when that
 * was stale lately: a write since is caught below), read the subject (a state at least as new as
 * L), and write what `decide` says only if the shard is still at L, which proves the read was the
 * state at the write. Any write to the shard meanwhile makes it read again, from the shard's
 * sequence the servers' refusal names. Every write is replicated to a majority before its ack. A
 * write whose answer was lost (a timeout) may have landed: the caller fails the step, and its retry
 * finds its own write (a fence at its own seq, a hold already its own).
 * Returns 1 once written, `decide`'s 0 or error, -EBUSY after
 * JS_CAS_ATTEMPTS lost races, or the servers' error.
 */
/*
 * Shard `shard`'s last sequence: that of its newest message, in one read of
 * its leader (the stream's info says it too, at a greater cost). The shard
 * is never empty: it starts with a marker, and keeps each subject's last.
 */
static int js_shard_last(struct journal_js *j, int shard, uint64_t *at)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    char *all = xasprintf("%s.%d.>", j->fence_subject, shard);
    natsStatus s = js_GetLastMsg(&m, j->js, j->fence_stream[shard], all, NULL, &jerr);
    free(all);
    if (s != NATS_OK)
        return js_error("shard", s, jerr);
    *at = natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
    return 0;
}

/*
 * Does this first attempt ask the shard's last sequence before it writes?
 * While other nodes write the shard, the one this node last saw is stale,
 * and a write with it is refused and read again: four requests where asking
 * first takes three. So after a refused first attempt, the next
 * JS_SHARD_ASK_RUN ask first; then one tries the last seen again (a node
 * alone, or the only one writing lately, is seldom refused).
 */
#define JS_SHARD_ASK_RUN 16

static bool js_shard_ask_first(struct journal_js *j, int shard)
{
    unsigned left = atomic_load_explicit(&j->fence_ask[shard], memory_order_relaxed);
    if (left == 0)
        return false;
    atomic_store_explicit(&j->fence_ask[shard], left - 1, memory_order_relaxed);
    return true;
}

static int js_shard_update(struct journal_js *j, int shard, const char *subject,
                           js_decide_fn decide, void *arg)
{
    int rc = -EAGAIN;
    for (int attempt = 0; attempt < JS_CAS_ATTEMPTS && rc == -EAGAIN; attempt++) {
        jsErrCode jerr = 0;
        natsStatus s = NATS_OK;
        /* The last sequence this node saw is as good as a fresh one: a
         * write since makes the compare-and-set fail, and its answer says
         * where the shard is now. */
        uint64_t at = atomic_load(&j->fence_last[shard]);
        bool asked = at == 0 || (attempt == 0 && js_shard_ask_first(j, shard));
        if (asked) {
            rc = js_shard_last(j, shard, &at);
            if (rc < 0)
                break;
        }
        natsMsg *m = NULL;
        s = js_GetLastMsg(&m, j->js, j->fence_stream[shard], subject, NULL, &jerr);
        if (s != NATS_OK && js_error("shard read", s, jerr) != FERRY_ENOTFOUND) {
            rc = js_error("shard read", s, jerr);
            break;
        }
        const void *value = NULL;
        int len = 0;
        rc = decide(m != NULL ? natsMsg_GetData(m) : NULL, m != NULL ? natsMsg_GetDataLength(m) : 0,
                    arg, &value, &len);
        if (rc == 1) {
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.ExpectLastSeq = at; /* never 0: each shard starts with a marker */
            jerr = 0;
            jsPubAck *pa = NULL;
            s = js_Publish(&pa, j->js, subject, value, len, &po, &jerr);
            if (s == NATS_OK) {
                rc = 1;
                atomic_store(&j->fence_last[shard], pa->Sequence);
            } else if (jerr == JSStreamWrongLastSequenceErr) {
                rc = -EAGAIN; /* the shard moved meanwhile: read again */
                atomic_store(&j->fence_last[shard], js_wrong_last_seq());
                if (attempt == 0 && !asked)
                    atomic_store_explicit(&j->fence_ask[shard], JS_SHARD_ASK_RUN,
                                          memory_order_relaxed);
            } else {
                rc = js_error("shard write", s, jerr);
                atomic_store(&j->fence_last[shard], 0);
            }
            jsPubAck_Destroy(pa);
        }
        natsMsg_Destroy(m);
    }
    return rc == -EAGAIN ? -EBUSY : rc;
}

/* What a fence record update writes: the record built here. */
struct js_fence_write {
    char *value;
    int len;
};

/* The record: `fence`, and the hold `h` (NULL: none; its holder's name is holder_len long). */
static void js_fence_build(struct js_fence_write *w, uint64_t fence, const struct js_fence_rec *h)
{
    free(w->value);
    w->len = h != NULL ? JS_HOLD_HEAD + h->holder_len : JOURNAL_KEY_LEN;
    w->value = xmalloc((size_t)w->len);
    journal_key_encode(fence, w->value);
    if (h != NULL) {
        journal_key_encode(h->pending, w->value + JOURNAL_KEY_LEN);
        journal_key_encode((uint64_t)h->expires, w->value + 2 * JOURNAL_KEY_LEN);
        journal_key_encode(h->token, w->value + 3 * JOURNAL_KEY_LEN);
        memcpy(w->value + JS_HOLD_HEAD, h->holder, (size_t)h->holder_len);
    }
}

/* A fence raise's decision: write `seq` when it is above the fence; a hold stays as it is. */
struct js_raise {
    struct js_fence_write w;
    uint64_t seq, previous;
};

static int js_raise_decide(const void *current, int len, void *arg, const void **value,
                           int *value_len)
{
    struct js_raise *r = arg;
    struct js_fence_rec f;
    r->previous = 0;
    int rc = js_fence_parse(current, len, &f);
    if (rc < 0)
        return rc;
    r->previous = js_fence_of(&f);
    /* At exactly seq: this raise's own write, whose answer was lost on the
     * way while the servers elected a leader, and which the shard's
     * compare-and-set then tried again. Raised (by this entry, in any case). */
    if (r->seq == r->previous)
        return 2;
    if (r->seq < r->previous)
        return 0;
    js_fence_build(&r->w, r->seq, f.holder != NULL ? &f : NULL);
    *value = r->w.value;
    *value_len = r->w.len;
    return 1;
}

static int js_fence_raise(struct journal *jn, const char *destination, const char *repository,
                          const char *tag, uint64_t seq)
{
    struct journal_js *j = js_of(jn);
    char *subject = NULL;
    int shard = 0;
    int rc = js_fence_locate(j, destination, repository, tag, &subject, &shard);
    if (rc < 0)
        return rc;
    struct js_raise r = {.seq = seq};
    rc = js_shard_update(j, shard, subject, js_raise_decide, &r);
    if (rc == 2)
        rc = 1; /* found at its own seq: see js_raise_decide() */
    if (rc == 1)
        log_debug("journal fence raised dest=%s repo=%s tag=%s seq=%" PRIu64 " previous=%" PRIu64,
                  destination, repository, tag, seq, r.previous);
    else if (rc == FERRY_EPARSE)
        log_warn("journal cluster fence is corrupt subject=%.128s", subject);
    free(r.w.value);
    free(subject);
    return rc;
}

/*
 * A tag's hold: the decision of js_tag_hold() (release false) and of
 * js_tag_release() (release true).
 */
struct js_hold {
    const char *holder;
    uint64_t token;
    int64_t now, expires;
    uint64_t seq;    /* hold: the job's entry, pending while held */
    uint64_t raised; /* release: the fence to raise to, 0: none */
    bool release;
    uint64_t fence; /* hold: the fence found, as the holder counts it */
    char *was;      /* hold: the live holder found (caller frees) */
    struct js_fence_write w;
};

static int js_hold_decide(const void *current, int len, void *arg, const void **value,
                          int *value_len)
{
    struct js_hold *h = arg;
    struct js_fence_rec f;
    free(h->was);
    h->was = NULL;
    int rc = js_fence_parse(current, len, &f);
    if (rc < 0)
        return rc;
    bool mine = js_held_by(&f, h->holder, h->token);
    if (h->release) {
        if (!mine)
            return 0; /* lapsed and taken, or never held: its pending counted for the next */
        uint64_t fence = h->raised > f.fence ? h->raised : f.fence;
        js_fence_build(&h->w, fence, NULL);
    } else {
        if (f.holder != NULL && !mine && f.expires > h->now) {
            h->was = xstrndup(f.holder, (size_t)f.holder_len);
            return 0;
        }
        /* This hold's own write, found again (its answer was lost): the
         * fence it wrote. Otherwise a lapsed hold's pending seq (a node that
         * died, or this one before a restart) may have moved the tag: it
         * counts as the fence. */
        h->fence = mine ? f.fence : js_fence_of(&f);
        struct js_fence_rec held = {.pending = h->seq,
                                    .token = h->token,
                                    .expires = h->expires,
                                    .holder = h->holder,
                                    .holder_len = (int)strlen(h->holder)};
        js_fence_build(&h->w, h->fence, &held);
    }
    *value = h->w.value;
    *value_len = h->w.len;
    return 1;
}

static int js_tag_update(struct journal *jn, const char *destination, const char *repository,
                         const char *tag, struct js_hold *h)
{
    struct journal_js *j = js_of(jn);
    if (journal_check_string(h->holder, "holder", true, 256, NULL) < 0)
        return FERRY_EINVAL;
    char *subject = NULL;
    int shard = 0;
    int rc = js_fence_locate(j, destination, repository, tag, &subject, &shard);
    if (rc == 0)
        rc = js_shard_update(j, shard, subject, js_hold_decide, h);
    if (rc == FERRY_EPARSE)
        log_warn("journal cluster fence is corrupt subject=%.128s", subject);
    free(h->w.value);
    free(subject);
    return rc;
}

static int js_tag_hold(struct journal *jn, const char *destination, const char *repository,
                       const char *tag, const char *holder, uint64_t token, uint64_t ttl_ms,
                       uint64_t seq, uint64_t *fence, char **other)
{
    if (ttl_ms == 0)
        return FERRY_EINVAL;
    struct js_hold h = {.holder = holder, .token = token, .now = clock_unix_ms(), .seq = seq};
    h.expires = h.now + (int64_t)ttl_ms;
    int rc = js_tag_update(jn, destination, repository, tag, &h);
    if (rc == 1)
        *fence = h.fence;
    if (rc == 0 && other != NULL) {
        *other = h.was;
        h.was = NULL;
    }
    free(h.was);
    return rc;
}

static int js_tag_release(struct journal *jn, const char *destination, const char *repository,
                          const char *tag, const char *holder, uint64_t token, uint64_t raised)
{
    struct js_hold h = {.holder = holder, .token = token, .raised = raised, .release = true};
    int rc = js_tag_update(jn, destination, repository, tag, &h);
    free(h.was);
    return rc < 0 ? rc : 0;
}

/* ---- Leases: one holder at a time, across the nodes ---- */

/* A lease's value: "<expiry unix ms> <holder>". */
struct js_lease {
    const char *holder;
    int64_t now, expires; /* the new expiry; 0: release */
    bool release;
    char *value;
    char *was; /* the holder found, when another holds it (caller frees) */
};

static int js_lease_decide(const void *current, int len, void *arg, const void **value,
                           int *value_len)
{
    struct js_lease *l = arg;
    free(l->was);
    l->was = NULL;
    if (current != NULL && len > 0) {
        char *text = xstrndup(current, (size_t)len);
        char *sp = strchr(text, ' ');
        long long until = strtoll(text, NULL, 10);
        bool mine = sp != NULL && strcmp(sp + 1, l->holder) == 0;
        if (!mine && until > l->now) {
            l->was = xstrdup(sp != NULL ? sp + 1 : "?");
            free(text);
            return 0; /* held by another, not lapsed */
        }
        free(text);
        if (l->release && !mine)
            return 0; /* not ours to give back */
    } else if (l->release) {
        return 0;
    }
    free(l->value);
    l->value = xasprintf("%" PRId64 " %s", l->release ? (int64_t)0 : l->expires, l->holder);
    *value = l->value;
    *value_len = (int)strlen(l->value);
    return 1;
}

static int js_lease(struct journal *jn, const char *name, const char *holder, uint64_t ttl_ms,
                    bool release, char **other)
{
    struct journal_js *j = js_of(jn);
    if (other != NULL)
        *other = NULL;
    if (journal_check_string(name, "name", true, JOURNAL_STRING_MAX, NULL) < 0 ||
        journal_check_string(holder, "holder", true, 256, NULL) < 0 || (!release && ttl_ms == 0))
        return FERRY_EINVAL;
    char *token = base64url_encode(name, strlen(name));
    char *key = xasprintf("lease.%s", token);
    free(token);
    int shard = 0;
    char *subject = js_fence_subject(j, key, &shard);
    struct js_lease l = {.holder = holder, .now = clock_unix_ms(), .release = release};
    l.expires = l.now + (int64_t)ttl_ms;
    int rc = js_shard_update(j, shard, subject, js_lease_decide, &l);
    if (other != NULL && rc == 0 && l.was != NULL) {
        *other = l.was;
        l.was = NULL;
    }
    free(l.was);
    free(l.value);
    free(subject);
    free(key);
    return rc;
}

static int js_lease_take(struct journal *jn, const char *name, const char *holder, uint64_t ttl_ms,
                         char **other)
{
    return js_lease(jn, name, holder, ttl_ms, false, other);
}

static int js_lease_give(struct journal *jn, const char *name, const char *holder)
{
    int rc = js_lease(jn, name, holder, 0, true, NULL);
    return rc < 0 ? rc : 0;
}

/* Find fence shard `n`'s stream, or create it with its marker (so its last seq is never 0). */
static int js_fence_shard_open(struct journal_js *j, int n, const struct journal_cluster_options *o,
                               char **err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, j->js, j->fence_stream[n], NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        char *all = xasprintf("%s.%d.>", j->fence_subject, n);
        const char *subjects[1] = {all};
        jsStreamConfig c;
        jsStreamConfig_Init(&c);
        c.Name = j->fence_stream[n];
        c.Subjects = subjects;
        c.SubjectsLen = 1;
        c.Storage = js_FileStorage;
        c.Replicas = o->replicas;
        c.MaxMsgsPerSubject = 1; /* a fence is its last value */
        c.Duplicates = 60 * 1000 * JS_NS_PER_MS;
        jerr = 0;
        s = js_AddStream(&si, j->js, &c, NULL, &jerr);
        free(all);
    }
    uint64_t last = s == NATS_OK ? si->State.LastSeq : 0;
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK && last == 0) {
        /* Nodes starting together publish one marker: the servers drop the repeats. */
        char *marker = xasprintf("%s.%d._", j->fence_subject, n);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = "ferry-fence-shard-start";
        s = js_Publish(NULL, j->js, marker, "", 0, &po, &jerr);
        free(marker);
    }
    if (s != NATS_OK) {
        int rc = js_error("fence shard", s, jerr);
        journal_set_err(err, "cluster: cannot open the fences' stream %s: %s", j->fence_stream[n],
                        natsStatus_GetText(s));
        return rc;
    }
    return 0;
}

/* ---- Job status ---- */

static int js_job_key(const struct journal_job *job, char **key)
{
    return js_key(job->destination, job->repository, job->digest, key);
}

/*
 * Take a settled job's key out of the index of open jobs, leaving no marker.
 * Most jobs were never indexed (the engine writes a job's record only once
 * it has been running or waiting for a second, records.h): a read of the
 * leader is far cheaper for the servers than a purge, which is replicated.
 */
static int js_open_unindex(struct journal_js *j, const char *key)
{
    natsMsg *m = NULL;
    int rc = js_kv_read(j, JS_OPEN, key, &m, NULL);
    natsMsg_Destroy(m);
    if (rc == FERRY_ENOTFOUND)
        return 0;
    return js_kv_purge(j, JS_OPEN, key, "job put");
}

/*
 * The record, and the index of open jobs, in an order that keeps the index
 * a superset of the open jobs when a write fails between the two: indexed
 * before the record says open, unindexed after it says settled. The record
 * has the last word when the index is read.
 */
static int js_job_put(struct journal *jn, const struct journal_job *job)
{
    struct journal_js *j = js_of(jn);
    char *key = NULL;
    size_t size = 0;
    uint64_t rev = 0;
    if (job == NULL)
        return FERRY_EINVAL;
    uint8_t *packed = journal_job_pack(job, &size);
    if (packed == NULL)
        return FERRY_EINVAL;
    int rc = js_job_key(job, &key);
    if (rc < 0)
        goto out;
    bool open = journal_job_is_open(job->state);
    char state = (char)job->state;
    natsStatus s = NATS_OK;
    if (open)
        s = kvStore_Put(&rev, j->kv[JS_OPEN], key, &state, 1);
    if (s == NATS_OK)
        s = kvStore_Put(&rev, j->kv[JS_JOBS], key, packed, (int)size);
    if (s != NATS_OK)
        rc = js_error("job put", s, 0);
    else if (!open)
        rc = js_open_unindex(j, key);
out:
    free(packed);
    free(key);
    return rc;
}

/* Decode the job record under `key` (of js_key()), checked against its key. */
static int js_job_decode(const char *key, const void *value, int len, struct journal_job *out)
{
    char *names[3];
    char *tuple = NULL;
    size_t tuple_len = 0;
    const char *why = NULL;
    if (js_key_names(key, names) < 0)
        return FERRY_EPARSE;
    int rc = journal_tuple_key(names[0], names[1], names[2], &tuple, &tuple_len);
    if (rc == 0)
        rc = journal_job_decode(tuple, tuple_len, value, (size_t)len, out, &why);
    if (rc < 0)
        log_warn("journal cluster job status is corrupt key=%.64s: %s", key,
                 why != NULL ? why : "bad key");
    free(tuple);
    for (int i = 0; i < 3; i++)
        free(names[i]);
    return rc < 0 ? FERRY_EPARSE : 0;
}

static int js_job_get(struct journal *jn, const char *destination, const char *repository,
                      const char *digest, struct journal_job *out)
{
    struct journal_js *j = js_of(jn);
    char *key = NULL;
    natsMsg *m = NULL;
    memset(out, 0, sizeof(*out));
    int rc = js_key(destination, repository, digest, &key);
    if (rc == 0)
        rc = js_kv_read(j, JS_JOBS, key, &m, NULL);
    if (rc == 0) {
        rc = js_job_decode(key, natsMsg_GetData(m), natsMsg_GetDataLength(m), out);
        natsMsg_Destroy(m);
    }
    free(key);
    return rc;
}

struct js_job_scan {
    struct journal_js *j;
    int (*cb)(const struct journal_job *job, void *arg);
    void *arg;
};

static int js_job_visit(kvEntry *e, void *arg)
{
    struct js_job_scan *scan = arg;
    struct journal_job job;
    int rc = js_job_decode(kvEntry_Key(e), kvEntry_Value(e), kvEntry_ValueLen(e), &job);
    if (rc < 0)
        return rc;
    int stop = scan->cb(&job, scan->arg);
    journal_job_release(&job);
    return stop ? 1 : 0;
}

static int js_job_scan_in(struct journal *jn, const char *destination, const char *repository,
                          int (*cb)(const struct journal_job *job, void *arg), void *arg)
{
    struct journal_js *j = js_of(jn);
    struct js_job_scan scan = {j, cb, arg};
    char *filter = NULL;
    int rc = 0;
    if (destination != NULL)
        rc = js_key(destination, repository, NULL, &filter);
    if (rc < 0)
        return rc;
    rc = js_kv_each(j, JS_JOBS, filter != NULL ? filter : ">", js_job_visit, &scan);
    free(filter);
    return rc;
}

static int js_job_scan(struct journal *jn, int (*cb)(const struct journal_job *job, void *arg),
                       void *arg)
{
    return js_job_scan_in(jn, NULL, NULL, cb, arg);
}

/* An index key: the record has the last word (journal_job_put() writes the index first). */
static int js_open_visit(kvEntry *e, void *arg)
{
    struct js_job_scan *scan = arg;
    natsMsg *m = NULL;
    int rc = js_kv_read(scan->j, JS_JOBS, kvEntry_Key(e), &m, NULL);
    if (rc == FERRY_ENOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    struct journal_job job;
    rc = js_job_decode(kvEntry_Key(e), natsMsg_GetData(m), natsMsg_GetDataLength(m), &job);
    natsMsg_Destroy(m);
    if (rc < 0)
        return rc;
    int stop = journal_job_is_open(job.state) ? scan->cb(&job, scan->arg) : 0;
    journal_job_release(&job);
    return stop ? 1 : 0;
}

static int js_job_scan_open(struct journal *jn, int (*cb)(const struct journal_job *job, void *arg),
                            void *arg)
{
    struct journal_js *j = js_of(jn);
    struct js_job_scan scan = {j, cb, arg};
    return js_kv_each(j, JS_OPEN, ">", js_open_visit, &scan);
}

/* ---- Nodes: their heartbeats ---- */

/* journal_api.c checked the name and the info. */
static int js_node_beat(struct journal *jn, const char *node, const char *info)
{
    struct journal_js *j = js_of(jn);
    size_t len = strlen(info);
    char *value = xmalloc(JOURNAL_KEY_LEN + len);
    journal_key_encode((uint64_t)clock_unix_ms(), value);
    memcpy(value + JOURNAL_KEY_LEN, info, len);
    uint64_t rev = 0;
    natsStatus s = kvStore_Put(&rev, j->kv[JS_NODES], node, value, (int)(JOURNAL_KEY_LEN + len));
    free(value);
    return s == NATS_OK ? 0 : js_error("node beat", s, 0);
}

static int js_node_forget(struct journal *jn, const char *node)
{
    return js_kv_purge(js_of(jn), JS_NODES, node, "node forget");
}

/*
 * A beat as js_node_beat() wrote it, under a key that is a node's name: 0
 * with *beat_unix_ms and `info` (JOURNAL_NODE_INFO_MAX + 1 bytes, gets the
 * NUL-terminated info), or FERRY_EPARSE.
 */
static int js_node_decode(const char *key, const void *value, int len, int64_t *beat_unix_ms,
                          char *info)
{
    if (journal_node_check(key) < 0 || value == NULL || len < JOURNAL_KEY_LEN ||
        len - JOURNAL_KEY_LEN > JOURNAL_NODE_INFO_MAX)
        return FERRY_EPARSE;
    const char *bytes = value;
    size_t n = (size_t)len - JOURNAL_KEY_LEN;
    if (memchr(bytes + JOURNAL_KEY_LEN, '\0', n) != NULL)
        return FERRY_EPARSE;
    *beat_unix_ms = (int64_t)journal_key_decode(bytes);
    memcpy(info, bytes + JOURNAL_KEY_LEN, n);
    info[n] = '\0';
    return 0;
}

struct js_node_scan {
    int (*cb)(const char *node, int64_t beat_unix_ms, const char *info, void *arg);
    void *arg;
    char *info; /* the current node's, reused */
    size_t given, skipped;
    char *skipped_key; /* the first one's */
    bool too_many;
};

static int js_node_visit(kvEntry *e, void *arg)
{
    struct js_node_scan *scan = arg;
    int64_t beat = 0;
    const char *key = kvEntry_Key(e);
    if (js_node_decode(key, kvEntry_Value(e), kvEntry_ValueLen(e), &beat, scan->info) < 0) {
        if (scan->skipped++ == 0)
            scan->skipped_key = xstrndup(key, 64);
        return 0;
    }
    if (scan->given == JOURNAL_NODES_MAX) {
        scan->too_many = true;
        return 1;
    }
    scan->given++;
    return scan->cb(key, beat, scan->info, scan->arg) != 0 ? 1 : 0;
}

static int js_node_scan(struct journal *jn,
                        int (*cb)(const char *node, int64_t beat_unix_ms, const char *info,
                                  void *arg),
                        void *arg)
{
    struct journal_js *j = js_of(jn);
    struct js_node_scan scan = {.cb = cb, .arg = arg, .info = xmalloc(JOURNAL_NODE_INFO_MAX + 1)};
    int rc = js_kv_each(j, JS_NODES, ">", js_node_visit, &scan);
    /* Once per scan, not per beat: the nodes scan every few seconds. */
    if (scan.skipped > 0)
        log_warn("journal cluster: node beats that do not decode were skipped count=%zu key=%s",
                 scan.skipped, scan.skipped_key);
    if (scan.too_many)
        log_warn("journal cluster: more than %d nodes beat, the rest were skipped",
                 JOURNAL_NODES_MAX);
    free(scan.skipped_key);
    free(scan.info);
    return rc;
}

/* ---- Claims: waiting jobs and their nodes ---- */

/* The longest claim value: a seq, two names and two spaces. */
#define JS_CLAIM_VALUE_MAX (20 + 2 * JOURNAL_NODE_MAX + 2)

/* journal_api.c checked the claim and made the key. Value: "SEQ NODE DESTINATION". */
static int js_claim_put(struct journal *jn, const char *key, const struct journal_claim *c)
{
    struct journal_js *j = js_of(jn);
    char value[JS_CLAIM_VALUE_MAX + 1];
    int len = snprintf(value, sizeof(value), "%" PRIu64 " %s %s", c->seq, c->node, c->destination);
    uint64_t rev = 0;
    natsStatus s = kvStore_Put(&rev, j->kv[JS_CLAIMS], key, value, len);
    return s == NATS_OK ? 0 : js_error("claim put", s, 0);
}

static int js_claim_drop(struct journal *jn, const char *key)
{
    return js_kv_purge(js_of(jn), JS_CLAIMS, key, "claim drop");
}

/* A claim as js_claim_put() wrote it into `buf` (JS_CLAIM_VALUE_MAX + 1): 0 and *out, or
 * FERRY_EPARSE. */
static int js_claim_decode(const void *value, int len, char *buf, struct journal_claim *out)
{
    if (value == NULL || len <= 0 || len > JS_CLAIM_VALUE_MAX || memchr(value, '\0', (size_t)len))
        return FERRY_EPARSE;
    memcpy(buf, value, (size_t)len);
    buf[len] = '\0';
    char *node = strchr(buf, ' ');
    char *dest = node != NULL ? strchr(node + 1, ' ') : NULL;
    if (dest == NULL || node == buf || buf[0] < '1' || buf[0] > '9')
        return FERRY_EPARSE;
    *node++ = '\0';
    *dest++ = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long seq = strtoull(buf, &end, 10);
    if (errno != 0 || *end != '\0' || seq == 0 || journal_node_check(node) < 0 ||
        journal_name_check(dest) < 0)
        return FERRY_EPARSE;
    *out = (struct journal_claim){.destination = dest, .seq = seq, .node = node};
    return 0;
}

struct js_claim_scan {
    int (*cb)(const char *key, const struct journal_claim *c, void *arg);
    void *arg;
    char buf[JS_CLAIM_VALUE_MAX + 1];
    size_t given, skipped;
    bool too_many;
};

static int js_claim_visit(kvEntry *e, void *arg)
{
    struct js_claim_scan *scan = arg;
    struct journal_claim c;
    if (js_claim_decode(kvEntry_Value(e), kvEntry_ValueLen(e), scan->buf, &c) < 0) {
        scan->skipped++;
        return 0;
    }
    if (scan->given == JOURNAL_CLAIMS_MAX) {
        scan->too_many = true;
        return 1;
    }
    scan->given++;
    return scan->cb(kvEntry_Key(e), &c, scan->arg) != 0 ? 1 : 0;
}

static int js_claim_scan(struct journal *jn,
                         int (*cb)(const char *key, const struct journal_claim *c, void *arg),
                         void *arg)
{
    struct journal_js *j = js_of(jn);
    struct js_claim_scan *scan = xcalloc(1, sizeof(*scan));
    scan->cb = cb;
    scan->arg = arg;
    int rc = js_kv_each(j, JS_CLAIMS, ">", js_claim_visit, scan);
    if (scan->skipped > 0)
        log_warn("journal cluster: claims that do not decode were skipped count=%zu",
                 scan->skipped);
    if (scan->too_many)
        log_warn("journal cluster: more than %d claims, the rest were skipped", JOURNAL_CLAIMS_MAX);
    free(scan);
    return rc;
}

/* ---- Blob hints: bucket <prefix>_blobs (journal_blob_claim()) ---- */

/*
 * A hint's value: "B <until unix ms> <node> <repo>" while a node uploads the
 * blob, "A 0 - <repo>" once it landed. Repository names hold no space
 * (journal_api.c checks them), so the repository is the rest.
 */
#define JS_BLOB_VALUE_MAX (24 + JOURNAL_NODE_MAX + JOURNAL_BLOB_REPO_MAX)
/* Claims refused before giving up: each refusal is another node's write, and they are few. */
#define JS_BLOB_ATTEMPTS 4

/*
 * Bind (or create) the bucket of blob hints. They are an economy: one
 * replica, the cheapest write, and losing them (a server's disk, or the
 * server for a while) costs uploads, nothing else. 0, or an error (*why
 * says it, when asked) and the next try is JS_BLOBS_RETRY_MS away.
 */
static int js_blobs_bind(struct journal_js *j, char **why)
{
    int64_t ttl = (int64_t)JS_BLOBS_TTL_DAYS * 24 * 3600 * 1000 * JS_NS_PER_MS;
    int rc =
        js_bucket_open(j, j->bucket[JS_BLOBS], 1, ttl, JS_BLOBS_MAX_BYTES, &j->kv[JS_BLOBS], why);
    if (rc < 0)
        j->blobs_retry_at = clock_mono_ms() + JS_BLOBS_RETRY_MS;
    return rc;
}

/* The bucket of blob hints, bound now if it was not (at most every JS_BLOBS_RETRY_MS), or NULL. */
static kvStore *js_blobs_kv(struct journal_js *j)
{
    pthread_mutex_lock(&j->blobs_lock);
    if (j->kv[JS_BLOBS] == NULL && clock_mono_ms() >= j->blobs_retry_at &&
        js_blobs_bind(j, NULL) == 0)
        log_info("cluster: blob hints are there again");
    kvStore *kv = j->kv[JS_BLOBS];
    pthread_mutex_unlock(&j->blobs_lock);
    return kv;
}

/* A hint as js_blob_write() wrote it: 0 and *out, or FERRY_EPARSE. */
static int js_blob_decode(const void *value, int len, struct journal_blob_hint *out)
{
    memset(out, 0, sizeof(*out));
    if (value == NULL || len < 7 || len > JS_BLOB_VALUE_MAX)
        return FERRY_EPARSE;
    char buf[JS_BLOB_VALUE_MAX + 1];
    memcpy(buf, value, (size_t)len);
    buf[len] = '\0';
    if (strlen(buf) != (size_t)len || (buf[0] != 'A' && buf[0] != 'B') || buf[1] != ' ')
        return FERRY_EPARSE;
    char *end = NULL;
    errno = 0;
    long long until = strtoll(buf + 2, &end, 10);
    if (errno != 0 || end == buf + 2 || *end != ' ' || until < 0)
        return FERRY_EPARSE;
    char *node = end + 1;
    char *sp = strchr(node, ' ');
    if (sp == NULL)
        return FERRY_EPARSE;
    *sp = '\0';
    /* It goes into a mount's URL and token scope: a repository name, or nothing. */
    const char *repo = sp + 1;
    if (!reference_repository_valid(repo))
        return FERRY_EPARSE;
    if (buf[0] == 'B' && journal_node_check(node) < 0)
        return FERRY_EPARSE;
    out->state = buf[0] == 'A' ? JOURNAL_BLOB_AT : JOURNAL_BLOB_BUSY;
    out->until_unix_ms = until;
    out->node = buf[0] == 'B' ? xstrdup(node) : NULL;
    out->repo = xstrdup(repo);
    return 0;
}

/* Write a hint: claimed by `node` until `until` (node NULL: landed), over revision `rev`
 * (0: only if there is none; -1: whatever is there). */
static natsStatus js_blob_write(struct journal_js *j, const char *key, const char *node,
                                int64_t until, const char *repo, int64_t rev)
{
    kvStore *kv = js_blobs_kv(j);
    if (kv == NULL)
        return NATS_NOT_FOUND;
    char *value = node != NULL ? xasprintf("B %" PRId64 " %s %s", until, node, repo)
                               : xasprintf("A 0 - %s", repo);
    uint64_t wrote = 0;
    natsStatus s;
    if (rev < 0)
        s = kvStore_Put(&wrote, kv, key, value, (int)strlen(value));
    else if (rev == 0)
        s = kvStore_Create(&wrote, kv, key, value, (int)strlen(value));
    else
        s = kvStore_Update(&wrote, kv, key, value, (int)strlen(value), (uint64_t)rev);
    free(value);
    return s;
}

/* The hint of `key`: 0 with *out and *rev, FERRY_ENOTFOUND (*rev 0), FERRY_EPARSE (*rev set). */
static int js_blob_read(struct journal_js *j, const char *key, struct journal_blob_hint *out,
                        int64_t *rev)
{
    kvEntry *e = NULL;
    *rev = 0;
    memset(out, 0, sizeof(*out));
    kvStore *kv = js_blobs_kv(j);
    if (kv == NULL)
        return -EAGAIN; /* not bound: its server is down */
    natsStatus s = kvStore_Get(&e, kv, key);
    if (s == NATS_NOT_FOUND)
        return FERRY_ENOTFOUND;
    if (s != NATS_OK)
        return js_error("blob hint read", s, 0);
    *rev = (int64_t)kvEntry_Revision(e);
    int rc = js_blob_decode(kvEntry_Value(e), kvEntry_ValueLen(e), out);
    kvEntry_Destroy(e);
    return rc;
}

/*
 * Landed at the registry (`landed`): AT. Else the digest's claim (`claim`):
 * another node's, not lapsed: BUSY; none, lapsed, or this node's: written
 * (a renewal only when half of it is gone), MINE.
 */
static int js_blob_claim(struct journal *jn, const char *landed, const char *claim,
                         const char *node, const char *repo, uint64_t ttl_ms,
                         struct journal_blob_hint *out)
{
    struct journal_js *j = js_of(jn);
    int64_t rev = 0;
    int rc = js_blob_read(j, landed, out, &rev);
    if (rc == 0 && out->state == JOURNAL_BLOB_AT)
        return 0;
    journal_blob_hint_free(out);
    if (rc < 0 && rc != FERRY_ENOTFOUND && rc != FERRY_EPARSE)
        return rc;
    for (int attempt = 0; attempt < JS_BLOB_ATTEMPTS; attempt++) {
        struct journal_blob_hint h;
        rc = js_blob_read(j, claim, &h, &rev);
        if (rc == FERRY_EPARSE)
            log_warn("journal cluster blob claim is corrupt, claimed over key=%s", claim);
        else if (rc < 0 && rc != FERRY_ENOTFOUND)
            return rc;
        int64_t now = clock_unix_ms();
        bool live = rc == 0 && h.state == JOURNAL_BLOB_BUSY && h.until_unix_ms > now;
        bool mine = live && strcmp(h.node, node) == 0;
        if (live && !mine) {
            *out = h; /* another node's, not lapsed */
            return 0;
        }
        bool fresh = mine && h.until_unix_ms - now > (int64_t)ttl_ms / 2;
        journal_blob_hint_free(&h);
        if (fresh) {
            out->state = JOURNAL_BLOB_MINE;
            return 0;
        }
        /* Nobody's, lapsed, or this node's own: claimed, unless another
         * node writes first. */
        natsStatus s = js_blob_write(j, claim, node, now + (int64_t)ttl_ms, repo, rev);
        if (s == NATS_OK) {
            out->state = JOURNAL_BLOB_MINE;
            return 0;
        }
        if (s != NATS_ERR)
            return js_error("blob hint claim", s, 0);
        /* Refused: another node wrote it meanwhile. Read again. */
    }
    return -EBUSY;
}

static int js_blob_landed(struct journal *jn, const char *key, const char *repo)
{
    natsStatus s = js_blob_write(js_of(jn), key, NULL, 0, repo, -1);
    return s == NATS_OK ? 0 : js_error("blob hint landed", s, 0);
}

static int js_blob_unclaim(struct journal *jn, const char *key, const char *node)
{
    struct journal_js *j = js_of(jn);
    int64_t rev = 0;
    struct journal_blob_hint h;
    int rc = js_blob_read(j, key, &h, &rev);
    if (rc == FERRY_ENOTFOUND || rc == FERRY_EPARSE)
        return 0;
    if (rc < 0)
        return rc;
    bool mine = h.state == JOURNAL_BLOB_BUSY && strcmp(h.node, node) == 0;
    journal_blob_hint_free(&h);
    return mine ? js_kv_purge(j, JS_BLOBS, key, "blob hint unclaim") : 0;
}

/* ---- Shared work: one durable pull consumer for every node ---- */

/* How long opening the shared work waits for the servers (their leaders elected). */
#define JS_WORK_OPEN_WAIT_MS 60000
/* Most entries one fetch asks for; how long a fetch waits when none come. */
#define JS_FETCH_BATCH   256
#define JS_FETCH_WAIT_MS 1000

/* An entry this node holds: its message, to settle or keep alive. */
struct js_held {
    uint64_t seq;
    natsMsg *msg;
    UT_hash_handle hh;
};

struct journal_work {
    struct journal_js *j;
    natsSubscription *sub;
    void (*wake)(void *arg);
    void *arg;
    size_t capacity;
    int64_t keepalive_ms; /* a third of the ack wait */
    pthread_t fetcher;
    bool fetcher_started;
    /* Everything below is under `lock`. */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* room freed, or closing */
    bool closing;
    size_t want;     /* entries to fetch besides those held: journal_work_want() */
    size_t most;     /* the most entries held and ready at once */
    natsMsg **ready; /* fetched, not yet taken: a FIFO */
    size_t ready_head, n_ready, ready_cap;
    struct js_held *held;
    size_t n_held;
    int64_t kept_alive_at;
    bool fetch_failing; /* logged once until a fetch succeeds */
};

static void js_ready_push(struct journal_work *w, natsMsg *m)
{
    if (w->ready_head + w->n_ready == w->ready_cap) {
        if (w->ready_head > 0) {
            memmove(w->ready, w->ready + w->ready_head, w->n_ready * sizeof(*w->ready));
            w->ready_head = 0;
        } else {
            w->ready_cap = w->ready_cap > 0 ? 2 * w->ready_cap : 64;
            w->ready = xrealloc(w->ready, w->ready_cap * sizeof(*w->ready));
        }
    }
    w->ready[w->ready_head + w->n_ready++] = m;
}

static natsMsg *js_ready_pop(struct journal_work *w)
{
    if (w->n_ready == 0)
        return NULL;
    natsMsg *m = w->ready[w->ready_head++];
    if (--w->n_ready == 0)
        w->ready_head = 0;
    return m;
}

/* Tell the servers this node still works on what it holds (and has fetched). */
static void js_keep_alive(struct journal_work *w, int64_t now)
{
    if (now - w->kept_alive_at < w->keepalive_ms)
        return;
    w->kept_alive_at = now;
    struct js_held *h, *tmp;
    HASH_ITER(hh, w->held, h, tmp)
    {
        (void)natsMsg_InProgress(h->msg, NULL);
    }
    for (size_t i = 0; i < w->n_ready; i++)
        (void)natsMsg_InProgress(w->ready[w->ready_head + i], NULL);
}

static void js_wait_ms(struct journal_work *w, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    (void)pthread_cond_timedwait(&w->cond, &w->lock, &until);
}

/*
 * One fetch of up to `batch` entries: those the consumer has now (a no-wait
 * pull), or else the first to come within `wait_ms` (a pull of one, which
 * the servers answer as soon as one comes: a pull of the whole batch would
 * keep what came waiting for the rest until it expired). NATS_OK with the
 * list (possibly empty: nothing came), or the servers' error.
 */
static natsStatus js_fetch(struct journal_work *w, int batch, int64_t wait_ms, natsMsgList *list)
{
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = batch;
    req.NoWait = true;
    req.Expires = wait_ms * JS_NS_PER_MS; /* how long the client waits for the answer */
    natsStatus s = natsSubscription_FetchRequest(list, w->sub, &req);
    if (s == NATS_OK && list->Count > 0)
        return NATS_OK;
    natsMsgList_Destroy(list);
    if (s != NATS_OK && s != NATS_NOT_FOUND && s != NATS_TIMEOUT)
        return s;
    jsFetchRequest_Init(&req);
    req.Batch = 1;
    req.Expires = wait_ms * JS_NS_PER_MS;
    s = natsSubscription_FetchRequest(list, w->sub, &req);
    return s == NATS_NOT_FOUND || s == NATS_TIMEOUT ? NATS_OK : s;
}

/*
 * The fetcher: asks the consumer for as many entries as the caller wants
 * and there is room for, and keeps alive what the node holds. A fetch
 * blocks for at most JS_FETCH_WAIT_MS, so closing never waits longer.
 */
static void *js_fetcher(void *arg)
{
    struct journal_work *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->closing) {
        js_keep_alive(w, clock_mono_ms());
        size_t busy = w->n_ready + w->n_held;
        size_t room = busy < w->capacity ? w->capacity - busy : 0;
        size_t wanted = w->want > w->n_ready ? w->want - w->n_ready : 0;
        if (wanted < room)
            room = wanted;
        if (room == 0) {
            js_wait_ms(w, w->keepalive_ms);
            continue;
        }
        pthread_mutex_unlock(&w->lock);
        natsMsgList list = {0};
        int batch = room < JS_FETCH_BATCH ? (int)room : JS_FETCH_BATCH;
        /* Short enough that the keep-alives between two fetches stay on time. */
        int64_t wait =
            w->keepalive_ms / 2 < JS_FETCH_WAIT_MS ? w->keepalive_ms / 2 : JS_FETCH_WAIT_MS;
        natsStatus s = js_fetch(w, batch, wait, &list);
        pthread_mutex_lock(&w->lock);
        if (s == NATS_OK) {
            for (int i = 0; i < list.Count; i++) {
                js_ready_push(w, list.Msgs[i]);
                list.Msgs[i] = NULL;
            }
            natsMsgList_Destroy(&list);
            if (w->n_ready + w->n_held > w->most)
                w->most = w->n_ready + w->n_held;
            if (w->fetch_failing)
                log_info("journal cluster: taking entries again");
            w->fetch_failing = false;
            if (w->n_ready > 0 && w->wake != NULL) {
                pthread_mutex_unlock(&w->lock);
                w->wake(w->arg);
                pthread_mutex_lock(&w->lock);
            }
        } else {
            if (!w->fetch_failing)
                log_warn("journal cluster: cannot take entries: %s", natsStatus_GetText(s));
            w->fetch_failing = true;
            js_wait_ms(w, 500);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static int js_work_open(struct journal *jn, const struct journal_work_options *o,
                        struct journal_work **out)
{
    struct journal_js *j = js_of(jn);
    *out = NULL;
    if (o == NULL || o->capacity == 0 || o->ack_wait_ms < JOURNAL_WORK_MIN_ACK_WAIT_MS)
        return FERRY_EINVAL;
    struct journal_work *w = xcalloc(1, sizeof(*w));
    w->j = j;
    w->wake = o->wake;
    w->arg = o->arg;
    w->capacity = o->capacity;
    w->want = o->want;
    w->keepalive_ms = (int64_t)o->ack_wait_ms / 3;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);

    /*
     * One durable consumer for every node: explicit acks, redelivered after
     * the ack wait for ever (a node's death must never drop an entry), and
     * room for what all the nodes hold between them (each caps its own at
     * `capacity`). Made, or brought to this config (a node started with
     * another ack wait updates it), then bound: a subscribe that made it
     * would refuse to bind to one whose config differs.
     */
    char *filter = xasprintf("%s.>", j->subject);
    char *durable = xasprintf("%s_engine", j->stream);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = (int64_t)o->ack_wait_ms * JS_NS_PER_MS;
    cc.MaxDeliver = -1;
    cc.MaxAckPending = JS_MAX_ACK_PENDING;
    cc.DeliverPolicy = js_DeliverAll;
    cc.FilterSubject = filter;
    /* The servers may be electing a leader (one restarted with this node):
     * "temporarily unavailable", or no answer. The node waits for them, as
     * it waited for its journal to open, rather than exit. */
    int64_t until = clock_mono_ms() + JS_WORK_OPEN_WAIT_MS;
    natsStatus s;
    jsErrCode jerr;
    for (;;) {
        jsConsumerInfo *ci = NULL;
        jerr = 0;
        s = js_AddConsumer(&ci, j->js, j->stream, &cc, NULL, &jerr);
        if (s != NATS_OK) {
            jerr = 0;
            s = js_UpdateConsumer(&ci, j->js, j->stream, &cc, NULL, &jerr);
        }
        jsConsumerInfo_Destroy(ci);
        if (s == NATS_OK) {
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Stream = j->stream;
            so.Consumer = durable;
            s = js_PullSubscribe(&w->sub, j->js, filter, durable, NULL, &so, &jerr);
        }
        if (s == NATS_OK || s == NATS_INVALID_ARG || clock_mono_ms() >= until)
            break;
        log_warn("journal cluster: the shared consumer is not open yet, trying again in 1 s: "
                 "%s (%d)",
                 natsStatus_GetText(s), (int)jerr);
        (void)nanosleep(&(struct timespec){.tv_sec = 1}, NULL);
    }
    free(filter);
    free(durable);
    if (s != NATS_OK) {
        int rc = js_error("consumer", s, jerr);
        log_error("journal cluster: cannot open the shared consumer: %s (%d)",
                  natsStatus_GetText(s), (int)jerr);
        journal_work_close(w, false);
        return rc;
    }
    if (pthread_create(&w->fetcher, NULL, js_fetcher, w) != 0) {
        journal_work_close(w, false);
        return -EAGAIN;
    }
    w->fetcher_started = true;
    *out = w;
    return 0;
}

size_t journal_work_take(struct journal_work *w, size_t max,
                         int (*cb)(const struct journal_entry *e, void *arg), void *arg)
{
    size_t given = 0;
    if (w == NULL)
        return 0;
    while (given < max) {
        pthread_mutex_lock(&w->lock);
        natsMsg *m = js_ready_pop(w);
        pthread_mutex_unlock(&w->lock);
        if (m == NULL)
            break;
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
            log_warn("journal cluster: an entry without metadata, left to come again");
            natsMsg_Destroy(m);
            continue;
        }
        uint64_t seq = meta->Sequence.Stream;
        uint64_t delivered = meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
        struct journal_entry e;
        if (js_msg_entry(w->j, m, seq, &e) < 0) {
            /* It can never decode: taken out for good (js_msg_entry() said why). */
            (void)natsMsg_Term(m, NULL);
            natsMsg_Destroy(m);
            continue;
        }
        pthread_mutex_lock(&w->lock);
        struct js_held *h = NULL;
        HASH_FIND(hh, w->held, &seq, sizeof(seq), h);
        bool again = h != NULL;
        if (again) {
            /* Came again while this node works on it (a keep-alive was late): keep the newer. */
            natsMsg_Destroy(h->msg);
            h->msg = m;
        } else {
            h = xcalloc(1, sizeof(*h));
            h->seq = seq;
            h->msg = m;
            HASH_ADD(hh, w->held, seq, sizeof(h->seq), h);
            w->n_held++;
        }
        /* What was wanted came: the caller asks again once it has it. An
         * entry dropped, or come again, leaves the want as it was. */
        if (!again && w->want > 0)
            w->want--;
        pthread_mutex_unlock(&w->lock);
        if (!again) {
            if (delivered > 1)
                log_info("journal cluster: entry came again seq=%" PRIu64 " deliveries=%" PRIu64,
                         seq, delivered);
            given++;
            (void)cb(&e, arg); /* the engine holds whatever it is given */
        }
        journal_entry_release(&e);
    }
    return given;
}

void journal_work_want(struct journal_work *w, size_t n)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    if (n > w->want)
        pthread_cond_signal(&w->cond);
    w->want = n;
    pthread_mutex_unlock(&w->lock);
}

void journal_work_settle(struct journal_work *w, uint64_t seq)
{
    struct js_held *h = NULL;
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    HASH_FIND(hh, w->held, &seq, sizeof(seq), h);
    if (h != NULL) {
        HASH_DEL(w->held, h);
        w->n_held--;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    if (h == NULL)
        return;
    /* Not waited for: an ack lost on the way brings the entry back, and running it is a no-op. */
    natsStatus s = natsMsg_Ack(h->msg, NULL);
    if (s != NATS_OK)
        log_warn("journal cluster: cannot settle seq=%" PRIu64 ": %s", seq, natsStatus_GetText(s));
    natsMsg_Destroy(h->msg);
    free(h);
}

void journal_work_counts(struct journal_work *w, size_t *held, size_t *ready, size_t *most)
{
    *held = *ready = 0;
    if (most != NULL)
        *most = 0;
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    *held = w->n_held;
    *ready = w->n_ready;
    if (most != NULL)
        *most = w->most;
    pthread_mutex_unlock(&w->lock);
}

void journal_work_close(struct journal_work *w, bool give_back)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->closing = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (w->fetcher_started)
        pthread_join(w->fetcher, NULL);
    /* Given back (a nak), the servers give them to the other nodes now, not
     * after the ack wait; a nak lost on the way costs only that wait. */
    natsMsg *m;
    while ((m = js_ready_pop(w)) != NULL) {
        if (give_back)
            (void)natsMsg_Nak(m, NULL);
        natsMsg_Destroy(m);
    }
    struct js_held *h, *tmp;
    HASH_ITER(hh, w->held, h, tmp)
    {
        HASH_DEL(w->held, h);
        if (give_back)
            (void)natsMsg_Nak(h->msg, NULL);
        natsMsg_Destroy(h->msg);
        free(h);
    }
    if (w->sub != NULL) {
        /* Bound to a consumer this library did not make (js_AddConsumer() did),
         * so unsubscribing leaves the consumer, which the other nodes share;
         * without it the subscription would keep its connection alive. */
        (void)natsSubscription_Unsubscribe(w->sub);
        natsSubscription_Destroy(w->sub);
    }
    free(w->ready);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* ---- A node's own: cursors and poll memos, in its local journal ---- */

static int js_cursor_get(struct journal *jn, const char *name, uint64_t *seq)
{
    return journal_cursor_get(js_of(jn)->local, name, seq);
}

static int js_cursor_find(struct journal *jn, const char *name, uint64_t *seq)
{
    return journal_cursor_find(js_of(jn)->local, name, seq);
}

static int js_cursor_set(struct journal *jn, const char *name, uint64_t seq)
{
    return journal_cursor_set(js_of(jn)->local, name, seq);
}

static int js_poll_memo_get(struct journal *jn, const char *source, const char *repository,
                            struct journal_poll_memo *out)
{
    return journal_poll_memo_get(js_of(jn)->local, source, repository, out);
}

static int js_poll_memo_put(struct journal *jn, const char *source, const char *repository,
                            const struct journal_poll_memo *memo)
{
    return journal_poll_memo_put(js_of(jn)->local, source, repository, memo);
}

static int js_poll_memo_prune(struct journal *jn, const char *source, char *const *keep,
                              size_t n_keep, uint64_t *deleted)
{
    return journal_poll_memo_prune(js_of(jn)->local, source, keep, n_keep, deleted);
}

static int js_poll_memo_clear(struct journal *jn)
{
    return journal_poll_memo_clear(js_of(jn)->local);
}

int journal_js_requests(struct journal *jn, uint64_t *n)
{
    *n = 0;
    if (jn == NULL || jn->ops != &journal_js_ops)
        return FERRY_EINVAL;
    natsStatistics *st = NULL;
    if (natsStatistics_Create(&st) != NATS_OK)
        return -ENOMEM;
    natsStatus s = natsConnection_GetStats(js_of(jn)->nc, st);
    if (s == NATS_OK)
        s = natsStatistics_GetCounts(st, NULL, NULL, n, NULL, NULL);
    natsStatistics_Destroy(st);
    return s == NATS_OK ? 0 : js_error("stats", s, 0);
}

void journal_process_exit(void)
{
    if (atomic_load(&js_used))
        (void)nats_CloseAndWait(5000);
}

const struct journal_ops journal_js_ops = {
    .name = "jetstream",
    .close = js_close,
    .append = js_append,
    .last_seq = js_last_seq,
    .get = js_get,
    .scan = js_scan,
    .entry_set_ignored = js_entry_set_ignored,
    .retain = js_retain,
    .get_stats = js_get_stats,
    .cursor_get = js_cursor_get,
    .cursor_find = js_cursor_find,
    .cursor_set = js_cursor_set,
    .tagstate_get = js_tagstate_get,
    .tagstate_put = js_tagstate_put,
    .tagstate_scan = js_tagstate_scan,
    .fence_get = js_fence_get,
    .fence_raise = js_fence_raise,
    .fence_raise_unsynced = js_fence_raise,
    .job_put = js_job_put,
    .job_get = js_job_get,
    .job_scan = js_job_scan,
    .job_scan_open = js_job_scan_open,
    .job_scan_in = js_job_scan_in,
    .poll_memo_get = js_poll_memo_get,
    .poll_memo_put = js_poll_memo_put,
    .poll_memo_prune = js_poll_memo_prune,
    .poll_memo_clear = js_poll_memo_clear,
    .work_open = js_work_open,
    .lease_take = js_lease_take,
    .lease_give = js_lease_give,
    .tag_hold = js_tag_hold,
    .tag_release = js_tag_release,
    .node_beat = js_node_beat,
    .node_forget = js_node_forget,
    .node_scan = js_node_scan,
    .claim_put = js_claim_put,
    .claim_drop = js_claim_drop,
    .claim_scan = js_claim_scan,
    .blob_claim = js_blob_claim,
    .blob_landed = js_blob_landed,
    .blob_unclaim = js_blob_unclaim,
};
