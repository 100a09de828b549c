/*
 * copy_run: the copy of `ferry copy` on a loop of its own (see cmd_copy.h):
 * the two registries' clients, the presence cache, the progress bars, and
 * the counters of the summary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cmd_copy.h"
#include "cli/progress.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "replication/presence.h"

/* Blobs in flight at once unless --jobs says otherwise. */
#define COPY_RUN_JOBS_DEFAULT 8

/* Connections per host beyond one for each blob in flight (manifests, tokens). */
#define COPY_RUN_SPARE_CONNECTIONS 4

/* What a copy runs with, on its own loop. */
struct copy_run {
    uv_loop_t loop;
    struct http_client *http;
    struct registry *src;
    struct registry *dst;
    struct progress *progress; /* NULL: no bars */
    int rc;
    char *error;
    bool done;
};

/* The progress bars watch the copy through its observer. */
static void *bar_start(void *arg, const char *digest, uint64_t size)
{
    return progress_item_add(arg, digest, size);
}

static void bar_moved(void *arg, void *blob, uint64_t moved)
{
    progress_item_set(arg, blob, moved);
}

static void bar_done(void *arg, void *blob, bool ok)
{
    progress_item_done(arg, blob, ok);
}

static void bars_finish(void *arg)
{
    progress_finish(arg);
}

static void copy_run_done(struct copy *c, int rc, const char *error, void *arg)
{
    struct copy_run *r = arg;
    r->rc = rc;
    r->error = rc < 0 ? xstrdup(error) : NULL;
    r->done = true;
    copy_free(c);
}

/* The HTTP client is the last to close; the loop running dry says it has. */
static void copy_run_http_closed(void *arg)
{
    (void)arg;
}

/* SRC and DST into references; returns 0, or a negative code with *error set. */
static int copy_run_refs(const struct copy_options *opts, struct reference *src,
                         struct reference *dst, char **error)
{
    char *err = NULL;
    int rc = reference_parse(src, opts->src, &err);
    if (rc < 0) {
        *error = xasprintf("source %s: %s", opts->src, err ? err : ferry_strerror(rc));
        goto out;
    }
    rc = reference_parse(dst, opts->dst, &err);
    if (rc < 0) {
        *error = xasprintf("destination %s: %s", opts->dst, err ? err : ferry_strerror(rc));
        goto out;
    }
    if (dst->digest != NULL) {
        *error = xasprintf("destination %s: name a tag or nothing, not a digest", opts->dst);
        rc = FERRY_EINVAL;
    }
out:
    free(err);
    return rc;
}

/* The presence cache, unless --no-cache; NULL when there is none (the copy goes on without). */
static struct presence *copy_run_presence(const struct copy_options *opts)
{
    struct presence *presence = NULL;
    if (opts->cache_dir != NULL && opts->cache_dir[0] == '\0')
        return NULL;
    char *dir = opts->cache_dir ? xstrdup(opts->cache_dir) : presence_default_dir();
    char *perr = NULL;
    if (dir != NULL && presence_open(dir, &presence, &perr) < 0) {
        log_info("presence cache unavailable dir=%s error=\"%s\"", dir, perr ? perr : "");
        presence = NULL;
    }
    free(perr);
    free(dir);
    return presence;
}

/* The clients and the bars on r->loop. */
static void copy_run_open(struct copy_run *r, const struct copy_options *opts, int jobs,
                          const struct reference *src_ref, const struct reference *dst_ref)
{
    struct http_client_options hopts = opts->http;
    if (hopts.max_host_connections <= 0)
        hopts.max_host_connections = jobs + COPY_RUN_SPARE_CONNECTIONS;
    r->http = http_client_new(&r->loop, &hopts);
    struct registry_options sopts = opts->src_registry;
    struct registry_options dopts = opts->dst_registry;
    dopts.push = true;
    r->src = registry_new(&r->loop, r->http, src_ref->registry, &sopts);
    r->dst = registry_new(&r->loop, r->http, dst_ref->registry, &dopts);
    if (opts->progress) {
        int rc = progress_new(&r->loop, stderr, &r->progress);
        if (rc < 0)
            log_warn("progress bars unavailable error=\"%s\"", uv_strerror(rc));
    }
}

