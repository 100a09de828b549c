/*
 * metrics.c: GET /metrics in the Prometheus text format, and the throughput
 * samples (bytes sent to each registry every API_RATE_PERIOD_S) that
 * /v1/status and the dashboard draw.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "daemon/api_int.h"
#include "registry/http.h"

/* The most /metrics writes; past it the answer is 500, not a cut text. */
#define API_METRICS_MAX (4 * 1024 * 1024)

/* ---- throughput samples ---- */

void api_rates_sample(uv_timer_t *timer)
{
    struct api *a = timer->data;
    if (a->engine == NULL)
        return;
    int64_t now = clock_unix_ms() / 1000;
    struct engine_destination_stats st;
    for (size_t i = 0; i < a->config->n_registries && engine_destination_stats(a->engine, i, &st);
         i++) {
        /* Bytes sent to it as they pass, not when a job ends: a long upload
         * shows as a steady rate, not as one spike at its end. */
        struct api_rate *r = &a->rates[i];
        uint64_t delta = st.http.bytes_sent - r->last_bytes;
        r->last_bytes = st.http.bytes_sent;
        r->times[r->next] = now;
        r->rates[r->next] = (double)delta / API_RATE_PERIOD_S;
        r->next = (r->next + 1) % API_RATE_SAMPLES;
        if (r->count < API_RATE_SAMPLES)
            r->count++;
    }
}

double api_rate_last_minute(const struct api_rate *r)
{
    size_t n = r->count < API_RATE_MINUTE_SAMPLES ? r->count : API_RATE_MINUTE_SAMPLES;
    if (n == 0)
        return 0;
    double sum = 0;
    for (size_t k = 1; k <= n; k++)
        sum += r->rates[(r->next + API_RATE_SAMPLES - k) % API_RATE_SAMPLES];
    return sum / (double)n;
}

cJSON *api_rate_samples_json(const struct api_rate *r)
{
    cJSON *samples = cJSON_CreateArray();
    for (size_t k = r->count; k > 0; k--) {
        size_t at = (r->next + API_RATE_SAMPLES - k) % API_RATE_SAMPLES;
        cJSON *pt = cJSON_CreateArray();
        cJSON_AddItemToArray(pt, cJSON_CreateNumber((double)r->times[at]));
        cJSON_AddItemToArray(pt, cJSON_CreateNumber(r->rates[at]));
        cJSON_AddItemToArray(samples, pt);
    }
    return samples;
}

/* ---- the text ---- */

/* The text being written, and the first append that did not fit (then nothing more is). */
struct metrics_text {
    struct buf b;
    int rc;
};

static void text_append(struct metrics_text *t, const char *data, size_t len)
{
    if (t->rc == 0)
        t->rc = buf_append(&t->b, data, len);
}

static void text_printf(struct metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void text_printf(struct metrics_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = xvasprintf(fmt, ap);
    va_end(ap);
    text_append(t, line, strlen(line));
    free(line);
}

/* A label value with \, " and newlines escaped, as the text format wants. */
static void text_label(struct metrics_text *t, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"') {
            text_append(t, "\\", 1);
            text_append(t, p, 1);
        } else if (*p == '\n') {
            text_append(t, "\\n", 2);
        } else {
            text_append(t, p, 1);
        }
    }
}

