/*
 * Unit tests for replicator/replication/resolve.c: one image's closure at
 * its source. The source is a scripted fetch (struct resolve_fetch) whose
 * answers the test hands back one at a time, first asked first answered,
 * so that the order of requests can be checked. A real registry client (on
 * a loop of its own, never sending a request) only names the source in
 * errors; the test closes it and checks that the loop closes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "unit.h"

#include "common/errors.h"
#include "common/manifest.h"
#include "common/xalloc.h"
#include "registry/http.h"
#include "registry/registry.h"
#include "replication/resolve.h"

#define HOST        "source.test:5000"
#define MEDIA_CFG   "application/vnd.oci.image.config.v1+json"
#define MEDIA_LYR   "application/vnd.oci.image.layer.v1.tar+gzip"
#define PENDING_MAX 4096
#define ANSWERS_MAX 16
#define CLOSE_TURNS 1000

/* "sha256:" and 64 times `c`. */
static char *dg(char c)
{
    char hex[65];
    memset(hex, c, 64);
    hex[64] = '\0';
    return xasprintf("sha256:%s", hex);
}

static char *image_json(const char *config, const char *layer)
{
    return xasprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
                     "\"digest\":\"%s\",\"size\":2},\"layers\":[{\"mediaType\":\"%s\",\"digest\":"
                     "\"%s\",\"size\":3}]}",
                     MEDIA_OCI_MANIFEST, MEDIA_CFG, config, MEDIA_LYR, layer);
}

/* An index of `n` children (or referrers), each digest with its platform os/arch. */
static char *index_json(const char *const *digests, const char *const *platforms, size_t n)
{
    char *list = xstrdup("");
    for (size_t i = 0; i < n; i++) {
        char *platform = NULL;
        if (platforms != NULL) {
            const char *slash = strchr(platforms[i], '/');
            platform = xasprintf(",\"platform\":{\"os\":\"%.*s\",\"architecture\":\"%s\"}",
                                 (int)(slash - platforms[i]), platforms[i], slash + 1);
        }
        char *next = xasprintf("%s%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1%s}", list,
                               i > 0 ? "," : "", MEDIA_OCI_MANIFEST, digests[i],
                               platform != NULL ? platform : "");
        free(platform);
        free(list);
        list = next;
    }
    char *json = xasprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[%s]}",
                           MEDIA_OCI_INDEX, list);
    free(list);
    return json;
}

/* ---- the scripted source ---- */

struct answer {
    char *key; /* a reference, or "referrers:<digest>" */
    int rc;
    char *bytes;
    char *digest; /* what the registry says the manifest's digest is */
};

struct pending {
    char *key;
    registry_manifest_cb cb;
    void *arg;
};

struct source {
    struct answer answers[ANSWERS_MAX];
    size_t n_answers;
    struct pending *pending; /* asked, not answered yet */
    size_t head;
    size_t tail;
    char **asked; /* every key, in the order asked */
    size_t n_asked;
    bool refuse; /* the fetch cannot start */
};

static void source_answer(struct source *s, const char *key, int rc, char *bytes,
                          const char *digest)
{
    assert_true(s->n_answers < ANSWERS_MAX);
    s->answers[s->n_answers++] =
        (struct answer){.key = xstrdup(key), .rc = rc, .bytes = bytes, .digest = xstrdup(digest)};
}

static int source_ask(struct source *s, char *key, registry_manifest_cb cb, void *cb_arg)
{
    if (s->refuse) {
        free(key);
        return FERRY_EINVAL;
    }
    assert_true(s->tail < PENDING_MAX);
    s->pending[s->tail++] = (struct pending){.key = key, .cb = cb, .arg = cb_arg};
    s->asked = xrealloc(s->asked, (s->n_asked + 1) * sizeof(*s->asked));
    s->asked[s->n_asked++] = xstrdup(key);
    return 0;
}

static int source_manifest_get(void *arg, const char *repo, const char *reference,
                               registry_manifest_cb cb, void *cb_arg)
{
    assert_string_equal(repo, "app");
    return source_ask(arg, xstrdup(reference), cb, cb_arg);
}

static int source_referrers(void *arg, const char *repo, const char *digest,
                            registry_manifest_cb cb, void *cb_arg)
{
    assert_string_equal(repo, "app");
    return source_ask(arg, xasprintf("referrers:%s", digest), cb, cb_arg);
}

