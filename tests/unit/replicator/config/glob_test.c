#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/glob.h"

struct match_case {
    const char *pattern;
    const char *text;
    bool match;
};

static const struct match_case match_cases[] = {
    /* Literals. */
    {"", "", true},
    {"", "a", false},
    {"a", "", false},
    {"app", "app", true},
    {"app", "apps", false},
    {"app", "ap", false},
    {"App", "app", false},
    {"a.b-c_d", "a.b-c_d", true},
    {"!x", "!x", true},
    {"\\*", "\\x", true},
    {"\\*", "*", false},
    /* `?`: one character, never '/'. */
    {"?", "a", true},
    {"?", "", false},
    {"?", "ab", false},
    {"?", "/", false},
    {"a?c", "abc", true},
    {"a?c", "a/c", false},
    {"v1.?", "v1.2", true},
    /* `*`: any run without '/'. */
    {"*", "", true},
    {"*", "latest", true},
    {"*", "a/b", false},
    {"app/*", "app/x", true},
    {"app/*", "app/", true},
    {"app/*", "app/x/y", false},
    {"app/*", "app", false},
    {"*/web", "team/web", true},
    {"*/web", "a/b/web", false},
    {"v1.*", "v1.2.3", true},
    {"v1.*", "v2.0", false},
    {"*-rc*", "1.0-rc2", true},
    {"a*b*c", "abc", true},
    {"a*b*c", "aXbYc", true},
    {"a*b*c", "aXcYb", false},
    {"a*", "a", true},
    {"*a", "bba", true},
    {"*a", "bab", false},
    /* `**`: any run, '/' included. */
    {"**", "", true},
    {"**", "a/b/c", true},
    {"app/**", "app/x", true},
    {"app/**", "app/x/y", true},
    {"app/**", "app", false},
    {"app/**", "apps/x", false},
    {"app/**", "application", false},
    {"app**", "app", true},
    {"app**", "apps/x/y", true},
    {"a**z", "a/b/c/z", true},
    {"a***z", "a/b/z", true},
    {"**/web", "web", true},
    {"**/web", "team/web", true},
    {"**/web", "a/b/web", true},
    {"**/web", "a/b/webs", false},
    {"**/web", "a/bweb", false},
    {"a/**/b", "a/b", true},
    {"a/**/b", "a/x/b", true},
    {"a/**/b", "a/x/y/b", true},
    {"a/**/b", "a/xb", false},
    {"a/**/b", "ab", false},
    {"a/**/b", "a/x/yb", false},
    {"a/**/**/b", "a/b", true},
    {"a/**/**/b", "a/x/y/z/b", true},
    {"**/", "", true},
    {"**/", "a/", true},
    {"**/", "a", false},
    {"team/**/*.sig", "team/x/y/sha256-ab.sig", true},
    {"team/**/*.sig", "team/sha256-ab.sig", true},
    {"team/**/*.sig", "team/x/y.sig/z", false},
    /* Mixed. */
    {"?*", "", false},
    {"?*", "a", true},
    {"*?*", "ab", true},
    {"a/*/c/**", "a/b/c/d/e", true},
    {"a/*/c/**", "a/b/x/c/d", false},
};

static void test_match_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *m = &match_cases[i];
        if (glob_match(m->pattern, m->text) != m->match)
            fail_msg("glob_match(\"%s\", \"%s\") should be %s", m->pattern, m->text,
                     m->match ? "true" : "false");
    }
}

