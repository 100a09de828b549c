/*
 * cluster.c: one node of a cluster (cluster.h). The heartbeat's journal
 * calls go to the servers and may wait for their timeout, so they run on
 * the loop's thread pool; what they found is applied on the loop.
 */
#include "daemon/cluster.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "journal/journal.h"

/* The lease of a source's poller is "poller:<source>". */
#define CLUSTER_POLLER_LEASE "poller:"

/* ---- the journal the config names ---- */

int cluster_journal_open(const struct config *config, bool read_only, struct journal **out,
                         char **err)
{
    char *dir = xasprintf("%s/journal", config->data_dir);
    struct journal_options jopts = {.read_only = read_only};
    struct journal *local = NULL;
    char *lerr = NULL;
    int rc = journal_open(dir, &jopts, &local, &lerr);
    if (rc < 0) {
        *err = xasprintf("journal %s: %s", dir, lerr != NULL ? lerr : ferry_strerror(rc));
        free(lerr);
        free(dir);
        return rc;
    }
    free(dir);
    const struct config_cluster *cc = config->cluster;
    if (cc == NULL) {
        *out = local;
        return 0;
    }
    struct journal_cluster_options o = {
        .servers = (const char *const *)cc->servers,
        .n_servers = cc->n_servers,
        .user = cc->user,
        .password = cc->password,
        .token = cc->token,
        .creds_file = cc->creds_file,
        .ca_file = cc->ca_file,
        .cert_file = cc->cert_file,
        .key_file = cc->key_file,
        .tls = cc->tls,
        .name = cc->name,
        .stream = cc->stream,
        .bucket_prefix = cc->bucket_prefix,
        .replicas = cc->replicas,
        .duplicate_window_ms = cc->duplicate_window_ms,
        .timeout_ms = cc->timeout_ms,
    };
    char *cerr = NULL;
    rc = journal_open_cluster(&o, local, out, &cerr); /* owns `local` from now on */
    if (rc < 0) {
        *err = xasprintf("the cluster's journal: %s", cerr != NULL ? cerr : ferry_strerror(rc));
        free(cerr);
    }
    return rc;
}

/* ---- the heartbeat ---- */

/* One heartbeat's request and answer: the work's alone while it runs. */
struct cluster_beat {
    int64_t sent_mono_ms; /* when its leases were asked for: they hold CLUSTER_LEASE_MS from then */
    char *info;           /* what the node says of itself */
    char **leases;        /* to take or renew */
    int *held;            /* journal_lease_take()'s answer for each */
    size_t n_leases;
    struct cluster_node *nodes;
    size_t n_nodes;
    int beat_rc, scan_rc;
};

struct cluster {
    uv_loop_t *loop;
    const struct config *config;
    struct journal *journal;
    struct engine *engine;
    char *node;
    uv_timer_t timer;
    uv_work_t work;
    struct cluster_beat *beat; /* the one under way, or NULL */
    bool closing;
    bool beat_failing; /* said once until a beat works again */
    /* What the last heartbeat found. */
    struct cluster_node *nodes;
    size_t n_nodes;
    char **polled; /* sources whose poller lease this node holds */
    size_t n_polled;
    /* The leases were taken before this (monotonic ms), less a margin: past
     * it, with no newer beat applied, this node no longer counts on them. */
    int64_t leases_until;
    bool adopter;       /* holds CLUSTER_ADOPT_LEASE */
    bool adopt_due;     /* a node went away since the last take-up */
    int64_t adopted_at; /* unix ms of the last take-up; 0: never */
    void (*close_cb)(void *);
    void *close_arg;
};

static void cluster_nodes_free(struct cluster_node *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(nodes[i].name);
        free(nodes[i].info);
    }
    free(nodes);
}

static void cluster_beat_free(struct cluster_beat *b)
{
    if (b == NULL)
        return;
    free(b->info);
    for (size_t i = 0; i < b->n_leases; i++)
        free(b->leases[i]);
    free(b->leases);
    free(b->held);
    cluster_nodes_free(b->nodes, b->n_nodes);
    free(b);
}

/* Is registry `name` polled as some rule's source? */
static bool cluster_polls(const struct config *config, const struct config_registry *r)
{
    if (!r->poll)
        return false;
    for (size_t i = 0; i < config->n_rules; i++)
        if (strcmp(config->rules[i].source, r->name) == 0)
            return true;
    return false;
}

