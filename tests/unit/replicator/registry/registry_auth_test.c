/*
 * The auth flow (replicator/registry/registry_auth.c) on the real loop,
 * against a scripted registry: Basic credentials sent only after a challenge
 * names Basic and only to the registry's own origin; a bearer token fetched
 * at the realm with the service and scope, then sent; a token that expires
 * fetched again; and a mount whose token carries two scopes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/errors.h"
#include "fixture.h"
#include "registry/registry.h"

#define REPO "lib/app"
/* base64("ferry:s3cret") */
#define BASIC "Basic ZmVycnk6czNjcmV0"
/* A blob's digest (the blob itself never moves in these tests). */
#define DIGEST "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

struct answer {
    bool done;
    int rc;
    bool exists;
    int64_t size;
    enum registry_upload_outcome how;
};

static void ping_done(int rc, const char *error, void *arg)
{
    struct answer *a = arg;
    (void)error;
    a->done = true;
    a->rc = rc;
}

static void exists_done(int rc, const char *error, bool exists, int64_t size, void *arg)
{
    struct answer *a = arg;
    (void)error;
    a->done = true;
    a->rc = rc;
    a->exists = exists;
    a->size = size;
}

static void upload_done(int rc, const char *error, enum registry_upload_outcome how, void *arg)
{
    struct answer *a = arg;
    if (rc < 0)
        fprintf(stderr, "upload failed: %s\n", error);
    a->done = true;
    a->rc = rc;
    a->how = how;
}

static struct registry_options with_credentials(void)
{
    struct registry_options o = fixture_options();
    o.username = "ferry";
    o.password = "s3cret";
    return o;
}

/* HEAD the blob DIGEST in REPO; it must be there, 5 bytes long. */
static void blob_head(struct fixture *f)
{
    struct answer a = {0};
    registry_blob_exists(f->reg, REPO, DIGEST, exists_done, &a);
    fixture_run(f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_true(a.exists);
    assert_int_equal(a.size, 5);
}

/*
 * Basic: the first request goes without credentials; after a challenge
 * naming Basic they go to the registry, and never to another origin (an
 * upload's Location on a storage host).
 */
static void test_basic(void **state)
{
    struct fixture f;
    struct registry_options o = with_credentials();
    struct answer a = {0};
    (void)state;
    fixture_start(&f, &o);
    responder_expect(&f.r, "GET", "/v2/", 401, "WWW-Authenticate: Basic realm=\"registry\"\r\n",
                     NULL);
    responder_expect(&f.r, "GET", "/v2/", 200, NULL, "{}");
    /* The registry points the upload at another origin. */
    char location[128];
    snprintf(location, sizeof(location), "Location: http://%s/store/u1\r\n", f.other.origin);
    responder_expect(&f.r, "POST", "/v2/" REPO "/blobs/uploads/", 202, location, NULL);
    responder_expect(&f.other, "PUT", "/store/u1?digest=*", 201, NULL, NULL);

    registry_ping(f.reg, ping_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);

    static struct blob_source src = {"hello", 5};
    struct registry_upload_options up = {0};
    memset(&a, 0, sizeof(a));
    assert_int_equal(registry_blob_upload(f.reg, REPO, DIGEST, 5, blob_source_read, &src, &up,
                                          upload_done, &a, NULL),
                     0);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.how, REGISTRY_UPLOADED);

    assert_responder_done(&f.r);
    assert_responder_done(&f.other);
    assert_header(&f.r.got[0], "Authorization", NULL);
    assert_header(&f.r.got[1], "Authorization", BASIC);
    assert_header(&f.r.got[2], "Authorization", BASIC);
    assert_header(&f.other.got[0], "Authorization", NULL);
    assert_memory_equal(f.other.got[0].body, "hello", 5);
    fixture_finish(&f);
}

/* The bearer challenge of the responder: its realm is /token on the registry itself. */
static char *bearer_challenge(const struct fixture *f)
{
    return xasprintf("WWW-Authenticate: Bearer realm=\"http://%s/token\",service=\"reg.test\"\r\n",
                     f->r.origin);
}

