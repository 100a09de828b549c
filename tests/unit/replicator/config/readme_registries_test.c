/*
 * The README's "Registries" section shows a config for each vendor: every
 * ```yaml block of that section must load as a Ferry config, with the keys
 * the text says it uses. A block that stops loading (a key renamed, a value
 * refused) fails here, so the README cannot drift from the schema.
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

#include "common/xalloc.h"
#include "config/config.h"

#define README_MAX (1024 * 1024)

static char *read_readme(void)
{
    const char *src = getenv("FERRY_SOURCE_DIR");
    char *path = xasprintf("%s/README.md", src != NULL ? src : ".");
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        fail_msg("cannot open %s (set FERRY_SOURCE_DIR)", path);
    char *text = xcalloc(1, README_MAX + 1);
    size_t n = fread(text, 1, README_MAX, fp);
    text[n] = '\0';
    fclose(fp);
    free(path);
    return text;
}

/* Create every relative password_file a block names, so that it loads. */
static void make_secret_files(const char *dir, const char *yaml)
{
    for (const char *p = strstr(yaml, "password_file:"); p != NULL;
         p = strstr(p + 1, "password_file:")) {
        const char *v = p + strlen("password_file:");
        while (*v == ' ')
            v++;
        size_t len = strcspn(v, " \n#");
        char *rel = xstrndup(v, len);
        assert_true(rel[0] != '/'); /* the README's examples are relative: testable */
        char *path = xasprintf("%s/%s", dir, rel);
        char *slash = strrchr(path, '/');
        *slash = '\0';
        char *mk = xasprintf("mkdir -p '%s'", path);
        assert_int_equal(system(mk), 0);
        *slash = '/';
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs("a-real-secret\n", fp);
        fclose(fp);
        assert_int_equal(chmod(path, 0600), 0);
        free(mk);
        free(path);
        free(rel);
    }
}

/* Load one block; returns the config (caller frees). */
static struct config *load_block(const char *dir, const char *yaml, size_t n)
{
    make_secret_files(dir, yaml);
    char *path = xasprintf("%s/ferry.yaml", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(yaml, fp);
    fclose(fp);
    struct config *c = NULL;
    char *err = NULL;
    int rc = config_load(path, &c, &err);
    if (rc != 0)
        fail_msg("README Registries block %zu does not load: %s\n%s", n, err, yaml);
    free(path);
    return c;
}

static const struct config_registry *find(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_registries; i++)
        if (strcmp(c->registries[i].name, name) == 0)
            return &c->registries[i];
    return NULL;
}

static void test_readme_registries(void **state)
{
    (void)state;
    char *readme = read_readme();
    char *start = strstr(readme, "\n## Registries\n");
    assert_non_null(start);
    char *end = strstr(start + 1, "\n## ");
    assert_non_null(end);
    *end = '\0';

    char dir[64];
    strcpy(dir, "/tmp/ferry-readme-XXXXXX");
    assert_int_equal(unit_tmpdir_make(dir), 0);
    size_t blocks = 0;
    bool seen_helper = false, seen_hook = false, seen_robot_dollar = false, seen_robot_plus = false,
         seen_docker_config = false, seen_password_file = false;
    for (char *p = strstr(start, "```yaml\n"); p != NULL; p = strstr(p, "```yaml\n")) {
        p += strlen("```yaml\n");
        char *close = strstr(p, "```");
        assert_non_null(close);
        char *yaml = xstrndup(p, (size_t)(close - p));
        struct config *c = load_block(dir, yaml, ++blocks);
        for (size_t i = 0; i < c->n_registries; i++) {
            const struct config_registry *r = &c->registries[i];
            seen_helper |= r->credential_helper != NULL;
            seen_hook |= r->n_create_repository > 0;
            seen_password_file |= r->password_file != NULL;
            seen_robot_dollar |= r->username != NULL && strchr(r->username, '$') != NULL;
            seen_robot_plus |= r->username != NULL && strchr(r->username, '+') != NULL;
        }
        seen_docker_config |= c->docker_config != NULL;
        const struct config_registry *ecr = find(c, "ecr");
        if (ecr != NULL && ecr->credential_helper != NULL) {
            assert_string_equal(ecr->credential_helper, "ecr-login");
            assert_string_equal(ecr->create_repository[ecr->n_create_repository - 1], "{repo}");
        }
        const struct config_registry *harbor = find(c, "harbor");
        if (harbor != NULL)
            assert_string_equal(harbor->username, "robot$ferry");
        config_free(c);
        free(yaml);
        p = close + 3;
    }
    assert_true(blocks >= 7);
    assert_true(seen_helper);
    assert_true(seen_hook);
    assert_true(seen_password_file);
    assert_true(seen_docker_config);
    assert_true(seen_robot_dollar);
    assert_true(seen_robot_plus);
    assert_int_equal(unit_tmpdir_remove(dir), 0);
    free(readme);
}

int main(void)
{
    xalloc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_registries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