/* What this node says of itself: its engine's figures. */
static char *cluster_info(const struct cluster *c)
{
    cJSON *o = cJSON_CreateObject();
    if (c->engine != NULL) {
        struct engine_stats st;
        engine_get_stats(c->engine, &st);
        cJSON_AddNumberToObject(o, "dispatched", (double)st.dispatched);
        cJSON_AddNumberToObject(o, "pending", (double)st.pending);
        cJSON_AddNumberToObject(o, "running", (double)st.running);
        cJSON_AddNumberToObject(o, "complete", (double)st.complete);
        cJSON_AddNumberToObject(o, "failed", (double)st.failed);
        cJSON_AddNumberToObject(o, "superseded", (double)st.superseded);
        cJSON_AddNumberToObject(o, "bytes", (double)st.bytes);
        cJSON_AddNumberToObject(o, "hint_mounts", (double)st.hint_mounts);
        cJSON_AddNumberToObject(o, "hint_waits", (double)st.hint_waits);
        cJSON_AddNumberToObject(o, "held", (double)st.held);
        cJSON_AddNumberToObject(o, "held_most", (double)st.held_most);
    }
    cJSON_AddNumberToObject(o, "polling", (double)c->n_polled);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char *info = xstrdup(text != NULL ? text : "{}");
    free(text);
    return info;
}

/* A heartbeat's request, made on the loop. */
static struct cluster_beat *cluster_beat_new(const struct cluster *c)
{
    struct cluster_beat *b = xcalloc(1, sizeof(*b));
    b->info = cluster_info(c);
    const struct config *config = c->config;
    b->leases = xcalloc(config->n_registries + 1, sizeof(*b->leases));
    b->held = xcalloc(config->n_registries + 1, sizeof(*b->held));
    for (size_t i = 0; i < config->n_registries; i++)
        if (cluster_polls(config, &config->registries[i]))
            b->leases[b->n_leases++] =
                xasprintf(CLUSTER_POLLER_LEASE "%s", config->registries[i].name);
    b->leases[b->n_leases++] = xstrdup(CLUSTER_ADOPT_LEASE);
    return b;
}

static int cluster_node_seen(const char *node, int64_t beat_unix_ms, const char *info, void *arg)
{
    struct cluster_beat *b = arg;
    b->nodes = xrealloc(b->nodes, (b->n_nodes + 1) * sizeof(*b->nodes));
    b->nodes[b->n_nodes++] = (struct cluster_node){
        .name = xstrdup(node),
        .beat_unix_ms = beat_unix_ms,
        .info = xstrdup(info != NULL ? info : ""),
    };
    return 0;
}

/* The heartbeat's calls to the servers: off the loop (or once, at start, on it). */
static void cluster_beat_run(struct journal *j, const char *node, struct cluster_beat *b)
{
    b->sent_mono_ms = clock_mono_ms();
    b->beat_rc = journal_node_beat(j, node, b->info);
    b->scan_rc = journal_node_scan(j, cluster_node_seen, b);
    for (size_t i = 0; i < b->n_leases; i++)
        b->held[i] = journal_lease_take(j, b->leases[i], node, CLUSTER_LEASE_MS, NULL);
}

static bool cluster_alive(const char *node, void *arg)
{
    const struct cluster *c = arg;
    if (strcmp(node, c->node) == 0)
        return true;
    for (size_t i = 0; i < c->n_nodes; i++)
        if (strcmp(c->nodes[i].name, node) == 0)
            return c->nodes[i].alive;
    return false;
}

/* The other nodes alive at the last heartbeat. */
static int cluster_peers(const struct cluster *c)
{
    int peers = 0;
    for (size_t i = 0; i < c->n_nodes; i++)
        peers += c->nodes[i].alive && !c->nodes[i].self;
    return peers;
}

