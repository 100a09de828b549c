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
#include <uv.h>

#include "common/errors.h"
#include "common/xalloc.h"
#include "registry/credentials.h"

struct fixture {
    char dir[64];
    char path[512];
    char *old_path_env;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/ferry-credentials-XXXXXX");
    if (unit_tmpdir_make(f->dir) < 0) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/password", f->dir);
    const char *p = getenv("PATH");
    f->old_path_env = xstrdup(p != NULL ? p : "/usr/bin:/bin");
    char *path = xasprintf("%s:%s", f->dir, f->old_path_env);
    setenv("PATH", path, 1);
    free(path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    setenv("PATH", f->old_path_env, 1);
    free(f->old_path_env);
    (void)unit_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(tmp, mode), 0);
    /* As a Kubernetes Secret update or a sidecar does: a new file renamed over the old. */
    assert_int_equal(rename(tmp, path), 0);
}

static char *b64url(const char *s)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t len = strlen(s);
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < len)
            v |= (uint32_t)(unsigned char)s[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';
    return out;
}

static void test_secret_life(void **state)
{
    (void)state;
    uint64_t now = 1700000000000ull;
    /* A JWT whose exp is an hour away. */
    char *claims = b64url("{\"sub\":\"x\",\"exp\":1700003600}");
    char *jwt = xasprintf("eyJhbGciOiJub25lIn0.%s.c2ln", claims);
    assert_int_equal(credentials_secret_life_ms(jwt, now), 3600000);
    /* Already expired, or no exp: unknown. */
    assert_int_equal(credentials_secret_life_ms(jwt, now + 4000000), 0);
    char *noexp = b64url("{\"sub\":\"x\"}");
    char *jwt2 = xasprintf("eyJhbGciOiJub25lIn0.%s.c2ln", noexp);
    assert_int_equal(credentials_secret_life_ms(jwt2, now), 0);
    /* An ECR token: base64 of AWS:{...,"expiration":...}. */
    char *ecr = b64url("AWS:{\"payload\":\"p\",\"datakey\":\"d\",\"version\":\"2\","
                       "\"type\":\"DATA_KEY\",\"expiration\":1700043200}");
    for (char *c = ecr; *c != '\0'; c++) /* the standard alphabet, as ECR sends it */
        *c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
    assert_int_equal(credentials_secret_life_ms(ecr, now), 43200000);
    /* Passwords say nothing. */
    assert_int_equal(credentials_secret_life_ms("hunter2", now), 0);
    assert_int_equal(credentials_secret_life_ms("a.b.c", now), 0);
    assert_int_equal(credentials_secret_life_ms("", now), 0);
    free(claims);
    free(jwt);
    free(noexp);
    free(jwt2);
    free(ecr);
}

static void test_static(void **state)
{
    (void)state;
    struct credentials_spec spec = {.kind = CREDENTIALS_STATIC,
                                    .host = "reg.test",
                                    .username = "alice",
                                    .password = "s3cret",
                                    .label = "config (registries.a)"};
    struct credentials *c = credentials_new(&spec);
    struct credential cred;
    assert_true(credentials_current(c, &cred));
    assert_string_equal(cred.username, "alice");
    assert_string_equal(cred.secret, "s3cret");
    assert_false(cred.identity_token);
    /* A refusal cannot be helped by asking again. */
    assert_false(credentials_refused(c, cred.generation));
    struct credentials_info info;
    credentials_get_info(c, &info);
    assert_string_equal(info.source, "config (registries.a)");
    assert_null(info.last_error);
    credentials_unref(c);
}