/* Answer the oldest request: false when none is waiting. */
static bool source_step(struct source *s)
{
    if (s->head == s->tail)
        return false;
    struct pending p = s->pending[s->head++];
    const struct answer *a = NULL;
    for (size_t i = 0; i < s->n_answers && a == NULL; i++)
        if (strcmp(s->answers[i].key, p.key) == 0)
            a = &s->answers[i];
    bool referrers = strncmp(p.key, "referrers:", 10) == 0;
    if (a == NULL && referrers)
        p.cb(0, NULL, NULL, 0, NULL, NULL, p.arg); /* no referrers */
    else if (a == NULL)
        p.cb(FERRY_ENOTFOUND, "manifest unknown", NULL, 0, NULL, NULL, p.arg);
    else if (a->rc < 0)
        p.cb(a->rc, "the source failed", NULL, 0, NULL, NULL, p.arg);
    else
        p.cb(0, NULL, a->bytes, strlen(a->bytes), NULL, a->digest, p.arg);
    free(p.key);
    return true;
}

static size_t source_asked_count(const struct source *s, const char *prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_asked; i++)
        if (strncmp(s->asked[i], prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

/* ---- the fixture ---- */

struct fixture {
    uv_loop_t loop;
    struct http_client *http;
    struct registry *reg;
    int closed;
    struct source src;
    struct resolve_fetch fetch;
    struct resolve *r;
    int done_calls;
    int rc;
    char *error;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->http = http_client_new(&f->loop, NULL);
    struct registry_options o = {0};
    f->reg = registry_new(&f->loop, f->http, HOST, &o);
    f->src.pending = xcalloc(PENDING_MAX, sizeof(*f->src.pending));
    f->fetch = (struct resolve_fetch){
        .manifest_get = source_manifest_get, .referrers = source_referrers, .arg = &f->src};
    *state = f;
    return 0;
}

static void one_closed(void *arg)
{
    ((struct fixture *)arg)->closed++;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    resolve_free(f->r);
    free(f->error);
    for (size_t i = 0; i < f->src.n_answers; i++) {
        free(f->src.answers[i].key);
        free(f->src.answers[i].bytes);
        free(f->src.answers[i].digest);
    }
    for (size_t i = f->src.head; i < f->src.tail; i++)
        free(f->src.pending[i].key);
    free(f->src.pending);
    for (size_t i = 0; i < f->src.n_asked; i++)
        free(f->src.asked[i]);
    free(f->src.asked);
    registry_close(f->reg, one_closed, f);
    http_client_close(f->http, one_closed, f);
    for (int turns = 0; f->closed < 2 && turns < CLOSE_TURNS; turns++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->closed, 2);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

static void resolved(struct resolve *r, int rc, const char *error, void *arg)
{
    struct fixture *f = arg;
    assert_ptr_equal(r, f->r);
    f->done_calls++;
    f->rc = rc;
    f->error = error != NULL ? xstrdup(error) : NULL;
}

static void start(struct fixture *f, const char *reference, const char *platform,
                  enum resolve_referrers referrers, bool lenient)
{
    struct resolve_spec spec = {
        .src = f->reg,
        .repo = "app",
        .reference = reference,
        .platform = platform,
        .referrers = referrers,
        .lenient = lenient,
        .fetch = &f->fetch,
    };
    resolve_start(&spec, resolved, f, &f->r);
}

/* Answer every request, then check that `done` fired once. */
static void drain(struct fixture *f)
{
    for (int steps = 0; steps < PENDING_MAX && source_step(&f->src); steps++)
        ;
    assert_int_equal(f->done_calls, 1);
}

/* ---- tests ---- */

/* An image by tag: its digest is learned from the GET, its bytes kept, nothing else asked. */
static void test_image_by_tag(void **state)
{
    struct fixture *f = *state;
    char *img = dg('1'), *cfg = dg('c'), *lyr = dg('d');
    source_answer(&f->src, "v1", 0, image_json(cfg, lyr), img);
    start(f, "v1", NULL, RESOLVE_REFERRERS_NONE, false);
    assert_int_equal(f->done_calls, 0);
    drain(f);
    assert_int_equal(f->rc, 0);
    assert_int_equal(resolve_count(f->r), 1);
    const struct resolve_node *root = resolve_root(f->r);
    assert_string_equal(root->digest, img);
    assert_int_equal(root->m.kind, MANIFEST_IMAGE);
    assert_string_equal(root->m.config.digest, cfg);
    assert_non_null(root->bytes);
    assert_int_equal(root->len, strlen(root->bytes));
    assert_ptr_equal(resolve_find(f->r, img), root);
    assert_null(resolve_platform_index(f->r));
    assert_int_equal(f->src.n_asked, 1);
    free(img), free(cfg), free(lyr);
}

/*
 * An index with two children and referrers everywhere: the first listing
 * (the index's) goes out alone; the children's wait for it, then each
 * referrer is fetched, and no referrer's own referrers are asked for.
 */
static void test_index_children_referrers_probe(void **state)
{
    struct fixture *f = *state;
    char *idx = dg('0'), *a = dg('a'), *b = dg('b'), *cfg = dg('c'), *lyr = dg('d');
    char *sig = dg('5'), *sbom = dg('6');
    const char *children[] = {a, b};
    source_answer(&f->src, idx, 0, index_json(children, NULL, 2), idx);
    source_answer(&f->src, a, 0, image_json(cfg, lyr), a);
    source_answer(&f->src, b, 0, image_json(cfg, lyr), b);
    const char *sigs[] = {sig};
    const char *sboms[] = {sbom};
    char *key = xasprintf("referrers:%s", idx);
    source_answer(&f->src, key, 0, index_json(sigs, NULL, 1), NULL);
    free(key);
    key = xasprintf("referrers:%s", a);
    source_answer(&f->src, key, 0, index_json(sboms, NULL, 1), NULL);
    free(key);
    source_answer(&f->src, sig, 0, image_json(cfg, lyr), sig);
    source_answer(&f->src, sbom, 0, image_json(cfg, lyr), sbom);

    start(f, idx, NULL, RESOLVE_REFERRERS_ALL, false);
    assert_true(source_step(&f->src)); /* the index: its children and its listing go out */
    assert_int_equal(f->src.n_asked, 4);
    assert_int_equal(source_asked_count(&f->src, "referrers:"), 1);
    assert_true(source_step(&f->src)); /* child a */
    assert_true(source_step(&f->src)); /* child b: neither asks for its referrers yet */
    assert_int_equal(source_asked_count(&f->src, "referrers:"), 1);
    assert_true(source_step(&f->src)); /* the probe is back: both children's listings go out */
    assert_int_equal(source_asked_count(&f->src, "referrers:"), 3);
    drain(f);
    assert_int_equal(f->rc, 0);
    assert_int_equal(resolve_count(f->r), 5);
    /* The referrers' manifests were fetched, their own referrers never asked for. */
    assert_int_equal(source_asked_count(&f->src, "referrers:"), 3);
    const struct resolve_node *s = resolve_find(f->r, sig);
    assert_non_null(s);
    assert_ptr_equal(s->subject, resolve_root(f->r));
    assert_non_null(s->bytes);
    assert_non_null(s->descriptor);
    assert_true(resolve_root(f->r)->has_referrers);
    const struct resolve_node *child = resolve_find(f->r, a);
    assert_ptr_equal(child->parent, resolve_root(f->r));
    assert_true(child->has_referrers);
    assert_ptr_equal(resolve_find(f->r, sbom)->subject, child);
    assert_false(resolve_find(f->r, b)->has_referrers);
    free(idx), free(a), free(b), free(cfg), free(lyr), free(sig), free(sbom);
}

/* Only the root's referrers, listed and not fetched (what `ferry verify` asks). */
static void test_root_referrers_listed_only(void **state)
{
    struct fixture *f = *state;
    char *idx = dg('0'), *a = dg('a'), *cfg = dg('c'), *lyr = dg('d'), *sig = dg('5');
    const char *children[] = {a};
    const char *sigs[] = {sig};
    source_answer(&f->src, idx, 0, index_json(children, NULL, 1), idx);
    source_answer(&f->src, a, 0, image_json(cfg, lyr), a);
    char *key = xasprintf("referrers:%s", idx);
    source_answer(&f->src, key, 0, index_json(sigs, NULL, 1), NULL);
    free(key);
    start(f, idx, NULL, RESOLVE_REFERRERS_ROOT, true);
    drain(f);
    assert_int_equal(f->rc, 0);
    assert_int_equal(resolve_count(f->r), 3);
    assert_int_equal(source_asked_count(&f->src, "referrers:"), 1);
    assert_null(resolve_find(f->r, sig)->bytes);
    assert_int_equal(f->src.n_asked, 3); /* the index, its child, one listing */
    free(idx), free(a), free(cfg), free(lyr), free(sig);
}

/* A platform: the index gives way to its manifest, the other children are not asked for. */
static void test_platform_pick(void **state)
{
    struct fixture *f = *state;
    char *idx = dg('0'), *amd = dg('a'), *arm = dg('b'), *cfg = dg('c'), *lyr = dg('d');
    const char *children[] = {amd, arm};
    const char *platforms[] = {"linux/amd64", "linux/arm64"};
    source_answer(&f->src, "v1", 0, index_json(children, platforms, 2), idx);
    source_answer(&f->src, arm, 0, image_json(cfg, lyr), arm);
    start(f, "v1", "linux/arm64", RESOLVE_REFERRERS_NONE, false);
    drain(f);
    assert_int_equal(f->rc, 0);
    assert_string_equal(resolve_root(f->r)->digest, arm);
    assert_string_equal(resolve_platform_index(f->r)->digest, idx);
    assert_int_equal(resolve_count(f->r), 2);
    assert_int_equal(f->src.n_asked, 2);
    free(idx), free(amd), free(arm), free(cfg), free(lyr);
}

static void test_platform_missing(void **state)
{
    struct fixture *f = *state;
    char *idx = dg('0'), *amd = dg('a');
    const char *children[] = {amd};
    const char *platforms[] = {"linux/amd64"};
    source_answer(&f->src, "v1", 0, index_json(children, platforms, 1), idx);
    start(f, "v1", "linux/s390x", RESOLVE_REFERRERS_NONE, false);
    drain(f);
    assert_int_equal(f->rc, FERRY_ENOTFOUND);
    assert_string_equal(f->error, HOST "/app:v1 has no manifest for platform linux/s390x");
    assert_false(resolve_fault_local(f->r));
    free(idx), free(amd);
}

/* Strict, a child the source lacks fails it; lenient, the child stays unparsed and says why. */
static void test_missing_child(void **state)
{
    struct fixture *f = *state;
    char *idx = dg('0'), *a = dg('a'), *b = dg('b'), *gone = dg('e'), *cfg = dg('c');
    char *lyr = dg('d');
    const char *children[] = {a, b, gone};
    source_answer(&f->src, idx, 0, index_json(children, NULL, 3), idx);
    source_answer(&f->src, a, 0, image_json(cfg, lyr), a);
    source_answer(&f->src, b, 0, xstrdup("{\"not\":\"a manifest\"}"), b);
    start(f, idx, NULL, RESOLVE_REFERRERS_NONE, true);
    drain(f);
    assert_int_equal(f->rc, 0);
    assert_int_equal(resolve_count(f->r), 4);
    assert_int_equal(resolve_find(f->r, a)->m.kind, MANIFEST_IMAGE);
    const struct resolve_node *bad = resolve_find(f->r, b);
    assert_int_equal(bad->m.kind, 0);
    assert_true(bad->rc < 0 && bad->rc != FERRY_ENOTFOUND);
    assert_message(bad->error);
    const struct resolve_node *missing = resolve_find(f->r, gone);
    assert_int_equal(missing->m.kind, 0);
    assert_int_equal(missing->rc, FERRY_ENOTFOUND);
    assert_message(missing->error);
    resolve_free(f->r);
    f->r = NULL;
    free(f->error);
    f->error = NULL;
    f->done_calls = 0;

    /* Strict: the first child that cannot be had fails the resolution. */
    start(f, idx, NULL, RESOLVE_REFERRERS_NONE, false);
    drain(f);
    assert_true(f->rc < 0);
    assert_message(f->error);
    free(idx), free(a), free(b), free(gone), free(cfg), free(lyr);
}

/* Even lenient, a root the source lacks fails it (there is nothing to check). */
static void test_missing_root(void **state)
{
    struct fixture *f = *state;
    start(f, "gone", NULL, RESOLVE_REFERRERS_ROOT, true);
    drain(f);
    assert_int_equal(f->rc, FERRY_ENOTFOUND);
}

/* An unreadable referrers listing: strict fails, lenient notes it on the subject. */
static void test_unreadable_referrers(void **state)
{
    struct fixture *f = *state;
    char *img = dg('1'), *cfg = dg('c'), *lyr = dg('d');
    source_answer(&f->src, img, 0, image_json(cfg, lyr), img);
    char *key = xasprintf("referrers:%s", img);
    source_answer(&f->src, key, 0, xstrdup("[1,2]"), NULL);
    free(key);
    start(f, img, NULL, RESOLVE_REFERRERS_ROOT, true);
    drain(f);
    assert_int_equal(f->rc, 0);
    assert_int_equal(resolve_root(f->r)->referrers_rc, FERRY_EPARSE);
    assert_message(resolve_root(f->r)->referrers_error);
    resolve_free(f->r);
    f->r = NULL;
    f->done_calls = 0;

    start(f, img, NULL, RESOLVE_REFERRERS_ALL, false);
    drain(f);
    assert_int_equal(f->rc, FERRY_EPARSE);
    char *want = xasprintf("referrers of %s: not an image index", img);
    assert_string_equal(f->error, want);
    free(want);
    free(img), free(cfg), free(lyr);
}

/* An index past the cap on manifests is refused before one child is asked for. */
static void test_manifests_cap(void **state)
{
    struct fixture *f = *state;
    enum { N = RESOLVE_MANIFESTS_MAX };
    char *idx = dg('0');
    char **children = xcalloc(N, sizeof(*children));
    for (size_t i = 0; i < N; i++)
        children[i] = xasprintf("sha256:%064zx", i + 1);
    source_answer(&f->src, idx, 0, index_json((const char *const *)children, NULL, N), idx);
    start(f, idx, NULL, RESOLVE_REFERRERS_NONE, true);
    drain(f);
    assert_int_equal(f->rc, FERRY_ETOOBIG);
    assert_non_null(strstr(f->error, "passes the cap of 1000 manifests"));
    assert_int_equal(f->src.n_asked, 1);
    for (size_t i = 0; i < N; i++)
        free(children[i]);
    free(children);
    free(idx);
}

/* A listing past the cap on referrers is refused, none of them fetched. */
static void test_referrers_cap(void **state)
{
    struct fixture *f = *state;
    enum { N = RESOLVE_REFERRERS_MAX + 1 };
    char *img = dg('1'), *cfg = dg('c'), *lyr = dg('d');
    char **refs = xcalloc(N, sizeof(*refs));
    for (size_t i = 0; i < N; i++)
        refs[i] = xasprintf("sha256:%064zx", i + 1);
    source_answer(&f->src, img, 0, image_json(cfg, lyr), img);
    char *key = xasprintf("referrers:%s", img);
    source_answer(&f->src, key, 0, index_json((const char *const *)refs, NULL, N), NULL);
    free(key);
    start(f, img, NULL, RESOLVE_REFERRERS_ALL, false);
    drain(f);
    assert_int_equal(f->rc, FERRY_ETOOBIG);
    assert_non_null(strstr(f->error, "referrers: refused (the cap is 500 per manifest)"));
    assert_int_equal(f->src.n_asked, 2);
    for (size_t i = 0; i < N; i++)
        free(refs[i]);
    free(refs);
    free(img), free(cfg), free(lyr);
}

/* A fetch that cannot start: Ferry's own failure, and `done` still fires once. */
static void test_fetch_refused(void **state)
{
    struct fixture *f = *state;
    f->src.refuse = true;
    start(f, "v1", NULL, RESOLVE_REFERRERS_NONE, false);
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->rc, FERRY_EINVAL);
    assert_true(resolve_fault_local(f->r));
}

static void test_referrers_parse(void **state)
{
    (void)state;
    cJSON *index = NULL;
    const cJSON *list = NULL;
    char *err = NULL;
    char *sig = dg('5');
    const char *sigs[] = {sig};
    char *good = index_json(sigs, NULL, 1);
    assert_int_equal(resolve_referrers_parse(good, strlen(good), "s", &index, &list, &err), 0);
    assert_null(err);
    assert_int_equal(cJSON_GetArraySize(list), 1);
    cJSON_Delete(index);

    const char *bad[] = {"", "{", "{\"manifests\":{}}", "{\"manifests\":[{\"digest\":\"x\"}]}",
                         "{\"manifests\":[{}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = resolve_referrers_parse(bad[i], strlen(bad[i]), "s", &index, &list, &err);
        assert_int_equal(rc, FERRY_EPARSE);
        assert_null(index);
        assert_null(list);
        assert_message(err);
        free(err);
    }
    free(good);
    free(sig);
}

static void test_layer_foreign(void **state)
{
    (void)state;
    assert_true(resolve_layer_foreign(MEDIA_DOCKER_FOREIGN_LAYER));
    assert_true(resolve_layer_foreign("application/vnd.oci.image.layer.nondistributable.v1.tar"));
    assert_true(
        resolve_layer_foreign("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"));
    assert_true(
        resolve_layer_foreign("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"));
    assert_true(resolve_layer_foreign("Application/VND.Docker.Image.Rootfs.Foreign.Diff.Tar.Gzip"));
    assert_false(resolve_layer_foreign(MEDIA_LYR));
    assert_false(resolve_layer_foreign("application/vnd.docker.image.rootfs.diff.tar.gzip"));
    assert_false(resolve_layer_foreign("application/vnd.oci.image.layer.nondistributable"));
    assert_false(resolve_layer_foreign(""));
    assert_false(resolve_layer_foreign(NULL));
}

/* What resolve_manifest_blobs() handed over: kinds and digests, in order. */
struct blobs_seen {
    enum resolve_blob_kind kinds[8];
    char digests[8][80];
    size_t n;
};

static void blob_seen(void *arg, const struct descriptor *d, enum resolve_blob_kind kind)
{
    struct blobs_seen *seen = arg;
    assert_true(seen->n < 8);
    seen->kinds[seen->n] = kind;
    snprintf(seen->digests[seen->n], sizeof(seen->digests[0]), "%s", d->digest);
    seen->n++;
}

static void test_manifest_blobs_foreign(void **state)
{
    (void)state;
    char *cfg = dg('c'), *plain = dg('1'), *docker = dg('2'), *oci = dg('3');
    char *json = xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
        "\"digest\":\"%s\",\"size\":2},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
        "\"size\":3},{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":4,\"urls\":"
        "[\"https://example.invalid/a\"]},{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":5,"
        "\"urls\":[\"https://example.invalid/b\"]}]}",
        MEDIA_OCI_MANIFEST, MEDIA_CFG, cfg, MEDIA_LYR, plain, MEDIA_DOCKER_FOREIGN_LAYER, docker,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", oci);
    struct manifest m;
    assert_int_equal(manifest_parse(&m, json, strlen(json), NULL, NULL), 0);

    /* Skipped by default: named, but as left out. */
    struct blobs_seen seen = {0};
    assert_int_equal(resolve_manifest_blobs(&m, false, blob_seen, &seen), 2);
    assert_int_equal(seen.n, 4);
    enum resolve_blob_kind skip_kinds[] = {RESOLVE_BLOB_CONFIG, RESOLVE_BLOB_LAYER,
                                           RESOLVE_BLOB_FOREIGN_SKIPPED,
                                           RESOLVE_BLOB_FOREIGN_SKIPPED};
    const char *order[] = {cfg, plain, docker, oci};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(seen.kinds[i], skip_kinds[i]);
        assert_string_equal(seen.digests[i], order[i]);
    }

    /* With foreign_layers, like any layer. */
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(resolve_manifest_blobs(&m, true, blob_seen, &seen), 0);
    assert_int_equal(seen.n, 4);
    assert_int_equal(seen.kinds[0], RESOLVE_BLOB_CONFIG);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(seen.kinds[i], RESOLVE_BLOB_LAYER);
    manifest_release(&m);

    /* An index names no blob. */
    const char *children[] = {plain};
    char *index = index_json(children, NULL, 1);
    assert_int_equal(manifest_parse(&m, index, strlen(index), NULL, NULL), 0);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(resolve_manifest_blobs(&m, false, blob_seen, &seen), 0);
    assert_int_equal(seen.n, 0);
    manifest_release(&m);
    free(index);
    free(json);
    free(cfg);
    free(plain);
    free(docker);
    free(oci);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_image_by_tag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_children_referrers_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_referrers_listed_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_platform_pick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_platform_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_referrers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifests_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrers_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_refused, setup, teardown),
        cmocka_unit_test(test_referrers_parse),
        cmocka_unit_test(test_layer_foreign),
        cmocka_unit_test(test_manifest_blobs_foreign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