/*
 * Bearer: a 401 names the realm; the token is fetched there with the service
 * and the op's scope (and the Basic credentials), and the request goes again
 * with it. The next request uses the cached token.
 */
static void test_bearer(void **state)
{
    struct fixture f;
    struct registry_options o = with_credentials();
    struct registry_stats st;
    (void)state;
    fixture_start(&f, &o);
    char *challenge = bearer_challenge(&f);
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 401, challenge, NULL);
    responder_expect(&f.r, "GET", "/token?service=reg.test&scope=repository%3Alib%2Fapp%3Apull",
                     200, NULL, "{\"token\":\"tok-1\",\"expires_in\":300}");
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 200, "Content-Length: 5\r\n",
                     NULL);
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 200, "Content-Length: 5\r\n",
                     NULL);
    free(challenge);

    blob_head(&f);
    blob_head(&f);
    assert_responder_done(&f.r);
    assert_header(&f.r.got[0], "Authorization", NULL);
    assert_header(&f.r.got[1], "Authorization", BASIC);
    assert_header(&f.r.got[2], "Authorization", "Bearer tok-1");
    assert_header(&f.r.got[3], "Authorization", "Bearer tok-1");
    registry_get_stats(f.reg, &st);
    assert_int_equal(st.token_fetches, 1);
    fixture_finish(&f);
}

/* A token that lived its expires_in is not sent again: the next request fetches a new one. */
static void test_token_expiry(void **state)
{
    struct fixture f;
    struct registry_stats st;
    (void)state;
    fixture_start(&f, NULL);
    char *challenge = bearer_challenge(&f);
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 401, challenge, NULL);
    responder_expect(&f.r, "GET", "/token?service=reg.test&scope=*", 200, NULL,
                     "{\"token\":\"tok-1\",\"expires_in\":1}");
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 200, "Content-Length: 5\r\n",
                     NULL);
    responder_expect(&f.r, "GET", "/token?service=reg.test&scope=*", 200, NULL,
                     "{\"access_token\":\"tok-2\",\"expires_in\":300}");
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 200, "Content-Length: 5\r\n",
                     NULL);
    free(challenge);

    blob_head(&f);
    /* A one-second token is renewed a tenth of its life early. */
    fixture_wait(&f, 1000);
    blob_head(&f);
    assert_responder_done(&f.r);
    assert_header(&f.r.got[2], "Authorization", "Bearer tok-1");
    assert_header(&f.r.got[4], "Authorization", "Bearer tok-2");
    registry_get_stats(f.reg, &st);
    assert_int_equal(st.token_fetches, 2);
    fixture_finish(&f);
}

/*
 * A mount reads the source repository and writes the destination: its token
 * request names both scopes, and the POST goes again with that token.
 */
static void test_mount_two_scopes(void **state)
{
    struct fixture f;
    struct registry_options o = fixture_options();
    struct answer a = {0};
    (void)state;
    o.push = true;
    fixture_start(&f, &o);
    char *challenge = bearer_challenge(&f);
    const char *post = "/v2/" REPO "/blobs/uploads/?mount=" DIGEST "&from=lib/base";
    responder_expect(&f.r, "POST", post, 401, challenge, NULL);
    responder_expect(&f.r, "GET",
                     "/token?service=reg.test&scope=repository%3Alib%2Fapp%3Apull%2Cpush"
                     "&scope=repository%3Alib%2Fbase%3Apull",
                     200, NULL, "{\"token\":\"tok-m\"}");
    responder_expect(&f.r, "POST", post, 201, NULL, NULL);
    free(challenge);

    static struct blob_source src = {"hello", 5};
    struct registry_upload_options up = {.mount_from = "lib/base"};
    assert_int_equal(registry_blob_upload(f.reg, REPO, DIGEST, 5, blob_source_read, &src, &up,
                                          upload_done, &a, NULL),
                     0);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.how, REGISTRY_MOUNTED);
    assert_responder_done(&f.r);
    assert_header(&f.r.got[0], "Authorization", NULL);
    assert_header(&f.r.got[2], "Authorization", "Bearer tok-m");
    fixture_finish(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_token_expiry),
        cmocka_unit_test(test_mount_two_scopes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