static void test_password_file_rotated(void **state)
{
    struct fixture *f = *state;
    write_text(f->path, "first\n", 0600);
    struct credentials_spec spec = {
        .kind = CREDENTIALS_FILE, .host = "reg.test", .username = "u", .path = f->path};
    struct credentials *c = credentials_new(&spec);
    struct credential cred;
    assert_true(credentials_current(c, &cred));
    assert_string_equal(cred.secret, "first");
    uint64_t gen = cred.generation;

    /* Refused with the file unchanged: asking again gives the same, so no. */
    assert_false(credentials_refused(c, gen));

    /* Rotated on disk: the refusal reads it again at once. */
    write_text(f->path, "second\n", 0600);
    assert_true(credentials_refused(c, gen));
    assert_true(credentials_current(c, &cred));
    assert_string_equal(cred.secret, "second");
    assert_true(cred.generation != gen);

    /* Rotated again: picked up without a refusal, within the recheck time. */
    write_text(f->path, "third\n", 0600);
    usleep((CREDENTIALS_RECHECK_MS + 100) * 1000);
    assert_true(credentials_current(c, &cred));
    assert_string_equal(cred.secret, "third");

    /* A file that goes away keeps what was read, and says why. */
    assert_int_equal(unlink(f->path), 0);
    usleep((CREDENTIALS_RECHECK_MS + 100) * 1000);
    assert_true(credentials_current(c, &cred));
    assert_string_equal(cred.secret, "third");
    struct credentials_info info;
    credentials_get_info(c, &info);
    assert_non_null(info.last_error);
    assert_null(strstr(info.last_error, "third"));
    assert_non_null(strstr(info.source, f->path));
    credentials_unref(c);
}

/* ---- a helper on the loop ---- */

struct fetched {
    int calls;
    int rc;
    char *username;
    char *secret;
    char *error;
};

static void fetched_cb(int rc, const char *error, const struct credential *cred, void *arg)
{
    struct fetched *r = arg;
    r->calls++;
    r->rc = rc;
    free(r->username);
    free(r->secret);
    free(r->error);
    r->username = rc == 0 && cred->username ? xstrdup(cred->username) : NULL;
    r->secret = rc == 0 && cred->secret ? xstrdup(cred->secret) : NULL;
    r->error = error ? xstrdup(error) : NULL;
}

static void fetched_release(struct fetched *r)
{
    free(r->username);
    free(r->secret);
    free(r->error);
    memset(r, 0, sizeof(*r));
}

/* A helper that counts its calls and answers with a new password each time. */
static void install_helper(struct fixture *f, const char *name, const char *body)
{
    char *path = xasprintf("%s/docker-credential-%s", f->dir, name);
    char *script = xasprintf("#!/bin/sh\n"
                             "read -r url || true\n"
                             "n=$(cat %s/calls-%s 2>/dev/null || echo 0); n=$((n+1))\n"
                             "echo $n > %s/calls-%s\n"
                             "%s\n",
                             f->dir, name, f->dir, name, body);
    write_text(path, script, 0755);
    free(script);
    free(path);
}

static int helper_calls(struct fixture *f, const char *name)
{
    char *path = xasprintf("%s/calls-%s", f->dir, name);
    FILE *fp = fopen(path, "r");
    free(path);
    int n = 0;
    if (fp != NULL) {
        if (fscanf(fp, "%d", &n) != 1)
            n = -1;
        fclose(fp);
    }
    return n;
}