/* The requests and retries of both clients, into the summary. */
static void copy_run_count(const struct copy_run *r, struct copy_summary *summary)
{
    struct http_stats hs;
    http_client_stats(r->http, &hs);
    summary->requests = hs.requests;
    memcpy(summary->requests_by_method, hs.requests_by_method, sizeof(summary->requests_by_method));
    struct registry_stats rs;
    registry_get_stats(r->src, &rs);
    summary->retries = rs.retries;
    registry_get_stats(r->dst, &rs);
    summary->retries += rs.retries;
}

/* Close the bars and the clients, and the loop once they are gone. */
static void copy_run_close(struct copy_run *r)
{
    if (r->progress != NULL)
        progress_close(r->progress, NULL, NULL);
    registry_close(r->src, NULL, NULL);
    registry_close(r->dst, NULL, NULL);
    http_client_close(r->http, copy_run_http_closed, NULL);
    if (uv_run(&r->loop, UV_RUN_DEFAULT) != 0)
        log_warn("copy loop stopped while closing");
    if (uv_loop_close(&r->loop) != 0)
        log_warn("copy loop closed with handles still open");
}

/*
 * Copy on r->loop until done; returns the copy's result, with *error set
 * when it failed.
 */
static int copy_run_loop(struct copy_run *r, const struct copy_options *opts,
                         const struct reference *src_ref, const struct reference *dst_ref,
                         struct presence *presence, struct copy_summary *summary, char **error)
{
    int jobs = opts->jobs > 0 ? opts->jobs : COPY_RUN_JOBS_DEFAULT;
    copy_run_open(r, opts, jobs, src_ref, dst_ref);
    /* No tag or digest: latest. The destination tag defaults to the source's;
     * a source by digest alone gives none. */
    const char *src_reference =
        src_ref->digest ? src_ref->digest : (src_ref->tag ? src_ref->tag : "latest");
    struct copy_observer bars = {bar_start, bar_moved, bar_done, bars_finish, r->progress};
    const char *dst_tag = dst_ref->tag ? dst_ref->tag : (src_ref->digest ? NULL : src_reference);
    struct copy_spec spec = {
        .src = r->src,
        .dst = r->dst,
        .src_repo = src_ref->repository,
        .src_reference = src_reference,
        .dst_repo = dst_ref->repository,
        .dst_tag = dst_tag,
        .platform = opts->platform,
        .no_referrers = opts->no_referrers,
        .foreign_layers = opts->foreign_layers,
        .mount_from = opts->mount_from,
        .jobs = jobs,
        .upload = opts->upload,
        .presence = presence,
        .observer = r->progress ? &bars : NULL,
    };
    int rc = copy_start(&r->loop, &spec, summary, copy_run_done, r, NULL);
    if (rc < 0) {
        *error = xasprintf("cannot start the copy: %s", ferry_strerror(rc));
    } else {
        /* Nothing stops the loop: it runs until the copy is done, or dry. */
        if (uv_run(&r->loop, UV_RUN_DEFAULT) != 0)
            log_warn("copy loop stopped with work left");
        if (!r->done) {
            rc = FERRY_EPROTO;
            *error = xstrdup("internal error: the copy stopped half way");
        } else {
            rc = r->rc;
            *error = r->error;
        }
    }
    copy_run_count(r, summary);
    copy_run_close(r);
    return rc;
}

int copy_run(const struct copy_options *opts, struct copy_summary *summary, char **error)
{
    struct reference src_ref;
    struct reference dst_ref;
    struct copy_run r;

    memset(&src_ref, 0, sizeof(src_ref));
    memset(&dst_ref, 0, sizeof(dst_ref));
    memset(&r, 0, sizeof(r));
    memset(summary, 0, sizeof(*summary));
    *error = NULL;
    int rc = copy_run_refs(opts, &src_ref, &dst_ref, error);
    if (rc < 0)
        goto out;
    rc = uv_loop_init(&r.loop);
    if (rc < 0) {
        *error = xasprintf("cannot start a loop: %s", uv_strerror(rc));
        goto out;
    }
    struct presence *presence = copy_run_presence(opts);
    rc = copy_run_loop(&r, opts, &src_ref, &dst_ref, presence, summary, error);
    presence_close(presence);
out:
    reference_release(&src_ref);
    reference_release(&dst_ref);
    return rc;
}