/* What a heartbeat found, on the loop: who is alive, which leases are held, what to take up. */
static void cluster_beat_apply(struct cluster *c, struct cluster_beat *b)
{
    int64_t now = clock_unix_ms();
    int rc = b->beat_rc < 0 ? b->beat_rc : b->scan_rc;
    if (rc < 0 && !c->beat_failing)
        log_warn("cluster: the heartbeat failed node=%s error=\"%s\"", c->node, ferry_strerror(rc));
    else if (rc == 0 && c->beat_failing)
        log_info("cluster: the heartbeat works again node=%s", c->node);
    c->beat_failing = rc < 0;
    if (b->scan_rc == 0) {
        for (size_t i = 0; i < b->n_nodes; i++) {
            struct cluster_node *n = &b->nodes[i];
            n->self = strcmp(n->name, c->node) == 0;
            /* A beat from the future (a clock far ahead, or a forged one) is
             * not taken for life: alive only within the lapse either way. */
            n->alive = n->self || (n->beat_unix_ms >= now - CLUSTER_LAPSE_MS &&
                                   n->beat_unix_ms <= now + CLUSTER_LAPSE_MS);
        }
        /* A node alive at the last beat and not now is gone: its jobs are taken up. */
        for (size_t i = 0; i < c->n_nodes; i++) {
            const struct cluster_node *old = &c->nodes[i];
            bool still = false;
            for (size_t k = 0; k < b->n_nodes && !still; k++)
                still = strcmp(b->nodes[k].name, old->name) == 0 && b->nodes[k].alive;
            if (old->alive && !still) {
                log_warn("cluster: node gone node=%s", old->name);
                c->adopt_due = true;
            }
        }
        cluster_nodes_free(c->nodes, c->n_nodes);
        c->nodes = b->nodes;
        c->n_nodes = b->n_nodes;
        b->nodes = NULL;
        b->n_nodes = 0;
        /* Another node alive: blobs are uploaded once across the nodes (blob hints). */
        if (c->engine != NULL)
            engine_set_peers(c->engine, cluster_peers(c));
    }
    /* A lease not renewed (an error too) is not held: another node may hold it by now. */
    for (size_t i = 0; i < c->n_polled; i++)
        free(c->polled[i]);
    c->n_polled = 0;
    bool adopter = false;
    for (size_t i = 0; i < b->n_leases; i++) {
        bool held = b->held[i] == 1;
        if (strcmp(b->leases[i], CLUSTER_ADOPT_LEASE) == 0) {
            adopter = held;
        } else if (held) {
            c->polled = xrealloc(c->polled, (c->n_polled + 1) * sizeof(*c->polled));
            c->polled[c->n_polled++] = xstrdup(b->leases[i] + strlen(CLUSTER_POLLER_LEASE));
        }
    }
    if (adopter && !c->adopter)
        log_info("cluster: this node takes up the jobs of gone nodes node=%s", c->node);
    c->adopter = adopter;
    c->leases_until = b->sent_mono_ms + CLUSTER_LEASE_MS - CLUSTER_BEAT_MS;
    if (c->adopter && c->engine != NULL && !c->closing &&
        (c->adopt_due || c->adopted_at == 0 || now - c->adopted_at >= CLUSTER_ADOPT_EVERY_MS)) {
        int n = engine_adopt(c->engine, cluster_alive, c);
        if (n > 0)
            log_warn("cluster: took up the jobs of gone nodes jobs=%d", n);
        /* A scan that failed (the servers just lost one) is tried again at the next beat. */
        if (n >= 0) {
            c->adopt_due = false;
            c->adopted_at = now;
        }
    }
}

static void cluster_finish_close(struct cluster *c);

static void cluster_work(uv_work_t *work)
{
    struct cluster *c = work->data;
    cluster_beat_run(c->journal, c->node, c->beat);
}

static void cluster_work_done(uv_work_t *work, int status)
{
    struct cluster *c = work->data;
    struct cluster_beat *b = c->beat;
    c->beat = NULL;
    if (status == 0 && !c->closing)
        cluster_beat_apply(c, b);
    cluster_beat_free(b);
    if (c->closing)
        cluster_finish_close(c);
}

static void cluster_tick(uv_timer_t *timer)
{
    struct cluster *c = timer->data;
    if (c->beat != NULL || c->closing)
        return; /* the last one is still under way: this one is skipped */
    c->beat = cluster_beat_new(c);
    c->work.data = c;
    int rc = uv_queue_work(c->loop, &c->work, cluster_work, cluster_work_done);
    if (rc < 0) {
        log_warn("cluster: no heartbeat error=\"%s\"", uv_strerror(rc));
        cluster_beat_free(c->beat);
        c->beat = NULL;
    }
}

/* ---- lifecycle ---- */

int cluster_new(uv_loop_t *loop, const struct config *config, struct journal *journal,
                struct cluster **out)
{
    *out = NULL;
    if (config->cluster == NULL)
        return 0;
    struct cluster *c = xcalloc(1, sizeof(*c));
    int rc = uv_timer_init(loop, &c->timer);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->timer.data = c;
    c->loop = loop;
    c->config = config;
    c->journal = journal;
    c->node = xstrdup(config->cluster->name);
    /* The first beat on the loop: the poller's first round asks for its leases. */
    struct cluster_beat *b = cluster_beat_new(c);
    cluster_beat_run(journal, c->node, b);
    cluster_beat_apply(c, b);
    cluster_beat_free(b);
    rc = uv_timer_start(&c->timer, cluster_tick, CLUSTER_BEAT_MS, CLUSTER_BEAT_MS);
    if (rc < 0) {
        cluster_close(c, NULL, NULL);
        return rc;
    }
    log_info("cluster: node=%s nodes=%zu polling=%zu", c->node, c->n_nodes, c->n_polled);
    *out = c;
    return 0;
}

