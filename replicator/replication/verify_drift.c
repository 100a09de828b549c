/*
 * verify_drift.c: the drift a check finds (what a destination lacks or
 * holds differently), and the report of the run: drift lines sorted, the
 * failures, and the summary, as text or JSON lines.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "replication/verify_int.h"

static const char *const drift_names[] = {"missing", "differs", "incomplete", "referrers", "kept"};

/* ---- drift ---- */

struct verify_drift *verify_drift_add(struct verify_check *c, enum drift_kind kind, char *detail)
{
    struct verify *v = c->t->v;
    v->drifts = xrealloc(v->drifts, (v->n_drifts + 1) * sizeof(*v->drifts));
    struct verify_drift *d = &v->drifts[v->n_drifts++];
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->destination = c->dest->registry;
    d->repository = xstrdup(c->repository);
    d->tag = xstrdup(c->t->tag);
    d->detail = detail;
    d->rule = c->t->rule->name;
    d->source = c->t->rule->source;
    d->source_repository = xstrdup(c->t->repository);
    d->digest = xstrdup(c->t->expected);
    if (c->t->picked) {
        d->source_index = xstrdup(c->t->digest);
        d->platform = c->t->platform;
    }
    if (kind == DRIFT_KEPT)
        v->n_kept++;
    log_info("%s dest=%s repo=%s tag=%s kind=%s", kind == DRIFT_KEPT ? "kept" : "drift",
             d->destination, d->repository, d->tag, drift_names[kind]);
    return d;
}

void verify_drift_add_missing(struct verify_drift *d, const char *digest)
{
    d->missing = xrealloc(d->missing, (d->n_missing + 1) * sizeof(*d->missing));
    d->missing[d->n_missing++] = xstrdup(digest);
}

void verify_drift_release(struct verify_drift *d)
{
    free(d->repository);
    free(d->tag);
    free(d->detail);
    free(d->source_repository);
    free(d->digest);
    free(d->source_index);
    free(d->destination_digest);
    for (size_t i = 0; i < d->n_missing; i++)
        free(d->missing[i]);
    free(d->missing);
}

static int drift_compare(const void *a, const void *b)
{
    const struct verify_drift *x = a;
    const struct verify_drift *y = b;
    int c = strcmp(x->destination, y->destination);
    if (c == 0)
        c = strcmp(x->repository, y->repository);
    if (c == 0)
        c = strcmp(x->tag, y->tag);
    if (c == 0)
        c = (int)x->kind - (int)y->kind;
    return c;
}

static void drift_print(const struct verify_drift *d, bool json)
{
    bool kept = d->kind == DRIFT_KEPT;
    if (!json) {
        if (kept)
            printf("kept %s %s:%s %s\n", d->destination, d->repository, d->tag, d->detail);
        else
            printf("drift %s %s:%s %s %s\n", d->destination, d->repository, d->tag,
                   drift_names[d->kind], d->detail);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", kept ? "kept" : "drift");
    cJSON_AddStringToObject(j, "destination", d->destination);
    cJSON_AddStringToObject(j, "repository", d->repository);
    cJSON_AddStringToObject(j, "tag", d->tag);
    cJSON_AddStringToObject(j, "kind", drift_names[d->kind]);
    cJSON_AddStringToObject(j, "detail", d->detail);
    cJSON_AddStringToObject(j, "rule", d->rule);
    cJSON_AddStringToObject(j, "source", d->source);
    cJSON_AddStringToObject(j, "source_repository", d->source_repository);
    cJSON_AddStringToObject(j, "digest", d->digest);
    if (d->source_index != NULL) {
        cJSON_AddStringToObject(j, "platform", d->platform);
        cJSON_AddStringToObject(j, "source_index", d->source_index);
    }
    if (kept)
        cJSON_AddStringToObject(j, "reason", "overwrite: false");
    if (d->destination_digest != NULL)
        cJSON_AddStringToObject(j, "destination_digest", d->destination_digest);
    if (d->kind == DRIFT_INCOMPLETE || d->kind == DRIFT_REFERRERS) {
        cJSON *missing = cJSON_AddArrayToObject(j, "missing");
        for (size_t i = 0; i < d->n_missing; i++)
            cJSON_AddItemToArray(missing, cJSON_CreateString(d->missing[i]));
    }
    char *text = xjson_print(j, false);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(j);
}

void verify_report(struct verify *v, bool json, double seconds)
{
    size_t drift = v->n_drifts - v->n_kept;
    size_t destinations = 0;
    for (size_t i = 0; i < v->config->n_registries; i++)
        if (v->regs[i].destination)
            destinations++;
    if (v->n_drifts > 1)
        qsort(v->drifts, v->n_drifts, sizeof(*v->drifts), drift_compare);
    for (size_t i = 0; i < v->n_drifts; i++)
        drift_print(&v->drifts[i], json);
    if (verify_failed(v)) {
        /* Every registry the pings found failing gets its line; else the first failure. */
        bool printed = false;
        for (size_t i = 0; i < v->config->n_registries; i++) {
            struct verify_registry *r = &v->regs[i];
            if (r->ping_rc < 0) {
                char *line = verify_failure_line(r, r->ping_rc, r->ping_error);
                fprintf(stderr, "ferry verify: %s\n", line);
                free(line);
                printed = true;
            }
        }
        if (!printed)
            fprintf(stderr, "ferry verify: %s\n", v->error);
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "type", "summary");
        cJSON_AddBoolToObject(j, "ok", !verify_failed(v) && drift == 0);
        cJSON_AddNumberToObject(j, "tags", (double)v->tags_verified);
        cJSON_AddNumberToObject(j, "destinations", (double)destinations);
        cJSON_AddNumberToObject(j, "drift", (double)drift);
        cJSON_AddNumberToObject(j, "kept", (double)v->n_kept);
        cJSON_AddNumberToObject(j, "seconds", seconds);
        if (verify_failed(v))
            cJSON_AddStringToObject(j, "error", v->error);
        char *text = xjson_print(j, false);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
    } else if (!verify_failed(v) && v->n_kept > 0) {
        fprintf(stderr,
                "verified %zu tags across %zu destinations: %zu drift, %zu kept (overwrite: "
                "false)\n",
                v->tags_verified, destinations, drift, v->n_kept);
    } else if (!verify_failed(v)) {
        fprintf(stderr, "verified %zu tags across %zu destinations: %zu drift\n", v->tags_verified,
                destinations, drift);
    }
    fflush(stdout);
}
