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
#include <sys/stat.h>
#include <unistd.h>

#include "common/digest.h"
#include "common/errors.h"
#include "fixture.h"
#include "registry/credentials.h"
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

/* base64("ferry:new-pw") */
#define BASIC_NEW "Basic ZmVycnk6bmV3LXB3"

struct pwfile {
    char dir[64];
    char path[128];
};

static void pwfile_write(struct pwfile *p, const char *password)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", p->path);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n", password);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(tmp, 0600), 0);
    assert_int_equal(rename(tmp, p->path), 0);
}

/* Credentials from a password file holding "s3cret" now. */
static struct credentials *pwfile_credentials(struct pwfile *p)
{
    strcpy(p->dir, "/tmp/ferry-auth-XXXXXX");
    assert_int_equal(unit_tmpdir_make(p->dir), 0);
    snprintf(p->path, sizeof(p->path), "%s/password", p->dir);
    pwfile_write(p, "s3cret");
    struct credentials_spec spec = {
        .kind = CREDENTIALS_FILE, .host = "reg.test", .username = "ferry", .path = p->path};
    return credentials_new(&spec);
}

/*
 * A password file rotated on disk (a sidecar refreshing an ECR token): the
 * registry's 401 to the old password reads it again, and the request goes
 * once more with the new one, without a reload.
 */
static void test_basic_password_file_rotated(void **state)
{
    struct fixture f;
    struct pwfile pw;
    struct answer a = {0};
    (void)state;
    struct registry_options o = fixture_options();
    o.credentials = pwfile_credentials(&pw);
    fixture_start(&f, &o);
    credentials_unref(o.credentials);
    const char *basic = "WWW-Authenticate: Basic realm=\"registry\"\r\n";
    responder_expect(&f.r, "GET", "/v2/", 401, basic, NULL);
    responder_expect(&f.r, "GET", "/v2/", 401, basic, NULL);
    responder_expect(&f.r, "GET", "/v2/", 200, NULL, "{}");
    pwfile_write(&pw, "new-pw");

    registry_ping(f.reg, ping_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_responder_done(&f.r);
    assert_header(&f.r.got[0], "Authorization", NULL);
    assert_header(&f.r.got[1], "Authorization", BASIC);
    assert_header(&f.r.got[2], "Authorization", BASIC_NEW);
    fixture_finish(&f);
    assert_int_equal(unit_tmpdir_remove(pw.dir), 0);
}

struct failed {
    bool done;
    int rc;
    char *error;
};

static void ping_failed(int rc, const char *error, void *arg)
{
    struct failed *a = arg;
    a->done = true;
    a->rc = rc;
    a->error = error != NULL ? xstrdup(error) : NULL;
}

/* Refused again after the renewal: one clear error naming the registry and the source. */
static void test_basic_refused_twice(void **state)
{
    struct fixture f;
    struct pwfile pw;
    struct failed a = {0};
    (void)state;
    struct registry_options o = fixture_options();
    o.credentials = pwfile_credentials(&pw);
    fixture_start(&f, &o);
    credentials_unref(o.credentials);
    const char *basic = "WWW-Authenticate: Basic realm=\"registry\"\r\n";
    responder_expect(&f.r, "GET", "/v2/", 401, basic, NULL);
    responder_expect(&f.r, "GET", "/v2/", 401, basic, NULL);
    responder_expect(&f.r, "GET", "/v2/", 401, basic, NULL);
    pwfile_write(&pw, "new-pw");

    registry_ping(f.reg, ping_failed, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, FERRY_EAUTH);
    assert_non_null(a.error);
    assert_null(strchr(a.error, '\n'));
    assert_non_null(strstr(a.error, f.r.origin));
    assert_non_null(strstr(a.error, pw.path));
    assert_non_null(strstr(a.error, "refused"));
    assert_null(strstr(a.error, "new-pw"));
    assert_responder_done(&f.r);
    free(a.error);
    fixture_finish(&f);
    assert_int_equal(unit_tmpdir_remove(pw.dir), 0);
}

/* The token realm refuses an expired password: renewed once, and the token comes. */
static void test_token_realm_renews(void **state)
{
    struct fixture f;
    struct pwfile pw;
    (void)state;
    struct registry_options o = fixture_options();
    o.credentials = pwfile_credentials(&pw);
    fixture_start(&f, &o);
    credentials_unref(o.credentials);
    char *challenge = bearer_challenge(&f);
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 401, challenge, NULL);
    responder_expect(&f.r, "GET", "/token?service=reg.test&scope=*", 401, NULL,
                     "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"expired\"}]}");
    responder_expect(&f.r, "GET", "/token?service=reg.test&scope=*", 200, NULL,
                     "{\"token\":\"tok-1\"}");
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 200, "Content-Length: 5\r\n",
                     NULL);
    free(challenge);
    pwfile_write(&pw, "new-pw");

    blob_head(&f);
    assert_responder_done(&f.r);
    assert_header(&f.r.got[1], "Authorization", BASIC);
    assert_header(&f.r.got[2], "Authorization", BASIC_NEW);
    assert_header(&f.r.got[3], "Authorization", "Bearer tok-1");
    fixture_finish(&f);
    assert_int_equal(unit_tmpdir_remove(pw.dir), 0);
}