static void metric_head(struct metrics_text *t, const char *name, const char *type,
                        const char *help)
{
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* NAME{KEY="VALUE"} with one label, up to the sample's value. */
static void metric_1(struct metrics_text *t, const char *name, const char *key, const char *value)
{
    text_printf(t, "%s{%s=\"", name, key);
    text_label(t, value);
    text_append(t, "\"} ", 3);
}

/* ---- the families ---- */

/* What one answer reads: the engine's stats of every registry, taken once. */
struct metrics_view {
    struct api *a;
    const struct config *config;
    struct engine_destination_stats *stats;
    size_t n;
    int64_t now_unix_ms;
};

/* Writes a destination's sample value and the line's end. */
typedef void (*metric_value_cb)(struct metrics_text *t, const struct metrics_view *v,
                                const struct engine_destination_stats *st);

/* A family with one sample per destination (a registry some rule sends to): NAME{destination="D"}.
 */
static void metric_per_destination(struct metrics_text *t, const struct metrics_view *v,
                                   const char *name, const char *type, const char *help,
                                   metric_value_cb value)
{
    metric_head(t, name, type, help);
    for (size_t i = 0; i < v->n; i++) {
        if (!api_is_destination(v->config, v->stats[i].name))
            continue;
        metric_1(t, name, "destination", v->stats[i].name);
        value(t, v, &v->stats[i]);
    }
}

static void value_lag(struct metrics_text *t, const struct metrics_view *v,
                      const struct engine_destination_stats *st)
{
    text_printf(t, "%.3f\n", api_lag_seconds(st, v->now_unix_ms));
}

static void value_backlog(struct metrics_text *t, const struct metrics_view *v,
                          const struct engine_destination_stats *st)
{
    (void)v;
    text_printf(t, "%" PRIu64 "\n", st->backlog);
}

static void value_retries(struct metrics_text *t, const struct metrics_view *v,
                          const struct engine_destination_stats *st)
{
    (void)v;
    text_printf(t, "%" PRIu64 "\n", st->retries);
}

static void value_circuit_open(struct metrics_text *t, const struct metrics_view *v,
                               const struct engine_destination_stats *st)
{
    (void)v;
    text_printf(t, "%d\n", st->circuit != ENGINE_CIRCUIT_CLOSED);
}

static void metrics_journal(struct metrics_text *t, const struct metrics_view *v)
{
    const struct config *c = v->config;
    metric_head(t, "ferry_journal_entries_total", "counter",
                "Journal entries appended since start, by source registry.");
    for (size_t i = 0; i < c->n_registries; i++) {
        if (!api_is_source(c, c->registries[i].name))
            continue;
        metric_1(t, "ferry_journal_entries_total", "source", c->registries[i].name);
        text_printf(t, "%" PRIu64 "\n", v->a->sources[i].entries);
    }
    metric_head(t, "ferry_journal_last_seq", "gauge", "The newest journal sequence number.");
    text_printf(t, "ferry_journal_last_seq %" PRIu64 "\n", journal_last_seq(v->a->journal));
}

static void metrics_jobs(struct metrics_text *t, const struct metrics_view *v)
{
    static const char *const states[] = {"pending", "in_progress", "complete", "failed",
                                         "superseded"};
    metric_head(t, "ferry_jobs", "gauge",
                "Jobs by destination and state: pending, in_progress and failed now; complete "
                "and superseded since start.");
    for (size_t i = 0; i < v->n; i++) {
        const struct engine_destination_stats *st = &v->stats[i];
        if (!api_is_destination(v->config, st->name))
            continue;
        const uint64_t values[] = {st->backlog - st->running, st->running, st->complete,
                                   st->failing, st->superseded};
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
            text_printf(t, "ferry_jobs{destination=\"");
            text_label(t, st->name);
            text_printf(t, "\",state=\"%s\"} %" PRIu64 "\n", states[k], values[k]);
        }
    }
}

static void metrics_http(struct metrics_text *t, const struct metrics_view *v)
{
    metric_head(t, "ferry_bytes_total", "counter",
                "HTTP bytes by registry and direction (sent: requests, received: responses).");
    for (size_t i = 0; i < v->n; i++) {
        for (int dir = 0; dir < 2; dir++) {
            text_printf(t, "ferry_bytes_total{registry=\"");
            text_label(t, v->stats[i].name);
            text_printf(t, "\",direction=\"%s\"} %" PRIu64 "\n", dir == 0 ? "sent" : "received",
                        dir == 0 ? v->stats[i].http.bytes_sent : v->stats[i].http.bytes_received);
        }
    }
    metric_head(t, "ferry_http_requests_total", "counter",
                "Finished HTTP requests by registry, method and status (0: no response).");
    for (size_t i = 0; i < v->n; i++) {
        for (size_t k = 0; k < v->stats[i].http.n_codes; k++) {
            const struct http_code_count *cc = &v->stats[i].http.codes[k];
            text_printf(t, "ferry_http_requests_total{registry=\"");
            text_label(t, v->stats[i].name);
            text_printf(t, "\",method=\"%s\",code=\"%u\"} %" PRIu64 "\n",
                        http_method_names[cc->method], (unsigned)cc->code, cc->count);
        }
    }
    metric_head(t, "ferry_registry_invalid_names_total", "counter",
                "Repository names and tags from a registry's listings that failed validation and "
                "were skipped.");
    for (size_t i = 0; i < v->n; i++) {
        uint64_t invalid = v->stats[i].invalid_names;
        if (v->a->poller != NULL)
            invalid += poller_invalid_names(v->a->poller, v->stats[i].name);
        metric_1(t, "ferry_registry_invalid_names_total", "registry", v->stats[i].name);
        text_printf(t, "%" PRIu64 "\n", invalid);
    }
}

