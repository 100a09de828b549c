/*
 * registry_list.c: listings — the catalog and a repository's tags, every page
 * followed through its Link header, each name checked before it is kept, and
 * the whole capped in names and pages; conditional tag listings (ETag and
 * If-None-Match) — and whether a repository exists.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "registry/httpparse.h"
#include "registry/registry_int.h"

#define LIST_PAGES_MAX    10000
#define LIST_SKIPS_LOGGED 5 /* invalid names logged one by one per listing; the rest counted */
/* An ETag longer than this is not kept: the listing is then asked in full. */
#define LIST_ETAG_MAX 256

/* ---- whether a repository exists ---- */

void registry_repository_exists(struct registry *reg, const char *repo, registry_exists_cb cb,
                                void *arg)
{
    struct registry_op *op = registry_op_repo(reg, "GET", repo, "tags/list?n=1", NULL, NULL);
    op->body_limit = REGISTRY_LIST_PAGE_MAX;
    registry_exists_run(op, cb, arg);
}

/* ---- listing with Link pagination ---- */

struct list_ctx {
    struct registry *reg;
    char *key;  /* "repositories" or "tags" */
    char *what; /* "the catalog" or "the tags of REPO", for messages */
    size_t cap; /* names it may hold: past it, the listing fails */
    char *scope;
    registry_list_cb cb;
    registry_tags_cond_cb cond_cb; /* a conditional listing's, instead of cb */
    void *arg;
    char **items;
    size_t n;
    size_t skipped; /* invalid names left out */
    int pages;
    char *if_none_match; /* "If-None-Match: <etag>" for the first page, or NULL */
    char *etag;          /* the first page's ETag, when fit to send back */
    bool not_modified;   /* the first page was answered 304 */
};

/* An invalid name of a listing: the first few are logged, all counted. */
static void list_skipped(const char *value, void *arg)
{
    struct list_ctx *ctx = arg;
    ctx->reg->stats.invalid_names++;
    if (ctx->skipped++ < LIST_SKIPS_LOGGED) {
        char shown[FERRY_PRINTABLE_MAX];
        log_warn("skipped an invalid %s in %s registry=%s value=\"%s\"",
                 strcmp(ctx->key, "repositories") == 0 ? "repository name" : "tag", ctx->what,
                 ctx->reg->host, value != NULL ? ferry_printable(value, shown) : "(not a string)");
    }
}

int registry_list_page_parse(const char *body, size_t len, bool repositories, size_t cap,
                             char ***items, size_t *n, registry_skip_cb skip, void *arg)
{
    cJSON *json = cJSON_ParseWithLength(body, len);
    const cJSON *arr =
        cJSON_GetObjectItemCaseSensitive(json, repositories ? "repositories" : "tags");
    if (json == NULL || (!cJSON_IsArray(arr) && !cJSON_IsNull(arr) && arr != NULL)) {
        cJSON_Delete(json);
        return FERRY_EPROTO;
    }
    int rc = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr)
    {
        /* Checked like a webhook's names before they reach the journal, a
         * URL or a file name: a tag "prod?x" would write "prod". */
        bool ok =
            cJSON_IsString(item) && (repositories ? reference_repository_valid(item->valuestring)
                                                  : reference_tag_valid(item->valuestring));
        if (!ok) {
            if (skip != NULL)
                skip(cJSON_IsString(item) ? item->valuestring : NULL, arg);
            continue;
        }
        if (*n >= cap) {
            rc = FERRY_ETOOBIG;
            break;
        }
        if ((*n & (*n - 1)) == 0) /* grows by doubling */
            *items = xrealloc(*items, (*n ? 2 * *n : 1) * sizeof(**items));
        (*items)[(*n)++] = xstrdup(item->valuestring);
    }
    cJSON_Delete(json);
    return rc;
}

