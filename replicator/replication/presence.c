#include "replication/presence.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/errors.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/xalloc.h"

/*
 * Storage format. The key is "<registry>\n<digest>"; the value is the
 * repositories joined by "\n", most recent first, without a trailing newline.
 * Names never contain a newline (presence_name_valid() sees to that), so both
 * split unambiguously. A (registry, digest) that no repository holds has no
 * key at all: forgetting the last repository deletes it.
 */

/* The longest value presence_store() writes; anything longer is corrupt. */
#define PRESENCE_VALUE_MAX (PRESENCE_MAX_REPOS * (PRESENCE_MAX_NAME + 1))

/* RocksDB's InfoLogLevel::WARN_LEVEL, which its C API only takes as an int. */
#define PRESENCE_ROCKSDB_WARN_LEVEL 2

struct presence {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *readoptions;
    rocksdb_writeoptions_t *writeoptions;
};

/* One decoded value: `repos` point into `data`, which the list owns. */
struct presence_list {
    char *data;
    const char *repos[PRESENCE_MAX_REPOS];
    size_t count;
};

static void presence_list_release(struct presence_list *list)
{
    free(list->data);
    list->data = NULL;
    list->count = 0;
}

static bool presence_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t len = strnlen(name, PRESENCE_MAX_NAME + 1);
    return len > 0 && len <= PRESENCE_MAX_NAME && memchr(name, '\n', len) == NULL;
}

/*
 * RocksDB reports a held lock as an IO error; tell it apart by its text so
 * that callers can say "another ferry is using the cache" rather than "I/O".
 */
static int presence_open_code(const char *rocks_err)
{
    if (strstr(rocks_err, "While lock file") != NULL ||
        strstr(rocks_err, "lock hold by current process") != NULL)
        return -EBUSY;
    return -EIO;
}