static void metrics_latency(struct metrics_text *t, const struct metrics_view *v)
{
    metric_head(t, "ferry_push_to_replicated_seconds", "histogram",
                "From an entry reaching the journal to its job being COMPLETE.");
    for (size_t i = 0; i < v->n; i++) {
        const struct engine_destination_stats *st = &v->stats[i];
        if (!api_is_destination(v->config, st->name))
            continue;
        uint64_t cum = 0;
        for (size_t k = 0; k <= ENGINE_LATENCY_BUCKETS; k++) {
            cum += st->latency_buckets[k];
            text_printf(t, "ferry_push_to_replicated_seconds_bucket{destination=\"");
            text_label(t, st->name);
            if (k < ENGINE_LATENCY_BUCKETS)
                text_printf(t, "\",le=\"%g\"} %" PRIu64 "\n", engine_latency_bounds[k], cum);
            else
                text_printf(t, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
        }
        metric_1(t, "ferry_push_to_replicated_seconds_sum", "destination", st->name);
        text_printf(t, "%.3f\n", st->latency_sum);
        metric_1(t, "ferry_push_to_replicated_seconds_count", "destination", st->name);
        text_printf(t, "%" PRIu64 "\n", st->latency_count);
    }
}

static void metrics_webhook(struct metrics_text *t, const struct metrics_view *v)
{
    struct ingest_stats in;
    if (v->a->ingest == NULL)
        return;
    ingest_get_stats(v->a->ingest, &in);
    metric_head(t, "ferry_webhook_events_total", "counter",
                "Webhook events by outcome (accepted, duplicate, ignored).");
    text_printf(t,
                "ferry_webhook_events_total{outcome=\"accepted\"} %" PRIu64 "\n"
                "ferry_webhook_events_total{outcome=\"duplicate\"} %" PRIu64 "\n"
                "ferry_webhook_events_total{outcome=\"ignored\"} %" PRIu64 "\n",
                in.events_accepted, in.events_duplicate, in.events_ignored);
}

/*
 * In a cluster every sample says which node it came from: `node="NAME"`
 * first among its labels (node names need no escaping: config.c checks
 * them), so that one scrape config takes every node.
 */
static void metrics_label_node(struct metrics_text *t, const char *node)
{
    struct metrics_text out = {.rc = 0};
    buf_init(&out.b, API_METRICS_MAX);
    const char *p = t->b.data != NULL ? t->b.data : "";
    const char *end = p + t->b.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl != NULL ? nl + 1 : end;
        size_t name = strcspn(p, "{ \n");
        if (*p == '#' || p + name >= eol || (p[name] != '{' && p[name] != ' ')) {
            text_append(&out, p, (size_t)(eol - p));
        } else if (p[name] == '{') {
            text_append(&out, p, name + 1);
            text_printf(&out, "node=\"%s\",", node);
            text_append(&out, p + name + 1, (size_t)(eol - p - (ptrdiff_t)name - 1));
        } else {
            text_append(&out, p, name);
            text_printf(&out, "{node=\"%s\"}", node);
            text_append(&out, p + name, (size_t)(eol - p - (ptrdiff_t)name));
        }
        p = eol;
    }
    buf_release(&t->b);
    *t = out;
}

void api_get_metrics(struct api *a, struct server_request *req)
{
    const struct config *c = a->config;
    struct metrics_text t = {.rc = 0};
    struct metrics_view v = {
        .a = a,
        .config = c,
        .stats = xcalloc(c->n_registries + 1, sizeof(*v.stats)),
        .now_unix_ms = clock_unix_ms(),
    };
    while (a->engine != NULL && v.n < c->n_registries &&
           engine_destination_stats(a->engine, v.n, &v.stats[v.n]))
        v.n++;
    buf_init(&t.b, API_METRICS_MAX);

    metrics_journal(&t, &v);
    metrics_jobs(&t, &v);
    metric_per_destination(&t, &v, "ferry_replication_lag_seconds", "gauge",
                           "Age of the oldest unfinished journal entry per destination; 0 when "
                           "idle.",
                           value_lag);
    metric_per_destination(&t, &v, "ferry_backlog", "gauge", "Unfinished jobs per destination.",
                           value_backlog);
    metrics_http(&t, &v);
    metric_per_destination(&t, &v, "ferry_retries_total", "counter",
                           "Job attempts that failed and were retried.", value_retries);
    metric_per_destination(&t, &v, "ferry_circuit_open", "gauge",
                           "1 while a destination's circuit breaker is open or half-open.",
                           value_circuit_open);
    metrics_latency(&t, &v);
    metrics_webhook(&t, &v);
    if (a->cluster != NULL && t.rc == 0)
        metrics_label_node(&t, cluster_node_name(a->cluster));

    if (t.rc < 0) {
        log_error("metrics over their cap bytes=%d error=\"%s\"", API_METRICS_MAX,
                  ferry_strerror(t.rc));
        server_respond_error(req, 500, "the metrics are over their size cap");
    } else {
        server_respond(req, 200, "text/plain; version=0.0.4", t.b.data != NULL ? t.b.data : "",
                       t.b.len);
    }
    buf_release(&t.b);
    free(v.stats);
}