void cluster_set_engine(struct cluster *c, struct engine *e)
{
    if (c == NULL)
        return;
    c->engine = e;
    /* A new engine (a start, a reload) looks for jobs to take up at the next beat. */
    c->adopted_at = 0;
    if (e != NULL)
        engine_set_peers(e, cluster_peers(c));
}

void cluster_reconfigure(struct cluster *c, const struct config *config)
{
    if (c != NULL)
        c->config = config;
}

static bool cluster_same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool cluster_config_same(const struct config *a, const struct config *b)
{
    const struct config_cluster *x = a->cluster, *y = b->cluster;
    if (x == NULL || y == NULL)
        return x == y;
    if (x->n_servers != y->n_servers)
        return false;
    for (size_t i = 0; i < x->n_servers; i++)
        if (strcmp(x->servers[i], y->servers[i]) != 0)
            return false;
    return cluster_same_string(x->name, y->name) && cluster_same_string(x->user, y->user) &&
           cluster_same_string(x->password, y->password) &&
           cluster_same_string(x->token, y->token) &&
           cluster_same_string(x->creds_file, y->creds_file) &&
           cluster_same_string(x->ca_file, y->ca_file) &&
           cluster_same_string(x->cert_file, y->cert_file) &&
           cluster_same_string(x->key_file, y->key_file) && x->tls == y->tls &&
           cluster_same_string(x->stream, y->stream) &&
           cluster_same_string(x->bucket_prefix, y->bucket_prefix) && x->replicas == y->replicas &&
           x->duplicate_window_ms == y->duplicate_window_ms && x->ack_wait_ms == y->ack_wait_ms &&
           x->timeout_ms == y->timeout_ms;
}

bool cluster_may_poll(const char *source, void *arg)
{
    const struct cluster *c = arg;
    if (clock_mono_ms() >= c->leases_until)
        return false; /* not renewed in time: another node may hold it now */
    for (size_t i = 0; i < c->n_polled; i++)
        if (strcmp(c->polled[i], source) == 0)
            return true;
    return false;
}

const char *cluster_node_name(const struct cluster *c)
{
    return c->node;
}

size_t cluster_nodes(const struct cluster *c, const struct cluster_node **out)
{
    *out = c->nodes;
    return c->n_nodes;
}

static void cluster_timer_closed(uv_handle_t *handle)
{
    struct cluster *c = handle->data;
    void (*cb)(void *) = c->close_cb;
    void *arg = c->close_arg;
    cluster_nodes_free(c->nodes, c->n_nodes);
    for (size_t i = 0; i < c->n_polled; i++)
        free(c->polled[i]);
    free(c->polled);
    free(c->node);
    free(c);
    if (cb != NULL)
        cb(arg);
}

/* No beat under way: give the leases back and leave, so that others need not wait them out. */
static void cluster_finish_close(struct cluster *c)
{
    for (size_t i = 0; i < c->n_polled; i++) {
        char *lease = xasprintf(CLUSTER_POLLER_LEASE "%s", c->polled[i]);
        if (journal_lease_give(c->journal, lease, c->node) < 0)
            log_warn("cluster: cannot give back lease=%s", lease);
        free(lease);
    }
    if (c->adopter && journal_lease_give(c->journal, CLUSTER_ADOPT_LEASE, c->node) < 0)
        log_warn("cluster: cannot give back lease=%s", CLUSTER_ADOPT_LEASE);
    if (journal_node_forget(c->journal, c->node) < 0)
        log_warn("cluster: cannot say this node left node=%s", c->node);
    uv_close((uv_handle_t *)&c->timer, cluster_timer_closed);
}

void cluster_close(struct cluster *c, void (*cb)(void *arg), void *arg)
{
    if (c == NULL) {
        if (cb != NULL)
            cb(arg);
        return;
    }
    c->closing = true;
    c->close_cb = cb;
    c->close_arg = arg;
    c->engine = NULL;
    if (uv_timer_stop(&c->timer) < 0)
        log_warn("cluster: the heartbeat's timer did not stop");
    if (c->beat == NULL)
        cluster_finish_close(c); /* else when the beat under way ends */
}