static void list_finish(struct list_ctx *ctx, int rc, const char *error)
{
    if (ctx->cond_cb != NULL) {
        /* A 304 stands for the listing the ETag was taken from: only a
         * listing of one page can be that (registry.h). */
        const char *etag = rc == 0 && ctx->pages == 0 ? ctx->etag : NULL;
        if (ctx->not_modified)
            ctx->cond_cb(0, NULL, NULL, 0, true, NULL, ctx->arg);
        else
            ctx->cond_cb(rc, error, rc == 0 ? ctx->items : NULL, rc == 0 ? ctx->n : 0, false, etag,
                         ctx->arg);
    } else {
        ctx->cb(rc, error, rc == 0 ? ctx->items : NULL, rc == 0 ? ctx->n : 0, ctx->arg);
    }
    for (size_t i = 0; i < ctx->n; i++)
        free(ctx->items[i]);
    free(ctx->items);
    free(ctx->key);
    free(ctx->what);
    free(ctx->scope);
    free(ctx->if_none_match);
    free(ctx->etag);
    free(ctx);
}

/*
 * An ETag fit to be sent back in If-None-Match: at most LIST_ETAG_MAX bytes
 * of visible ASCII (an entity tag has no spaces or controls; anything else
 * could smuggle a header line).
 */
static bool list_etag_valid(const char *etag)
{
    size_t len = strlen(etag);
    if (len == 0 || len > LIST_ETAG_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)etag[i] <= 0x20 || (unsigned char)etag[i] >= 0x7f)
            return false;
    return true;
}

/* The first page's answer as a conditional listing sees it: 304, or its ETag. */
static void list_first_page_etag(struct list_ctx *ctx, struct http_request *req)
{
    const char *etag = http_request_response_header(req, "ETag");
    if (etag != NULL && list_etag_valid(etag))
        ctx->etag = xstrdup(etag);
}

static void list_page(struct list_ctx *ctx, const char *url);

/*
 * A page was taken: the URL of the next one in *next (NULL: it was the last),
 * or why the listing stops here (caller frees).
 */
static char *list_next(struct list_ctx *ctx, struct http_request *req, bool over, char **next)
{
    const char *link = http_request_response_header(req, "Link");
    *next = link != NULL ? httpparse_link_next(link, http_request_url(req)) : NULL;
    if (over)
        return xasprintf("%s at %s holds more than %zu names: refused (the cap on one listing)",
                         ctx->what, ctx->reg->host, ctx->cap);
    if (*next != NULL && ++ctx->pages >= LIST_PAGES_MAX)
        return xasprintf("%s at %s runs past %d pages: refused (the cap on one listing)", ctx->what,
                         ctx->reg->host, LIST_PAGES_MAX);
    if (*next != NULL && strcmp(*next, http_request_url(req)) == 0)
        return xasprintf("%s at %s: its next page is the page itself", ctx->what, ctx->reg->host);
    return NULL;
}

static void list_page_done(struct registry_op *op, struct http_request *req, int rc, void *arg)
{
    struct list_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    char *error = NULL;
    char *next = NULL;

    if (rc == 0 && status == 304 && ctx->if_none_match != NULL && ctx->pages == 0) {
        ctx->not_modified = true;
        ctx->reg->stats.not_modified++;
        goto out;
    }
    if (rc < 0 || status != 200) {
        rc = registry_status_rc(req, rc);
        error = registry_op_error_text(op, req, rc);
        goto out;
    }
    if (ctx->cond_cb != NULL && ctx->pages == 0)
        list_first_page_etag(ctx, req);
    const struct buf *body = http_request_response_body(req);
    rc = registry_list_page_parse(body->data != NULL ? body->data : "", body->len,
                                  strcmp(ctx->key, "repositories") == 0, ctx->cap, &ctx->items,
                                  &ctx->n, list_skipped, ctx);
    if (rc == FERRY_EPROTO) {
        char *path = registry_url_path(op->url);
        error = xasprintf("GET %s%s: response is not a JSON listing of %s", op->reg->host, path,
                          ctx->key);
        free(path);
        goto out;
    }
    error = list_next(ctx, req, rc == FERRY_ETOOBIG, &next);
    rc = error != NULL ? FERRY_ETOOBIG : 0;
    if (ctx->skipped > LIST_SKIPS_LOGGED && (error != NULL || next == NULL))
        log_warn("skipped %zu invalid names in %s registry=%s", ctx->skipped, ctx->what,
                 ctx->reg->host);

out:
    registry_op_free(op);
    if (error == NULL && next != NULL)
        list_page(ctx, next);
    else
        list_finish(ctx, rc, error);
    free(next);
    free(error);
}

