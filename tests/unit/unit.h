/*
 * unit.h: checks shared by Ferry's unit tests. Include after <cmocka.h>.
 */
#ifndef FERRY_TESTS_UNIT_H
#define FERRY_TESTS_UNIT_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/*
 * An error message as Ferry writes them: present, one line, printable,
 * starting lowercase (git's and curl's style).
 */
static inline void assert_message(const char *err)
{
    assert_non_null(err);
    assert_true(err[0] != '\0');
    assert_false(err[0] >= 'A' && err[0] <= 'Z');
    for (const char *c = err; *c != '\0'; c++)
        assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
}

static inline int unit_remove_entry(const char *path, const struct stat *st, int type,
                                    struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Create the temporary directory `root` (a mkdtemp template, rewritten in place). */
static inline int unit_tmpdir_make(char *root)
{
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* Remove `root` and everything below it. */
static inline int unit_tmpdir_remove(const char *root)
{
    if (nftw(root, unit_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        perror("nftw");
        return -1;
    }
    return 0;
}

#endif
