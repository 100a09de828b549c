/*
 * Unit tests for replicator/replication/repo_hook.c: the argv of a
 * destination's create_repository command, and its runs on a real loop
 * with real processes (/bin/sh scripts standing in for `aws ecr
 * create-repository`): one run per (registry, repository) at a time, a
 * repository created once is not created again, a failure is forgotten and
 * says what the command wrote on stderr, a run outlives a freed runner.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "unit.h"

#include "common/errors.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "replication/repo_hook.h"

#define RUN_TURNS_MAX 100000

struct fixture {
    uv_loop_t loop;
    char dir[64];
    char *log; /* each run of the script appends "REGISTRY REPO" here */
};

/* What one repo_hook_cb saw. */
struct outcome {
    int calls;
    int rc;
    char *error;
};

static void hook_done(int rc, const char *error, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->rc = rc;
    free(o->error);
    o->error = error != NULL ? xstrdup(error) : NULL;
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-repo-hook-XXXXXX");
    assert_int_equal(unit_tmpdir_make(f->dir), 0);
    f->log = xasprintf("%s/runs", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    assert_int_equal(unit_tmpdir_remove(f->dir), 0);
    free(f->log);
    free(f);
    return 0;
}

/* A registry whose hook is `sh -c SCRIPT hook {registry} {repo}`. */
static struct config_registry registry_with(const char *script, char **argv_store)
{
    argv_store[0] = "sh";
    argv_store[1] = "-c";
    argv_store[2] = (char *)script;
    argv_store[3] = "hook";
    argv_store[4] = "{registry}";
    argv_store[5] = "{repo}";
    struct config_registry reg = {
        .name = "ecr",
        .host = "registry.test:5000",
        .create_repository = argv_store,
        .n_create_repository = 6,
        .command_timeout_ms = 10000,
    };
    return reg;
}

/* Turn the loop until `done` says so (bounded). */
static void run_until(struct fixture *f, const int *calls, int want)
{
    for (int i = 0; i < RUN_TURNS_MAX && *calls < want; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(*calls, want);
}

static int runs_logged(struct fixture *f, char *first, size_t len)
{
    FILE *fp = fopen(f->log, "r");
    if (fp == NULL)
        return 0;
    int n = 0;
    char line[256];
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (n == 0 && first != NULL)
            snprintf(first, len, "%s", line);
        n++;
    }
    fclose(fp);
    return n;
}

static void test_argv(void **state)
{
    (void)state;
    char *args[] = {"aws",
                    "ecr",
                    "create-repository",
                    "--repository-name",
                    "{repo}",
                    "--registry-id={registry}/{repo}{repo}",
                    "{rep",
                    "{registry",
                    "}{repo}{"};
    struct config_registry reg = {.name = "ecr",
                                  .host = "1.dkr.ecr.test",
                                  .create_repository = args,
                                  .n_create_repository = sizeof(args) / sizeof(args[0])};
    assert_true(repo_hook_configured(&reg));
    char **argv = repo_hook_argv(&reg, "team/app");
    const char *want[] = {"aws",
                          "ecr",
                          "create-repository",
                          "--repository-name",
                          "team/app",
                          "--registry-id=1.dkr.ecr.test/team/appteam/app",
                          "{rep",
                          "{registry",
                          "}team/app{"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(argv[i], want[i]);
    assert_null(argv[sizeof(want) / sizeof(want[0])]);
    repo_hook_argv_free(argv);

    struct config_registry none = {.name = "plain"};
    assert_false(repo_hook_configured(&none));
    assert_false(repo_hook_configured(NULL));
}

/* One run per repository at a time; created once, never again. */
static void test_single_flight_and_memory(void **state)
{
    struct fixture *f = *state;
    char *script = xasprintf("sleep 0.2; echo \"$1 $2\" >>%s", f->log);
    char *store[6];
    struct config_registry reg = registry_with(script, store);
    struct repo_hook *h = repo_hook_new(&f->loop);
    struct outcome a = {0}, b = {0}, c = {0};

    assert_int_equal(repo_hook_ensure(h, &reg, "team/app", hook_done, &a), REPO_HOOK_RUNNING);
    assert_int_equal(repo_hook_ensure(h, &reg, "team/app", hook_done, &b), REPO_HOOK_RUNNING);
    assert_int_equal(repo_hook_ensure(h, &reg, "team/db", hook_done, &c), REPO_HOOK_RUNNING);
    /* Never from inside the call. */
    assert_int_equal(a.calls + b.calls + c.calls, 0);
    run_until(f, &a.calls, 1);
    run_until(f, &b.calls, 1);
    run_until(f, &c.calls, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(c.rc, 0);
    assert_null(a.error);
    assert_int_equal(runs_logged(f, NULL, 0), 2);

    struct outcome d = {0};
    assert_int_equal(repo_hook_ensure(h, &reg, "team/app", hook_done, &d), REPO_HOOK_CREATED);
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(d.calls, 0);
    assert_int_equal(runs_logged(f, NULL, 0), 2);

    /* Another registry is another repository. */
    reg.name = "harbor";
    struct outcome e = {0};
    assert_int_equal(repo_hook_ensure(h, &reg, "team/app", hook_done, &e), REPO_HOOK_RUNNING);
    run_until(f, &e.calls, 1);
    char first[256] = "";
    assert_int_equal(runs_logged(f, first, sizeof(first)), 3);
    assert_true(strncmp(first, "registry.test:5000 team/", 24) == 0);

    repo_hook_free(h);
    free(script);
}

/*
 * The memory of created repositories is bounded: past its cap it is
 * forgotten, while the run that reached the cap still ends for its waiters.
 * A repository created longer ago than the fresh time and refused again was
 * deleted since: the hook runs again.
 */
static void test_memory_bounds(void **state)
{
    struct fixture *f = *state;
    char *script = xasprintf("echo \"$1 $2\" >>%s", f->log);
    char *store[6];
    struct config_registry reg = registry_with(script, store);
    struct repo_hook *h = repo_hook_new(&f->loop);
    repo_hook_set_limits(h, 1, 60000);
    struct outcome a = {0}, b = {0}, c = {0};

    assert_int_equal(repo_hook_ensure(h, &reg, "one", hook_done, &a), REPO_HOOK_RUNNING);
    run_until(f, &a.calls, 1);
    assert_int_equal(a.rc, 0);
    /* The second creation passes the cap: "one" is forgotten, "two"'s waiter still answered. */
    assert_int_equal(repo_hook_ensure(h, &reg, "two", hook_done, &b), REPO_HOOK_RUNNING);
    run_until(f, &b.calls, 1);
    assert_int_equal(b.rc, 0);
    assert_int_equal(repo_hook_ensure(h, &reg, "one", hook_done, &c), REPO_HOOK_RUNNING);
    run_until(f, &c.calls, 1);
    assert_int_equal(runs_logged(f, NULL, 0), 3);

    /* Fresh for 0 ms: a later refusal runs the hook again. */
    repo_hook_set_limits(h, 100, 0);
    struct outcome d = {0};
    uv_sleep(5);
    uv_update_time(&f->loop);
    assert_int_equal(repo_hook_ensure(h, &reg, "two", hook_done, &d), REPO_HOOK_RUNNING);
    run_until(f, &d.calls, 1);
    assert_int_equal(d.rc, 0);
    assert_int_equal(runs_logged(f, NULL, 0), 4);
    repo_hook_free(h);
    free(script);
}

/* A failure names the repository, the registry and the command's stderr; it is forgotten. */
static void test_failure(void **state)
{
    struct fixture *f = *state;
    char *script = xasprintf("echo \"$1 $2\" >>%s; echo 'RepositoryNotFound: no access' >&2; "
                             "echo secret-token; exit 3",
                             f->log);
    char *store[6];
    struct config_registry reg = registry_with(script, store);
    struct repo_hook *h = repo_hook_new(&f->loop);
    struct outcome a = {0}, b = {0};

    assert_int_equal(repo_hook_ensure(h, &reg, "team/app", hook_done, &a), REPO_HOOK_RUNNING);
    assert_int_equal(repo_hook_ensure(h, &reg, "team/app", hook_done, &b), REPO_HOOK_RUNNING);
    run_until(f, &a.calls, 1);
    run_until(f, &b.calls, 1);
    assert_true(a.rc < 0);
    assert_message(a.error);
    assert_non_null(strstr(a.error, "create_repository for team/app at ecr failed: "));
    assert_non_null(strstr(a.error, "status 3"));
    assert_non_null(strstr(a.error, "RepositoryNotFound: no access"));
    assert_null(strstr(a.error, "secret-token"));
    assert_string_equal(a.error, b.error);
    assert_int_equal(runs_logged(f, NULL, 0), 1);

    /* The next refusal runs it again. */
    struct outcome c = {0};
    assert_int_equal(repo_hook_ensure(h, &reg, "team/app", hook_done, &c), REPO_HOOK_RUNNING);
    run_until(f, &c.calls, 1);
    assert_true(c.rc < 0);
    assert_int_equal(runs_logged(f, NULL, 0), 2);
    free(a.error);
    free(b.error);
    free(c.error);
    repo_hook_free(h);
    free(script);
}

/* A program that is not there, and one that outlives the time limit. */
static void test_not_found_and_timeout(void **state)
{
    struct fixture *f = *state;
    char *missing[] = {"ferry-no-such-hook-program", "{repo}"};
    struct config_registry reg = {.name = "ecr",
                                  .host = "registry.test",
                                  .create_repository = missing,
                                  .n_create_repository = 2,
                                  .command_timeout_ms = 10000};
    struct repo_hook *h = repo_hook_new(&f->loop);
    struct outcome a = {0};
    assert_int_equal(repo_hook_ensure(h, &reg, "app", hook_done, &a), REPO_HOOK_RUNNING);
    run_until(f, &a.calls, 1);
    assert_true(a.rc < 0);
    assert_message(a.error);
    assert_non_null(strstr(a.error, "create_repository for app at ecr failed: "));

    char *store[6];
    struct config_registry slow = registry_with("sleep 5", store);
    slow.command_timeout_ms = 100;
    struct outcome b = {0};
    assert_int_equal(repo_hook_ensure(h, &slow, "app2", hook_done, &b), REPO_HOOK_RUNNING);
    run_until(f, &b.calls, 1);
    assert_true(b.rc < 0);
    assert_non_null(strstr(b.error, "timed out"));
    free(a.error);
    free(b.error);
    repo_hook_free(h);
}

/* Freed while a run is under way: the run ends on its own, and nobody is called. */
static void test_free_during_run(void **state)
{
    struct fixture *f = *state;
    char *script = xasprintf("sleep 0.1; echo \"$1 $2\" >>%s", f->log);
    char *store[6];
    struct config_registry reg = registry_with(script, store);
    struct repo_hook *h = repo_hook_new(&f->loop);
    struct outcome a = {0};
    assert_int_equal(repo_hook_ensure(h, &reg, "team/app", hook_done, &a), REPO_HOOK_RUNNING);
    repo_hook_free(h);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(a.calls, 0);
    assert_int_equal(runs_logged(f, NULL, 0), 1);
    free(script);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv),
        cmocka_unit_test_setup_teardown(test_single_flight_and_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_during_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
