/*
 * Unit tests for replicator/presence: a RocksDB-backed cache of which
 * repositories hold a blob. Every test works in its own directory under one
 * mkdtemp() root that the group teardown removes.
 */
#include <errno.h>
#include <ftw.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit.h"

#include "common/errors.h"
#include "common/log.h"
#include "replication/presence.h"
#include "common/xalloc.h"

#define REGISTRY "registry.example:5000"
#define DIGEST   "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST2  "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static char test_root[] = "/tmp/ferry-presence-test-XXXXXX";
static int test_dir_seq;

/* A fresh, not yet existing directory under the root; the caller frees it. */
static char *test_dir(void)
{
    return xasprintf("%s/db%d", test_root, test_dir_seq++);
}

static struct presence *test_open(const char *dir)
{
    struct presence *p = NULL;
    char *err = NULL;
    int rc = presence_open(dir, &p, &err);
    if (rc != 0)
        fail_msg("presence_open(%s) = %d: %s", dir, rc, err != NULL ? err : "(no message)");
    assert_null(err);
    assert_non_null(p);
    return p;
}

static void expect_find(struct presence *p, const char *registry, const char *digest,
                        const char *not_repo, const char *expected)
{
    char *found = presence_find(p, registry, digest, not_repo);
    if (expected == NULL) {
        assert_null(found);
    } else {
        assert_non_null(found);
        assert_string_equal(found, expected);
    }
    free(found);
}

/*
 * Check the whole list, most recent first, by finding and forgetting each
 * entry in turn; the list is empty afterwards.
 */
static void expect_list(struct presence *p, const char *registry, const char *digest,
                        const char *const *expected, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        expect_find(p, registry, digest, NULL, expected[i]);
        assert_int_equal(presence_forget(p, registry, digest, expected[i]), 0);
    }
    expect_find(p, registry, digest, NULL, NULL);
}

/* Write `value` under `key` with RocksDB directly, bypassing the module. */
static void raw_put(const char *dir, const char *key, const char *value, size_t len)
{
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_writeoptions_t *writeoptions = rocksdb_writeoptions_create();
    char *rocks_err = NULL;
    rocksdb_t *db = rocksdb_open(options, dir, &rocks_err);
    if (rocks_err != NULL)
        fail_msg("rocksdb_open: %s", rocks_err);
    rocksdb_put(db, writeoptions, key, strlen(key), value, len, &rocks_err);
    if (rocks_err != NULL)
        fail_msg("rocksdb_put: %s", rocks_err);
    rocksdb_close(db);
    rocksdb_writeoptions_destroy(writeoptions);
    rocksdb_options_destroy(options);
}

/* True when RocksDB holds any value under `key`. */
static int raw_exists(const char *dir, const char *key)
{
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_readoptions_t *readoptions = rocksdb_readoptions_create();
    char *rocks_err = NULL;
    size_t len = 0;
    rocksdb_t *db = rocksdb_open(options, dir, &rocks_err);
    if (rocks_err != NULL)
        fail_msg("rocksdb_open: %s", rocks_err);
    char *value = rocksdb_get(db, readoptions, key, strlen(key), &len, &rocks_err);
    if (rocks_err != NULL)
        fail_msg("rocksdb_get: %s", rocks_err);
    int exists = value != NULL;
    rocksdb_free(value);
    rocksdb_close(db);
    rocksdb_readoptions_destroy(readoptions);
    rocksdb_options_destroy(options);
    return exists;
}