static void test_helper_single_flight_and_refusal(void **state)
{
    struct fixture *f = *state;
    install_helper(f, "unit",
                   "printf '{\"ServerURL\":\"%s\",\"Username\":\"AWS\",\"Secret\":\"pw-%s\"}' "
                   "\"$url\" \"$n\"");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct credentials_spec spec = {
        .kind = CREDENTIALS_HELPER, .host = "reg.test", .helper = "unit", .timeout_ms = 5000};
    struct credentials *c = credentials_new(&spec);
    struct credential cred;
    assert_false(credentials_current(c, &cred));

    /* Two callers at once: one helper run. */
    struct fetched a = {0}, b = {0};
    credentials_fetch(c, &loop, fetched_cb, &a);
    credentials_fetch(c, &loop, fetched_cb, &b);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.rc, 0);
    assert_string_equal(a.username, "AWS");
    assert_string_equal(a.secret, "pw-1");
    assert_string_equal(b.secret, "pw-1");
    assert_int_equal(helper_calls(f, "unit"), 1);

    /* Held now, until refused. */
    assert_true(credentials_current(c, &cred));
    uint64_t gen = cred.generation;
    assert_true(credentials_refused(c, gen));
    assert_false(credentials_current(c, &cred));
    credentials_fetch(c, &loop, fetched_cb, &a);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_string_equal(a.secret, "pw-2");
    assert_int_equal(helper_calls(f, "unit"), 2);
    /* A second refusal of the old generation does not throw the new one away. */
    assert_true(credentials_refused(c, gen));
    assert_true(credentials_current(c, &cred));
    assert_string_equal(cred.secret, "pw-2");

    struct credentials_info info;
    credentials_get_info(c, &info);
    assert_string_equal(info.source, "credential helper docker-credential-unit");
    assert_int_equal(info.renewals, 2);
    assert_true(info.renewed_unix_ms > 0);
    /* No readable lifetime: kept CREDENTIALS_HELPER_TTL_MS. */
    assert_true(info.expires_unix_ms > 0);

    credentials_unref(c);
    fetched_release(&a);
    fetched_release(&b);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_helper_failure(void **state)
{
    struct fixture *f = *state;
    install_helper(f, "broken", "echo SECRET-ON-STDOUT; echo 'the vault is sealed' >&2; exit 1");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct credentials_spec spec = {
        .kind = CREDENTIALS_HELPER, .host = "reg.test", .helper = "broken", .timeout_ms = 5000};
    struct credentials *c = credentials_new(&spec);
    struct fetched r = {0};
    credentials_fetch(c, &loop, fetched_cb, &r);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    assert_true(r.rc < 0);
    assert_message(r.error);
    assert_non_null(strstr(r.error, "reg.test"));
    assert_non_null(strstr(r.error, "docker-credential-broken"));
    assert_non_null(strstr(r.error, "the vault is sealed"));
    assert_null(strstr(r.error, "SECRET-ON-STDOUT"));
    struct credentials_info info;
    credentials_get_info(c, &info);
    assert_int_equal(info.failures, 1);
    credentials_unref(c);
    fetched_release(&r);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A Docker config naming a store that has nothing for the registry: its auths, else anonymous. */
static void test_docker_config_store(void **state)
{
    struct fixture *f = *state;
    install_helper(f, "empty", "echo 'credentials not found in native keychain'; exit 1");
    char *cfg = xasprintf("%s/config.json", f->dir);
    write_text(
        cfg, "{\"credsStore\":\"empty\",\"auths\":{\"reg.test\":{\"auth\":\"Ym9iOmh1bnRlcjI=\"}}}",
        0600);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct credentials_spec spec = {
        .kind = CREDENTIALS_DOCKER_CONFIG, .host = "reg.test", .path = cfg};
    struct credentials *c = credentials_new(&spec);
    struct credential cred;
    assert_false(credentials_current(c, &cred));
    struct fetched r = {0};
    credentials_fetch(c, &loop, fetched_cb, &r);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.username, "bob");
    assert_string_equal(r.secret, "hunter2");
    credentials_unref(c);
    fetched_release(&r);

    /* The identity token of an auths entry is flagged as one. */
    write_text(cfg, "{\"auths\":{\"reg.test\":{\"identitytoken\":\"rt-1\"}}}", 0600);
    c = credentials_new(&spec);
    assert_true(credentials_current(c, &cred));
    assert_true(cred.identity_token);
    assert_string_equal(cred.secret, "rt-1");
    credentials_unref(c);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(cfg);
}

int main(void)
{
    xalloc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_life),
        cmocka_unit_test(test_static),
        cmocka_unit_test_setup_teardown(test_password_file_rotated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_helper_single_flight_and_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_helper_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docker_config_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