/* Every attempt at the first page of a conditional listing carries If-None-Match. */
static void list_prepare(struct registry_op *op, struct http_request *req, void *arg)
{
    struct list_ctx *ctx = arg;
    (void)op;
    if (ctx->pages == 0 && ctx->if_none_match != NULL)
        http_request_add_header(req, ctx->if_none_match);
}

static void list_page(struct list_ctx *ctx, const char *url)
{
    struct registry_op *op = registry_op_new(ctx->reg, "GET", url, ctx->scope);
    op->body_limit = REGISTRY_LIST_PAGE_MAX;
    if (ctx->if_none_match != NULL)
        op->prepare = list_prepare;
    registry_op_run(op, list_page_done, ctx);
}

static struct list_ctx *list_new(struct registry *reg, const char *key, const char *what,
                                 size_t cap, const char *scope, void *arg)
{
    struct list_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->reg = reg;
    ctx->key = xstrdup(key);
    ctx->what = xstrdup(what);
    ctx->cap = cap;
    ctx->scope = xstrdup(scope);
    ctx->arg = arg;
    return ctx;
}

static void list_start(struct registry *reg, const char *path, const char *key, const char *what,
                       size_t cap, const char *scope, registry_list_cb cb, void *arg)
{
    struct list_ctx *ctx = list_new(reg, key, what, cap, scope, arg);
    ctx->cb = cb;
    char *url = xasprintf("%s%s", reg->base, path);
    list_page(ctx, url);
    free(url);
}

void registry_catalog(struct registry *reg, registry_list_cb cb, void *arg)
{
    char *path = xasprintf("/v2/_catalog?n=%d", reg->opts.list_page_size);
    list_start(reg, path, "repositories", "the catalog", REGISTRY_CATALOG_MAX, "registry:catalog:*",
               cb, arg);
    free(path);
}

int registry_tags(struct registry *reg, const char *repo, registry_list_cb cb, void *arg)
{
    if (!reference_repository_valid(repo))
        return FERRY_EINVAL;
    char *path = xasprintf("/v2/%s/tags/list?n=%d", repo, reg->opts.list_page_size);
    char *scope = registry_repo_scope(reg, repo);
    char *what = xasprintf("the tags of %s", repo);
    list_start(reg, path, "tags", what, REGISTRY_TAGS_MAX, scope, cb, arg);
    free(what);
    free(path);
    free(scope);
    return 0;
}

void registry_tags_conditional(struct registry *reg, const char *repo, const char *etag,
                               registry_tags_cond_cb cb, void *arg)
{
    char *path = xasprintf("/v2/%s/tags/list?n=%d", repo, reg->opts.list_page_size);
    char *url = xasprintf("%s%s", reg->base, path);
    char *scope = registry_repo_scope(reg, repo);
    char *what = xasprintf("the tags of %s", repo);
    struct list_ctx *ctx = list_new(reg, "tags", what, REGISTRY_TAGS_MAX, scope, arg);
    ctx->cond_cb = cb;
    /* An ETag that could not have come from list_first_page_etag() is not sent. */
    if (etag != NULL && list_etag_valid(etag))
        ctx->if_none_match = xasprintf("If-None-Match: %s", etag);
    /* The name reaches the URL only when valid: an invalid one fails the op before any request. */
    struct registry_op *op = registry_op_new(reg, "GET", url, scope);
    op->body_limit = REGISTRY_LIST_PAGE_MAX;
    if (ctx->if_none_match != NULL)
        op->prepare = list_prepare;
    registry_op_check_names(op, repo, NULL);
    registry_op_run(op, list_page_done, ctx);
    free(what);
    free(scope);
    free(url);
    free(path);
}