static char *repeat_char(char c, size_t n)
{
    char *s = xmalloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_add_find_forget(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct presence *p = test_open(dir);

    expect_find(p, REGISTRY, DIGEST, NULL, NULL);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "library/alpine"), 0);
    expect_find(p, REGISTRY, DIGEST, NULL, "library/alpine");

    /* Another digest or another registry shares nothing. */
    expect_find(p, REGISTRY, DIGEST2, NULL, NULL);
    expect_find(p, "other.example:443", DIGEST, NULL, NULL);

    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "team/app"), 0);
    expect_find(p, REGISTRY, DIGEST, NULL, "team/app");

    assert_int_equal(presence_forget(p, REGISTRY, DIGEST, "team/app"), 0);
    expect_find(p, REGISTRY, DIGEST, NULL, "library/alpine");

    /* Forgetting what is not remembered succeeds and changes nothing. */
    assert_int_equal(presence_forget(p, REGISTRY, DIGEST, "never/there"), 0);
    assert_int_equal(presence_forget(p, REGISTRY, DIGEST2, "library/alpine"), 0);
    expect_find(p, REGISTRY, DIGEST, NULL, "library/alpine");

    assert_int_equal(presence_forget(p, REGISTRY, DIGEST, "library/alpine"), 0);
    expect_find(p, REGISTRY, DIGEST, NULL, NULL);

    presence_close(p);
    /* Forgetting the last repository deletes the key rather than storing "". */
    assert_false(raw_exists(dir, REGISTRY "\n" DIGEST));
    free(dir);
}

static void test_not_repo(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct presence *p = test_open(dir);

    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "a/one"), 0);
    /* The only holder is the repository asking: nothing to mount from. */
    expect_find(p, REGISTRY, DIGEST, "a/one", NULL);

    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "b/two"), 0);
    expect_find(p, REGISTRY, DIGEST, "b/two", "a/one");
    expect_find(p, REGISTRY, DIGEST, "a/one", "b/two");
    expect_find(p, REGISTRY, DIGEST, "c/three", "b/two");
    expect_find(p, REGISTRY, DIGEST, NULL, "b/two");

    /* presence_lookup also says whether the asking repository holds it. */
    bool holds = false;
    char *other = presence_lookup(p, REGISTRY, DIGEST, "a/one", &holds);
    assert_true(holds);
    assert_string_equal(other, "b/two");
    free(other);
    other = presence_lookup(p, REGISTRY, DIGEST, "c/three", &holds);
    assert_false(holds);
    assert_string_equal(other, "b/two");
    free(other);
    assert_int_equal(presence_forget(p, REGISTRY, DIGEST, "b/two"), 0);
    other = presence_lookup(p, REGISTRY, DIGEST, "a/one", &holds);
    assert_true(holds);
    assert_null(other);

    presence_close(p);
    free(dir);
}

static void test_cap_and_order(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct presence *p = test_open(dir);
    char *names[PRESENCE_MAX_REPOS + 4];
    const char *expected[PRESENCE_MAX_REPOS];

    for (size_t i = 0; i < PRESENCE_MAX_REPOS + 4; i++) {
        names[i] = xasprintf("org/repo%zu", i);
        assert_int_equal(presence_add(p, REGISTRY, DIGEST, names[i]), 0);
    }
    /* Newest first; the four oldest fell off. */
    for (size_t i = 0; i < PRESENCE_MAX_REPOS; i++)
        expected[i] = names[PRESENCE_MAX_REPOS + 3 - i];
    expect_list(p, REGISTRY, DIGEST, expected, PRESENCE_MAX_REPOS);

    /* Re-adding an old entry brings it to the front without growing past the cap. */
    for (size_t i = 0; i < PRESENCE_MAX_REPOS; i++)
        assert_int_equal(presence_add(p, REGISTRY, DIGEST, names[i]), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, names[0]), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, names[PRESENCE_MAX_REPOS]), 0);
    expected[0] = names[PRESENCE_MAX_REPOS];
    expected[1] = names[0];
    /* names[1] was the oldest and fell off. */
    for (size_t i = 2; i < PRESENCE_MAX_REPOS; i++)
        expected[i] = names[PRESENCE_MAX_REPOS + 1 - i];
    expect_list(p, REGISTRY, DIGEST, expected, PRESENCE_MAX_REPOS);

    for (size_t i = 0; i < PRESENCE_MAX_REPOS + 4; i++)
        free(names[i]);
    presence_close(p);
    free(dir);
}