/* Callers promise a one-line message; a directory name may break that. */
static void presence_one_line(char *message)
{
    for (char *c = message; *c != '\0'; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
}

int presence_open(const char *dir, struct presence **out, char **err)
{
    struct presence *p = NULL;
    char *rocks_err = NULL;
    char *message = NULL;
    int rc;

    if (err != NULL)
        *err = NULL;
    if (out != NULL)
        *out = NULL;
    if (out == NULL || dir == NULL || dir[0] == '\0') {
        rc = FERRY_EINVAL;
        message = xstrdup("presence cache: no directory given");
        goto out;
    }

    rc = fs_mkdir_p(dir, 0700);
    if (rc < 0) {
        message =
            xasprintf("cannot create presence cache directory %s: %s", dir, ferry_strerror(rc));
        goto out;
    }

    p = xcalloc(1, sizeof(*p));
    p->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(p->options, 1);
    /* The cache is small and secondary: keep RocksDB's footprint so too
     * (its memtables, the one being written and the one being flushed, at
     * most 2 MiB together, whatever the number of blobs). */
    rocksdb_options_set_write_buffer_size(p->options, 1 << 20);
    rocksdb_options_set_db_write_buffer_size(p->options, 2 << 20);
    rocksdb_options_set_max_open_files(p->options, 64);
    /* And its reads, index blocks included, in a cache of 2 MiB. */
    p->cache = rocksdb_cache_create_lru(2 << 20);
    p->table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(p->table, p->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(p->table, 1);
    rocksdb_options_set_block_based_table_factory(p->options, p->table);
    rocksdb_options_set_info_log_level(p->options, PRESENCE_ROCKSDB_WARN_LEVEL);
    rocksdb_options_set_keep_log_file_num(p->options, 2);
    rocksdb_options_set_max_log_file_size(p->options, 1 << 20);
    p->readoptions = rocksdb_readoptions_create();
    /*
     * Writes go to the WAL so that they outlive the process, but are not
     * synced: losing the newest entries in a power cut only costs an upload.
     */
    p->writeoptions = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(p->writeoptions, 0);
    /* A cache: no write-ahead log (what a crash loses is found again by a HEAD). */
    rocksdb_writeoptions_disable_WAL(p->writeoptions, 1);

    p->db = rocksdb_open(p->options, dir, &rocks_err);
    if (rocks_err != NULL || p->db == NULL) {
        const char *text = rocks_err != NULL ? rocks_err : "unknown error";
        log_debug("presence cache open failed dir=%s error=%s", dir, text);
        rc = rocks_err != NULL ? presence_open_code(rocks_err) : -EIO;
        message = xasprintf("cannot open presence cache %s: %s", dir, text);
        goto out;
    }

    *out = p;
    p = NULL;
    rc = 0;
out:
    if (rocks_err != NULL)
        rocksdb_free(rocks_err);
    presence_close(p);
    if (message != NULL) {
        presence_one_line(message);
        if (err != NULL)
            *err = message;
        else
            free(message);
    }
    return rc;
}

void presence_close(struct presence *p)
{
    if (p == NULL)
        return;
    if (p->db != NULL)
        rocksdb_close(p->db);
    if (p->writeoptions != NULL)
        rocksdb_writeoptions_destroy(p->writeoptions);
    if (p->readoptions != NULL)
        rocksdb_readoptions_destroy(p->readoptions);
    if (p->options != NULL)
        rocksdb_options_destroy(p->options);
    if (p->table != NULL)
        rocksdb_block_based_options_destroy(p->table);
    if (p->cache != NULL)
        rocksdb_cache_destroy(p->cache);
    free(p);
}

static char *presence_key(const char *registry, const char *digest, size_t *len)
{
    char *key = xasprintf("%s\n%s", registry, digest);
    *len = strlen(key);
    return key;
}

/*
 * Decode a stored value into `list`. Everything RocksDB hands back is checked
 * as if it came from the network: a value this module would not have written
 * (too long, an empty or oversized name, a NUL, too many or repeated names) is
 * rejected whole, since a half-trusted list is no better than none.
 */
static bool presence_parse(const char *value, size_t len, struct presence_list *list)
{
    if (len == 0 || len > PRESENCE_VALUE_MAX || memchr(value, '\0', len) != NULL)
        return false;

    list->data = xmalloc(len + 1);
    memcpy(list->data, value, len);
    list->data[len] = '\0';
    list->count = 0;

    char *start = list->data;
    for (;;) {
        char *newline = strchr(start, '\n');
        size_t n = newline != NULL ? (size_t)(newline - start) : strlen(start);
        if (n == 0 || n > PRESENCE_MAX_NAME || list->count == PRESENCE_MAX_REPOS)
            goto bad;
        if (newline != NULL)
            *newline = '\0';
        for (size_t i = 0; i < list->count; i++) {
            if (strcmp(list->repos[i], start) == 0)
                goto bad;
        }
        list->repos[list->count++] = start;
        if (newline == NULL)
            break;
        start = newline + 1;
    }
    return true;
bad:
    presence_list_release(list);
    return false;
}

/*
 * Read the entry for (registry, digest). A missing entry and a corrupt one
 * both come back as an empty list; `*corrupt` tells them apart so that
 * writers can replace or delete the bad value. Returns 0 or -EIO.
 */
static int presence_load(struct presence *p, const char *registry, const char *digest,
                         const char *key, size_t keylen, struct presence_list *list, bool *corrupt)
{
    char *rocks_err = NULL;
    size_t len = 0;

    list->data = NULL;
    list->count = 0;
    *corrupt = false;

    char *value = rocksdb_get(p->db, p->readoptions, key, keylen, &len, &rocks_err);
    if (rocks_err != NULL) {
        log_debug("presence cache read failed registry=%s digest=%s error=%s", registry, digest,
                  rocks_err);
        rocksdb_free(rocks_err);
        if (value != NULL)
            rocksdb_free(value);
        return -EIO;
    }
    if (value == NULL)
        return 0;
    if (!presence_parse(value, len, list)) {
        log_debug("presence cache entry corrupt, treating it as empty registry=%s digest=%s "
                  "len=%zu",
                  registry, digest, len);
        *corrupt = true;
    }
    rocksdb_free(value);
    return 0;
}

/* Write `repos` as the entry for the key, or delete the entry when there are none. */
static int presence_store(struct presence *p, const char *registry, const char *digest,
                          const char *key, size_t keylen, const char *const *repos, size_t count)
{
    char *rocks_err = NULL;
    char *value = NULL;
    int rc = 0;

    if (count == 0) {
        rocksdb_delete(p->db, p->writeoptions, key, keylen, &rocks_err);
    } else {
        size_t len = 0;
        for (size_t i = 0; i < count; i++)
            len += strlen(repos[i]) + 1;
        value = xmalloc(len);
        size_t at = 0;
        for (size_t i = 0; i < count; i++) {
            size_t n = strlen(repos[i]);
            memcpy(value + at, repos[i], n);
            at += n;
            value[at++] = '\n';
        }
        /* The last separator is dropped: no trailing newline. */
        rocksdb_put(p->db, p->writeoptions, key, keylen, value, len - 1, &rocks_err);
    }
    if (rocks_err != NULL) {
        log_debug("presence cache write failed registry=%s digest=%s error=%s", registry, digest,
                  rocks_err);
        rocksdb_free(rocks_err);
        rc = -EIO;
    }
    free(value);
    return rc;
}

/*
 * Rewrite the entry for (registry, digest) with `repo` first (`add`) or left
 * out: the other repositories keep their order, past PRESENCE_MAX_REPOS the
 * least recent go. A write that changes nothing is not made; a corrupt
 * entry is replaced (or deleted when nothing is left).
 */
static int presence_update(struct presence *p, const char *registry, const char *digest,
                           const char *repo, bool add)
{
    struct presence_list list = {0};
    const char *repos[PRESENCE_MAX_REPOS];
    size_t count = 0;
    size_t keylen = 0;
    char *key = NULL;
    bool corrupt = false;
    bool held = false;
    int rc;

    if (p == NULL || !presence_name_valid(registry) || !presence_name_valid(digest) ||
        !presence_name_valid(repo)) {
        rc = FERRY_EINVAL;
        goto out;
    }
    key = presence_key(registry, digest, &keylen);
    rc = presence_load(p, registry, digest, key, keylen, &list, &corrupt);
    if (rc < 0)
        goto out;
    /* Already the most recent: the common case of re-adding needs no write. */
    if (add && list.count > 0 && strcmp(list.repos[0], repo) == 0)
        goto out;

    if (add)
        repos[count++] = repo;
    for (size_t i = 0; i < list.count; i++) {
        if (strcmp(list.repos[i], repo) == 0)
            held = true;
        else if (count < PRESENCE_MAX_REPOS)
            repos[count++] = list.repos[i];
    }
    if (add || held || corrupt)
        rc = presence_store(p, registry, digest, key, keylen, repos, count);
out:
    presence_list_release(&list);
    free(key);
    return rc;
}

int presence_add(struct presence *p, const char *registry, const char *digest, const char *repo)
{
    return presence_update(p, registry, digest, repo, true);
}

char *presence_lookup(struct presence *p, const char *registry, const char *digest,
                      const char *repo, bool *holds)
{
    struct presence_list list = {0};
    size_t keylen = 0;
    char *key = NULL;
    char *found = NULL;
    bool corrupt = false;

    if (holds != NULL)
        *holds = false;
    if (p == NULL || !presence_name_valid(registry) || !presence_name_valid(digest))
        goto out;
    key = presence_key(registry, digest, &keylen);
    if (presence_load(p, registry, digest, key, keylen, &list, &corrupt) < 0)
        goto out;
    for (size_t i = 0; i < list.count; i++) {
        if (repo != NULL && strcmp(list.repos[i], repo) == 0) {
            if (holds != NULL)
                *holds = true;
        } else if (found == NULL) {
            found = xstrdup(list.repos[i]);
        }
    }
out:
    presence_list_release(&list);
    free(key);
    return found;
}

char *presence_find(struct presence *p, const char *registry, const char *digest,
                    const char *not_repo)
{
    return presence_lookup(p, registry, digest, not_repo, NULL);
}

int presence_forget(struct presence *p, const char *registry, const char *digest, const char *repo)
{
    return presence_update(p, registry, digest, repo, false);
}

char *presence_default_dir(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg != NULL && xdg[0] == '/')
        return xasprintf("%s/ferry/presence", xdg);
    const char *home = getenv("HOME");
    if (home != NULL && home[0] != '\0')
        return xasprintf("%s/.cache/ferry/presence", home);
    return NULL;
}