/*
 * A source with nothing for the registry (a Docker config without an entry):
 * a Basic challenge is answered by nobody, so the request is not sent again.
 */
static void test_basic_anonymous_once(void **state)
{
    struct fixture f;
    struct failed a = {0};
    (void)state;
    struct registry_options o = fixture_options();
    struct credentials_spec spec = {.kind = CREDENTIALS_DOCKER_CONFIG,
                                    .host = "reg.test",
                                    .path = "/nonexistent/ferry/config.json"};
    o.credentials = credentials_new(&spec);
    fixture_start(&f, &o);
    credentials_unref(o.credentials);
    responder_expect(&f.r, "GET", "/v2/", 401, "WWW-Authenticate: Basic realm=\"registry\"\r\n",
                     NULL);
    registry_ping(f.reg, ping_failed, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, FERRY_EAUTH);
    assert_responder_done(&f.r);
    assert_int_equal(f.r.n_got, 1);
    free(a.error);
    fixture_finish(&f);
}

/*
 * An identity token (a helper's "<token>" username, config.json's
 * identitytoken) is exchanged at the realm with the OAuth2 refresh_token
 * grant: a POST of a form, never a Basic header, never a redirect followed.
 */
static void test_identity_token(void **state)
{
    struct fixture f;
    (void)state;
    struct registry_options o = fixture_options();
    o.username = "<token>";
    o.password = "refresh-me";
    fixture_start(&f, &o);
    char *challenge = bearer_challenge(&f);
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 401, challenge, NULL);
    responder_expect(&f.r, "POST", "/token", 200, NULL,
                     "{\"access_token\":\"tok-r\",\"expires_in\":300}");
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/blobs/" DIGEST, 200, "Content-Length: 5\r\n",
                     NULL);
    free(challenge);

    blob_head(&f);
    assert_responder_done(&f.r);
    assert_header(&f.r.got[1], "Authorization", NULL);
    assert_header(&f.r.got[1], "Content-Type", "application/x-www-form-urlencoded");
    const char *want = "grant_type=refresh_token&client_id=ferry&service=reg.test"
                       "&scope=repository%3Alib%2Fapp%3Apull&refresh_token=refresh-me";
    assert_int_equal(f.r.got[1].body_len, strlen(want));
    assert_memory_equal(f.r.got[1].body, want, strlen(want));
    assert_header(&f.r.got[2], "Authorization", "Bearer tok-r");
    fixture_finish(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_token_expiry),
        cmocka_unit_test(test_mount_two_scopes),
        cmocka_unit_test(test_basic_password_file_rotated),
        cmocka_unit_test(test_basic_refused_twice),
        cmocka_unit_test(test_token_realm_renews),
        cmocka_unit_test(test_identity_token),
        cmocka_unit_test(test_basic_anonymous_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