static void test_duplicates(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct presence *p = test_open(dir);

    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "a"), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "a"), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "b"), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "c"), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "b"), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "b"), 0);
    /* One forget removes a repository entirely: it was stored once. */
    const char *expected[] = {"b", "c", "a"};
    expect_list(p, REGISTRY, DIGEST, expected, 3);

    presence_close(p);
    free(dir);
}

static void test_reopen_persists(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct presence *p = test_open(dir);

    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "x/first"), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "x/second"), 0);
    assert_int_equal(presence_add(p, REGISTRY, DIGEST2, "y/only"), 0);
    presence_close(p);

    p = test_open(dir);
    expect_find(p, REGISTRY, DIGEST, NULL, "x/second");
    expect_find(p, REGISTRY, DIGEST, "x/second", "x/first");
    expect_find(p, REGISTRY, DIGEST2, NULL, "y/only");
    assert_int_equal(presence_forget(p, REGISTRY, DIGEST, "x/second"), 0);
    presence_close(p);

    p = test_open(dir);
    expect_find(p, REGISTRY, DIGEST, NULL, "x/first");
    presence_close(p);
    free(dir);
}

static void test_invalid_inputs(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct presence *p = test_open(dir);
    char *longest = repeat_char('r', PRESENCE_MAX_NAME);
    char *too_long = repeat_char('r', PRESENCE_MAX_NAME + 1);
    const char *bad[] = {NULL, "", "has\nnewline", "\n", "trailing\n", too_long};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(presence_add(p, bad[i], DIGEST, "repo"), FERRY_EINVAL);
        assert_int_equal(presence_add(p, REGISTRY, bad[i], "repo"), FERRY_EINVAL);
        assert_int_equal(presence_add(p, REGISTRY, DIGEST, bad[i]), FERRY_EINVAL);
        assert_int_equal(presence_forget(p, bad[i], DIGEST, "repo"), FERRY_EINVAL);
        assert_int_equal(presence_forget(p, REGISTRY, bad[i], "repo"), FERRY_EINVAL);
        assert_int_equal(presence_forget(p, REGISTRY, DIGEST, bad[i]), FERRY_EINVAL);
        expect_find(p, bad[i], DIGEST, NULL, NULL);
        expect_find(p, REGISTRY, bad[i], NULL, NULL);
    }
    /* Nothing invalid was stored along the way. */
    expect_find(p, REGISTRY, DIGEST, NULL, NULL);

    /* Exactly the limit is accepted, in every position. */
    assert_int_equal(presence_add(p, longest, longest, longest), 0);
    expect_find(p, longest, longest, NULL, longest);
    assert_int_equal(presence_forget(p, longest, longest, longest), 0);

    assert_int_equal(presence_add(NULL, REGISTRY, DIGEST, "repo"), FERRY_EINVAL);
    assert_int_equal(presence_forget(NULL, REGISTRY, DIGEST, "repo"), FERRY_EINVAL);
    assert_null(presence_find(NULL, REGISTRY, DIGEST, NULL));
    presence_close(NULL);

    free(longest);
    free(too_long);
    presence_close(p);
    free(dir);
}

static void test_open_bad_dir(void **state)
{
    (void)state;
    struct presence *p = (struct presence *)&p;
    char *err = NULL;

    assert_int_equal(presence_open(NULL, &p, &err), FERRY_EINVAL);
    assert_null(p);
    assert_non_null(err);
    free(err);
    err = NULL;
    assert_int_equal(presence_open("", &p, &err), FERRY_EINVAL);
    assert_null(p);
    assert_non_null(err);
    free(err);
    err = NULL;
    /* The message is optional. */
    assert_int_equal(presence_open("", &p, NULL), FERRY_EINVAL);

    /* A regular file where the directory should be, and one on the way to it. */
    char *file = xasprintf("%s/plainfile", test_root);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(presence_open(file, &p, &err), -ENOTDIR);
    assert_null(p);
    assert_non_null(err);
    assert_null(strchr(err, '\n'));
    free(err);
    err = NULL;
    char *below = xasprintf("%s/sub/dir", file);
    assert_int_equal(presence_open(below, &p, &err), -ENOTDIR);
    assert_null(p);
    assert_non_null(err);
    free(err);
    free(below);
    free(file);
}

