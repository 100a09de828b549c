/*
 * cluster_lease: take a lease of a cluster's journal as some holder, for the
 * cluster tests (a node that holds a destination tag's lease, played by the
 * test): `cluster_lease CONFIG NAME HOLDER TTL_MS [SEQ]`. NAME may hold "\n"
 * for newlines; "tag:DEST\nREPO\nTAG" is that destination tag's hold
 * (journal_tag_hold()), for the job of entry SEQ (default 0). Prints "held"
 * or "held by OTHER"; exits 0 when HOLDER holds it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "daemon/cluster.h"
#include "journal/journal.h"

/* NAME with its "\n" escapes as newlines. */
static char *lease_name(const char *arg)
{
    char *name = xstrdup(arg);
    char *w = name;
    for (const char *r = arg; *r != '\0'; r++) {
        if (r[0] == '\\' && r[1] == 'n') {
            *w++ = '\n';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return name;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: cluster_lease CONFIG NAME HOLDER TTL_MS [SEQ]\n");
        return 2;
    }
    struct config *config = NULL;
    char *err = NULL;
    if (config_load(argv[1], &config, &err) < 0) {
        fprintf(stderr, "cluster_lease: %s\n", err != NULL ? err : "the config does not load");
        free(err);
        return 2;
    }
    struct journal *j = NULL;
    /* Read-only: the node whose config this is holds its own journal. */
    int rc = cluster_journal_open(config, true, &j, &err);
    if (rc < 0) {
        fprintf(stderr, "cluster_lease: %s\n", err != NULL ? err : ferry_strerror(rc));
        free(err);
        config_free(config);
        return 2;
    }
    char *name = lease_name(argv[2]);
    char *other = NULL;
    uint64_t ttl = strtoull(argv[4], NULL, 10);
    char *dest = strncmp(name, "tag:", 4) == 0 ? name + 4 : NULL;
    char *repo = dest != NULL ? strchr(dest, '\n') : NULL;
    char *tag = repo != NULL ? strchr(repo + 1, '\n') : NULL;
    if (tag != NULL) {
        uint64_t fence = 0;
        *repo++ = '\0';
        *tag++ = '\0';
        rc = journal_tag_hold(j, dest, repo, tag, argv[3], 1, ttl,
                              argc == 6 ? strtoull(argv[5], NULL, 10) : 0, &fence, &other);
    } else {
        rc = journal_lease_take(j, name, argv[3], ttl, &other);
    }
    if (rc == 1)
        printf("held\n");
    else if (rc == 0)
        printf("held by %s\n", other != NULL ? other : "?");
    else
        fprintf(stderr, "cluster_lease: %s\n", ferry_strerror(rc));
    free(other);
    free(name);
    journal_close(j);
    journal_process_exit();
    config_free(config);
    return rc == 1 ? 0 : 1;
}
