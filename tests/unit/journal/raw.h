/*
 * raw.h: writes into a journal's RocksDB behind the journal's back, for the
 * journal tests that need what corruption on disk looks like.
 * Include after <cmocka.h>.
 */
#ifndef FERRY_TESTS_JOURNAL_RAW_H
#define FERRY_TESTS_JOURNAL_RAW_H

#include <rocksdb/c.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/*
 * Put one raw value into a column family (or, with a NULL value, delete the
 * key), bypassing the journal, the way corruption on disk or an older
 * format would look. The journal must be closed.
 */
static inline void raw_put(const char *dir, const char *family, const char *key, size_t key_len,
                           const void *value, size_t value_len)
{
    rocksdb_options_t *options = rocksdb_options_create();
    /* As the journal opens it: its counters are merged (journal_int.h). */
    rocksdb_options_set_uint64add_merge_operator(options);
    char *err = NULL;
    size_t n = 0;
    char **names = rocksdb_list_column_families(options, dir, &n, &err);
    assert_null(err);
    const rocksdb_options_t **cf_options = xcalloc(n, sizeof(*cf_options));
    rocksdb_column_family_handle_t **handles = xcalloc(n, sizeof(*handles));
    for (size_t i = 0; i < n; i++)
        cf_options[i] = options;
    rocksdb_t *db = rocksdb_open_column_families(options, dir, (int)n, (const char *const *)names,
                                                 cf_options, handles, &err);
    if (err != NULL)
        fail_msg("raw open: %s", err);
    rocksdb_writeoptions_t *write = rocksdb_writeoptions_create();
    bool put = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], family) != 0)
            continue;
        if (value != NULL)
            rocksdb_put_cf(db, write, handles[i], key, key_len, value, value_len, &err);
        else
            rocksdb_delete_cf(db, write, handles[i], key, key_len, &err);
        assert_null(err);
        put = true;
    }
    assert_true(put);
    rocksdb_writeoptions_destroy(write);
    for (size_t i = 0; i < n; i++)
        rocksdb_column_family_handle_destroy(handles[i]);
    rocksdb_close(db);
    rocksdb_list_column_families_destroy(names, n);
    free(handles);
    free(cf_options);
    rocksdb_options_destroy(options);
}

static inline void raw_delete(const char *dir, const char *family, const char *key, size_t key_len)
{
    raw_put(dir, family, key, key_len, NULL, 0);
}

#endif