static void test_creates_parents_0700(void **state)
{
    (void)state;
    char *top = test_dir();
    char *dir = xasprintf("%s/a//b/c/", top);
    struct presence *p = test_open(dir);
    struct stat st;

    const char *parts[] = {"", "/a", "/a/b", "/a/b/c"};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        char *path = xasprintf("%s%s", top, parts[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0700);
        free(path);
    }
    presence_close(p);

    /* Opening an existing directory is fine. */
    p = test_open(dir);
    presence_close(p);
    free(dir);
    free(top);
}

static void test_second_open_fails(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct presence *p = test_open(dir);
    struct presence *second = (struct presence *)&second;
    char *err = NULL;

    assert_int_equal(presence_add(p, REGISTRY, DIGEST, "held/repo"), 0);
    int rc = presence_open(dir, &second, &err);
    assert_int_equal(rc, -EBUSY);
    assert_null(second);
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, dir));
    free(err);

    /* The first handle is unharmed, and the lock is released on close. */
    expect_find(p, REGISTRY, DIGEST, NULL, "held/repo");
    presence_close(p);
    p = test_open(dir);
    expect_find(p, REGISTRY, DIGEST, NULL, "held/repo");
    presence_close(p);
    free(dir);
}

/*
 * The real contender is another `ferry copy` process. The child is this test
 * binary run again with --open-child, so that it opens the cache in a fresh
 * process rather than in a fork of one that has RocksDB threads.
 */
static int child_open(const char *dir)
{
    struct presence *p = NULL;
    char *err = NULL;
    int rc = presence_open(dir, &p, &err);
    int ok = rc == -EBUSY && p == NULL && err != NULL && strchr(err, '\n') == NULL;
    if (!ok)
        fprintf(stderr, "child: presence_open = %d: %s\n", rc, err != NULL ? err : "(none)");
    free(err);
    presence_close(p);
    return ok ? 0 : 1;
}

static void test_other_process_open_fails(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct presence *p = test_open(dir);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "presence_test", "--open-child", dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    presence_close(p);
    free(dir);
}

