/*
 * listing.c: `ferry ls` and `ferry catalog` — one listing on a loop of its
 * own, its names copied out for the caller.
 */
#include "registry/listing.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

struct listing {
    int rc;
    char *error;
    char **items;
    size_t n;
};

static void listing_done(int rc, const char *error, char **items, size_t n, void *arg)
{
    struct listing *l = arg;
    l->rc = rc;
    if (rc < 0) {
        l->error = xstrdup(error);
        return;
    }
    /* The registry frees its copies after this callback: keep our own. */
    l->items = xcalloc(n ? n : 1, sizeof(*l->items));
    for (size_t i = 0; i < n; i++)
        l->items[i] = xstrdup(items[i]);
    l->n = n;
}

static void listing_http_closed(void *arg)
{
    (void)arg;
}

int listing_run(const struct listing_options *opts, char ***items, size_t *n, char **error)
{
    struct listing l = {0};
    struct http_client *http = NULL;
    struct registry *reg = NULL;
    uv_loop_t loop;
    int rc;

    *items = NULL;
    *n = 0;
    *error = NULL;
    rc = uv_loop_init(&loop);
    if (rc < 0) {
        *error = xasprintf("cannot start an event loop: %s", uv_strerror(rc));
        return rc;
    }
    http = http_client_new(&loop, &opts->http);
    reg = registry_new(&loop, http, opts->registry, &opts->reg);
    if (opts->repository != NULL) {
        rc = registry_tags(reg, opts->repository, listing_done, &l);
    } else {
        registry_catalog(reg, listing_done, &l);
        rc = 0;
    }
    if (rc == 0) {
        uv_run(&loop, UV_RUN_DEFAULT);
        rc = l.rc;
    }
    registry_close(reg, NULL, NULL);
    http_client_close(http, listing_http_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (rc < 0) {
        *error = l.error != NULL ? l.error : xstrdup(ferry_strerror(rc));
        l.error = NULL;
    } else {
        *items = l.items;
        *n = l.n;
    }
    free(l.error);
    if (uv_loop_close(&loop) != 0)
        log_warn("listing loop closed with handles still open");
    return rc;
}