static void test_null_and_caps(void **state)
{
    (void)state;
    assert_false(glob_match(NULL, "a"));
    assert_false(glob_match("a", NULL));

    /* A pattern of exactly GLOB_MAX_PATTERN bytes works; one more does not. */
    char *pattern = malloc(GLOB_MAX_PATTERN + 2);
    memset(pattern, '*', GLOB_MAX_PATTERN);
    pattern[GLOB_MAX_PATTERN] = '\0';
    assert_true(glob_match(pattern, "a/b/c"));
    pattern[GLOB_MAX_PATTERN] = '*';
    pattern[GLOB_MAX_PATTERN + 1] = '\0';
    assert_false(glob_match(pattern, "a/b/c"));

    /* As many "**" + "/" elements as fit, each of which may vanish. */
    size_t len = 0;
    while (len + 3 <= GLOB_MAX_PATTERN - 1) {
        memcpy(pattern + len, "**/", 3);
        len += 3;
    }
    pattern[len++] = 'x';
    pattern[len] = '\0';
    assert_true(glob_match(pattern, "x"));
    assert_true(glob_match(pattern, "a/b/x"));
    assert_false(glob_match(pattern, "a/b/y"));
    free(pattern);
}

static double elapsed_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Patterns that make backtracking matchers take exponential time. */
static void test_pathological(void **state)
{
    (void)state;
    struct timespec start;
    size_t text_len = 100000;
    char *text = malloc(text_len + 1);
    memset(text, 'a', text_len);
    text[text_len] = '\0';

    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_false(glob_match("*a*a*a*a*a*b", text));
    assert_false(glob_match("**a**a**a**a**a**b", text));
    assert_true(glob_match("*a*a*a*a*a*", text));
    text[text_len - 1] = 'b';
    assert_true(glob_match("*a*a*a*a*a*b", text));

    /* The longest pattern against the long text: bounded by 1024 x 100000 steps. */
    char pattern[GLOB_MAX_PATTERN + 1];
    for (size_t i = 0; i < GLOB_MAX_PATTERN; i += 2) {
        pattern[i] = '*';
        pattern[i + 1] = 'a';
    }
    pattern[GLOB_MAX_PATTERN - 1] = 'c';
    pattern[GLOB_MAX_PATTERN] = '\0';
    assert_false(glob_match(pattern, text));
    /* Generous: sanitizer builds are slow, a backtracking matcher would never finish. */
    assert_true(elapsed_since(&start) < 20.0);
    free(text);
}

static void test_select(void **state)
{
    (void)state;
    char *rules[] = {"app/**", "!app/scratch/**", "lib/*"};
    assert_true(glob_select(rules, 3, "app/web"));
    assert_true(glob_select(rules, 3, "app/scratchpad"));
    assert_true(glob_select(rules, 3, "lib/x"));
    assert_false(glob_select(rules, 3, "app/scratch/x"));
    assert_false(glob_select(rules, 3, "app/scratch/x/y"));
    assert_false(glob_select(rules, 3, "lib/x/y"));
    assert_false(glob_select(rules, 3, "other"));
    assert_false(glob_select(rules, 3, "app"));
    assert_false(glob_select(rules, 3, NULL));

    /* Order does not matter: an exclusion wins wherever it stands. */
    char *reversed[] = {"!app/scratch/**", "app/**"};
    assert_false(glob_select(reversed, 2, "app/scratch/x"));
    assert_true(glob_select(reversed, 2, "app/x"));

    /* Tags: everything but release candidates and signatures. */
    char *tags[] = {"*", "!*-rc*", "!sha256-*.sig"};
    assert_true(glob_select(tags, 3, "1.0"));
    assert_true(glob_select(tags, 3, "latest"));
    assert_false(glob_select(tags, 3, "1.0-rc1"));
    assert_false(glob_select(tags, 3, "sha256-abc.sig"));

    /* Nothing to choose from selects everything; exclusions alone select nothing. */
    assert_true(glob_select(NULL, 0, "anything"));
    char *only_excludes[] = {"!a"};
    assert_false(glob_select(only_excludes, 1, "b"));
    assert_false(glob_select(only_excludes, 1, "a"));

    /* NULL entries are skipped. */
    char *with_null[] = {NULL, "x"};
    assert_true(glob_select(with_null, 2, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_cases),
        cmocka_unit_test(test_null_and_caps),
        cmocka_unit_test(test_pathological),
        cmocka_unit_test(test_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