static void test_corrupt_values(void **state)
{
    (void)state;
    char *dir = test_dir();
    /* Let RocksDB create the directory first. */
    presence_close(test_open(dir));

    char *long_name = repeat_char('n', PRESENCE_MAX_NAME + 1);
    char *huge = repeat_char('h', 1 << 20);
    char *seventeen = NULL;
    for (int i = 0; i < PRESENCE_MAX_REPOS + 1; i++) {
        char *next = xasprintf("%s%sr%d", seventeen != NULL ? seventeen : "",
                               seventeen != NULL ? "\n" : "", i);
        free(seventeen);
        seventeen = next;
    }
    struct {
        const char *value;
        size_t len;
    } garbage[] = {
        {"", 0},
        {"\n", 1},
        {"a\n\nb", 4},
        {"a\n", 2},
        {"\na", 2},
        {"a\0b", 3},
        {"a\na", 3},
        {"\xff\x00\x01\x02\xfe", 5},
        {long_name, strlen(long_name)},
        {huge, strlen(huge)},
        {seventeen, strlen(seventeen)},
    };
    size_t n = sizeof(garbage) / sizeof(garbage[0]);

    for (size_t i = 0; i < n; i++) {
        char *digest = xasprintf("sha256:corrupt%zu", i);
        char *key = xasprintf("%s\n%s", REGISTRY, digest);
        raw_put(dir, key, garbage[i].value, garbage[i].len);
        free(key);
        free(digest);
    }
    /* A well-formed value written by hand proves the test speaks the format. */
    raw_put(dir, REGISTRY "\n" DIGEST, "hand/one\nhand/two", 17);

    struct presence *p = test_open(dir);
    expect_find(p, REGISTRY, DIGEST, NULL, "hand/one");
    expect_find(p, REGISTRY, DIGEST, "hand/one", "hand/two");
    for (size_t i = 0; i < n; i++) {
        char *digest = xasprintf("sha256:corrupt%zu", i);
        expect_find(p, REGISTRY, digest, NULL, NULL);
        expect_find(p, REGISTRY, digest, "a", NULL);
        /* Even-numbered entries heal by an add, odd ones by a forget. */
        if (i % 2 == 0) {
            assert_int_equal(presence_add(p, REGISTRY, digest, "healed/repo"), 0);
            expect_find(p, REGISTRY, digest, NULL, "healed/repo");
            expect_find(p, REGISTRY, digest, "healed/repo", NULL);
        } else {
            assert_int_equal(presence_forget(p, REGISTRY, digest, "whatever"), 0);
            expect_find(p, REGISTRY, digest, NULL, NULL);
        }
        free(digest);
    }
    presence_close(p);

    for (size_t i = 0; i < n; i++) {
        char *key = xasprintf("%s\nsha256:corrupt%zu", REGISTRY, i);
        assert_int_equal(raw_exists(dir, key), i % 2 == 0);
        free(key);
    }

    free(seventeen);
    free(huge);
    free(long_name);
    free(dir);
}

static void test_default_dir(void **state)
{
    (void)state;
    char *dir;

    assert_int_equal(setenv("XDG_CACHE_HOME", "/xdg/cache", 1), 0);
    assert_int_equal(setenv("HOME", "/home/ferry", 1), 0);
    dir = presence_default_dir();
    assert_string_equal(dir, "/xdg/cache/ferry/presence");
    free(dir);

    /* The XDG spec says a relative XDG_CACHE_HOME is to be ignored. */
    assert_int_equal(setenv("XDG_CACHE_HOME", "relative", 1), 0);
    dir = presence_default_dir();
    assert_string_equal(dir, "/home/ferry/.cache/ferry/presence");
    free(dir);

    assert_int_equal(setenv("XDG_CACHE_HOME", "", 1), 0);
    dir = presence_default_dir();
    assert_string_equal(dir, "/home/ferry/.cache/ferry/presence");
    free(dir);

    assert_int_equal(unsetenv("XDG_CACHE_HOME"), 0);
    dir = presence_default_dir();
    assert_string_equal(dir, "/home/ferry/.cache/ferry/presence");
    free(dir);

    assert_int_equal(unsetenv("HOME"), 0);
    assert_null(presence_default_dir());
    assert_int_equal(setenv("HOME", "", 1), 0);
    assert_null(presence_default_dir());
}

static int group_setup(void **state)
{
    (void)state;
    return unit_tmpdir_make(test_root);
}

static int group_teardown(void **state)
{
    (void)state;
    return unit_tmpdir_remove(test_root);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--open-child") == 0)
        return child_open(argv[2]);

    /* Exercise the debug logging of RocksDB errors and corrupt entries too. */
    log_threshold = FERRY_LOG_DEBUG;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_forget),   cmocka_unit_test(test_not_repo),
        cmocka_unit_test(test_cap_and_order),     cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_reopen_persists),   cmocka_unit_test(test_invalid_inputs),
        cmocka_unit_test(test_open_bad_dir),      cmocka_unit_test(test_creates_parents_0700),
        cmocka_unit_test(test_second_open_fails), cmocka_unit_test(test_corrupt_values),
        cmocka_unit_test(test_default_dir),       cmocka_unit_test(test_other_process_open_fails),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
