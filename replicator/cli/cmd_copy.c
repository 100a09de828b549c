/*
 * cmd_copy: `ferry copy`, see cmd_copy.h.
 */
#include "cli/cmd_copy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/progress.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "replication/presence.h"

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

struct copy_run_state {
    int rc;
    char *error;
    bool done;
};

static void copy_run_done(struct copy *c, int rc, const char *error, void *arg)
{
    struct copy_run_state *st = arg;
    st->rc = rc;
    st->error = rc < 0 ? xstrdup(error) : NULL;
    st->done = true;
    copy_free(c);
}

static void copy_http_closed(void *arg)
{
    (void)arg;
}

int copy_run(const struct copy_options *opts, struct copy_summary *summary, char **error)
{
    struct reference src_ref;
    struct reference dst_ref;
    struct presence *presence = NULL;
    char *err = NULL;
    int rc;

    memset(&src_ref, 0, sizeof(src_ref));
    memset(&dst_ref, 0, sizeof(dst_ref));
    memset(summary, 0, sizeof(*summary));
    *error = NULL;
    rc = reference_parse(&src_ref, opts->src, &err);
    if (rc < 0) {
        *error = xasprintf("source %s: %s", opts->src, err ? err : ferry_strerror(rc));
        goto out_refs;
    }
    rc = reference_parse(&dst_ref, opts->dst, &err);
    if (rc < 0) {
        *error = xasprintf("destination %s: %s", opts->dst, err ? err : ferry_strerror(rc));
        goto out_refs;
    }
    if (dst_ref.digest != NULL) {
        *error = xasprintf("destination %s: name a tag or nothing, not a digest", opts->dst);
        rc = FERRY_EINVAL;
        goto out_refs;
    }
    if (opts->cache_dir == NULL || opts->cache_dir[0] != '\0') {
        char *dir = opts->cache_dir ? xstrdup(opts->cache_dir) : presence_default_dir();
        char *perr = NULL;
        if (dir != NULL && presence_open(dir, &presence, &perr) < 0) {
            log_info("presence cache unavailable dir=%s error=\"%s\"", dir, perr ? perr : "");
            presence = NULL;
        }
        free(perr);
        free(dir);
    }

    uv_loop_t loop;
    struct http_client *http = NULL;
    struct registry *src = NULL;
    struct registry *dst = NULL;
    struct progress *progress = NULL;
    int jobs = opts->jobs > 0 ? opts->jobs : 8;
    uv_loop_init(&loop);
    struct http_client_options hopts = opts->http;
    if (hopts.max_host_connections <= 0)
        hopts.max_host_connections = jobs + 4;
    http = http_client_new(&loop, &hopts);
    struct registry_options sopts = opts->src_registry;
    struct registry_options dopts = opts->dst_registry;
    dopts.push = true;
    src = registry_new(&loop, http, src_ref.registry, &sopts);
    dst = registry_new(&loop, http, dst_ref.registry, &dopts);
    if (opts->progress)
        progress = progress_new(&loop, stderr);

    /* No tag or digest: latest. The destination tag defaults to the source's;
     * a source by digest alone gives none. */
    const char *src_reference =
        src_ref.digest ? src_ref.digest : (src_ref.tag ? src_ref.tag : "latest");
    struct copy_observer bars = {bar_start, bar_moved, bar_done, bars_finish, progress};
    const char *dst_tag = dst_ref.tag ? dst_ref.tag : (src_ref.digest ? NULL : src_reference);
    struct copy_spec spec = {
        .src = src,
        .dst = dst,
        .src_repo = src_ref.repository,
        .src_reference = src_reference,
        .dst_repo = dst_ref.repository,
        .dst_tag = dst_tag,
        .platform = opts->platform,
        .no_referrers = opts->no_referrers,
        .mount_from = opts->mount_from,
        .jobs = jobs,
        .upload = opts->upload,
        .presence = presence,
        .observer = progress ? &bars : NULL,
    };
    struct copy_run_state st = {0};
    copy_start(&loop, &spec, summary, copy_run_done, &st, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!st.done) {
        rc = FERRY_EPROTO;
        *error = xstrdup("internal error: the copy stopped half way");
    } else {
        rc = st.rc;
        *error = st.error;
    }

    struct http_stats hs;
    http_client_stats(http, &hs);
    summary->requests = hs.requests;
    memcpy(summary->requests_by_method, hs.requests_by_method, sizeof(summary->requests_by_method));
    struct registry_stats rs;
    registry_get_stats(src, &rs);
    summary->retries = rs.retries;
    registry_get_stats(dst, &rs);
    summary->retries += rs.retries;

    if (progress != NULL)
        progress_free(progress);
    registry_close(src, NULL, NULL);
    registry_close(dst, NULL, NULL);
    http_client_close(http, copy_http_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        log_warn("copy loop closed with handles still open");
    presence_close(presence);
out_refs:
    free(err);
    reference_release(&src_ref);
    reference_release(&dst_ref);
    return rc;
}
