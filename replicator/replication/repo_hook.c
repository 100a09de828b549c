/*
 * repo_hook: running a destination registry's create_repository command
 * once per (registry, repository) at a time, and remembering what it
 * created (see repo_hook.h).
 */
#include "replication/repo_hook.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "registry/spawn.h"

/* Someone waiting for a run to end. */
struct repo_hook_waiter {
    repo_hook_cb cb;
    void *arg;
};

/*
 * One (registry, repository): a run under way (`running`, with its
 * waiters), or one that created it. A run that failed is dropped.
 */
struct repo_hook_entry {
    char *key;              /* "registry name\nrepository" */
    struct repo_hook *hook; /* NULL once the runner was freed during the run */
    const struct config_registry *reg;
    char *repo;
    char **argv;
    bool running;
    uint64_t created_ms; /* uv_now() when its run created the repository */
    struct repo_hook_waiter *waiters;
    size_t n_waiters;
    UT_hash_handle hh;
};

struct repo_hook {
    uv_loop_t *loop;
    struct repo_hook_entry *table; /* by key */
    size_t n_created;
    size_t created_max; /* REPO_HOOK_CREATED_MAX, or a test's */
    uint64_t fresh_ms;  /* REPO_HOOK_FRESH_MS, or a test's */
};

struct repo_hook *repo_hook_new(uv_loop_t *loop)
{
    struct repo_hook *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->created_max = REPO_HOOK_CREATED_MAX;
    h->fresh_ms = REPO_HOOK_FRESH_MS;
    return h;
}

void repo_hook_set_limits(struct repo_hook *h, size_t created_max, uint64_t fresh_ms)
{
    h->created_max = created_max;
    h->fresh_ms = fresh_ms;
}

bool repo_hook_configured(const struct config_registry *reg)
{
    return reg != NULL && reg->create_repository != NULL && reg->n_create_repository > 0;
}

/* ---- the argv ---- */

/* `arg` with every `{repo}` and `{registry}` replaced. */
static char *hook_substitute(const char *arg, const char *repo, const char *registry)
{
    static const char repo_mark[] = "{repo}";
    static const char registry_mark[] = "{registry}";
    size_t len = 0;
    /* Two passes: the length, then the bytes. */
    for (int pass = 0; pass < 2; pass++) {
        char *out = pass == 1 ? xmalloc(len + 1) : NULL;
        size_t at = 0;
        for (const char *p = arg; *p != '\0';) {
            const char *with = NULL;
            size_t skip = 1;
            if (strncmp(p, repo_mark, sizeof(repo_mark) - 1) == 0) {
                with = repo;
                skip = sizeof(repo_mark) - 1;
            } else if (strncmp(p, registry_mark, sizeof(registry_mark) - 1) == 0) {
                with = registry;
                skip = sizeof(registry_mark) - 1;
            }
            size_t n = with != NULL ? strlen(with) : 1;
            if (out != NULL)
                memcpy(out + at, with != NULL ? with : p, n);
            at += n;
            p += skip;
        }
        if (out != NULL) {
            out[at] = '\0';
            return out;
        }
        len = at;
    }
    return NULL; /* not reached */
}

char **repo_hook_argv(const struct config_registry *reg, const char *repo)
{
    char **argv = xcalloc(reg->n_create_repository + 1, sizeof(*argv));
    const char *host = reg->host != NULL ? reg->host : "";
    for (size_t i = 0; i < reg->n_create_repository; i++)
        argv[i] = hook_substitute(reg->create_repository[i], repo, host);
    return argv;
}

void repo_hook_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (size_t i = 0; argv[i] != NULL; i++)
        free(argv[i]);
    free(argv);
}

/* ---- runs ---- */

static void entry_free(struct repo_hook_entry *x)
{
    free(x->key);
    free(x->repo);
    repo_hook_argv_free(x->argv);
    x->argv = NULL;
    free(x->waiters);
    free(x);
}

/* Forget what was created: the memory is a convenience, bounded. */
static void hook_forget_created(struct repo_hook *h)
{
    struct repo_hook_entry *x, *tmp;
    HASH_ITER(hh, h->table, x, tmp)
    {
        if (x->running)
            continue;
        HASH_DEL(h->table, x);
        entry_free(x);
    }
    h->n_created = 0;
}

static void hook_ran(int rc, const struct spawn_result *res, void *arg)
{
    struct repo_hook_entry *x = arg;
    struct repo_hook *h = x->hook;
    const struct config_registry *reg = x->reg;
    bool ok = rc == 0 && !res->timed_out && !res->canceled && res->term_signal == 0 &&
              res->exit_status == 0;
    char *error = NULL;

    if (h == NULL) {
        /* The runner is gone: nobody waits. */
        entry_free(x);
        return;
    }
    if (ok) {
        log_info("create_repository created the repository dest=%s repo=%s", reg->name, x->repo);
        /* Forgotten while `x` still runs, so that `x` itself stays. */
        if (h->n_created >= h->created_max)
            hook_forget_created(h);
        h->n_created++;
        x->created_ms = uv_now(h->loop);
    } else {
        char *why = spawn_error_text(rc, res, reg->command_timeout_ms);
        error = xasprintf("create_repository for %s at %s failed: %s", x->repo, reg->name, why);
        free(why);
        log_warn("create_repository failed dest=%s repo=%s error=\"%s\"", reg->name, x->repo,
                 error);
        /* A failed run is forgotten: the next refusal runs it again. */
        HASH_DEL(h->table, x);
    }
    x->running = false;
    repo_hook_argv_free(x->argv);
    x->argv = NULL;
    /* The waiters are taken first: a callback may ask for the same repository again. */
    struct repo_hook_waiter *waiters = x->waiters;
    size_t n = x->n_waiters;
    x->waiters = NULL;
    x->n_waiters = 0;
    int result = ok ? 0 : rc < 0 ? rc : FERRY_EINVAL;
    for (size_t i = 0; i < n; i++)
        waiters[i].cb(result, error, waiters[i].arg);
    free(waiters);
    free(error);
    if (!ok)
        entry_free(x);
}

static void entry_wait(struct repo_hook_entry *x, repo_hook_cb cb, void *arg)
{
    x->waiters = xrealloc(x->waiters, (x->n_waiters + 1) * sizeof(*x->waiters));
    x->waiters[x->n_waiters].cb = cb;
    x->waiters[x->n_waiters].arg = arg;
    x->n_waiters++;
}

enum repo_hook_state repo_hook_ensure(struct repo_hook *h, const struct config_registry *reg,
                                      const char *repo, repo_hook_cb cb, void *arg)
{
    char *key = xasprintf("%s\n%s", reg->name, repo);
    struct repo_hook_entry *x = NULL;
    HASH_FIND_STR(h->table, key, x);
    if (x != NULL && !x->running && uv_now(h->loop) - x->created_ms > h->fresh_ms) {
        /* Created a while ago and refused again: deleted since; created again. */
        HASH_DEL(h->table, x);
        entry_free(x);
        if (h->n_created > 0)
            h->n_created--;
        x = NULL;
    }
    if (x != NULL) {
        free(key);
        if (!x->running)
            return REPO_HOOK_CREATED;
        entry_wait(x, cb, arg);
        return REPO_HOOK_RUNNING;
    }
    x = xcalloc(1, sizeof(*x));
    x->key = key;
    x->hook = h;
    x->reg = reg;
    x->repo = xstrdup(repo);
    x->running = true;
    x->argv = repo_hook_argv(reg, repo);
    HASH_ADD_KEYPTR(hh, h->table, x->key, strlen(x->key), x);
    entry_wait(x, cb, arg);
    log_info("push refused, running create_repository dest=%s repo=%s program=%s", reg->name, repo,
             x->argv[0]);
    struct spawn_options opts = {
        .argv = (const char *const *)x->argv,
        .timeout_ms = reg->command_timeout_ms,
    };
    spawn_run(h->loop, &opts, hook_ran, x);
    return REPO_HOOK_RUNNING;
}

void repo_hook_free(struct repo_hook *h)
{
    if (h == NULL)
        return;
    struct repo_hook_entry *x, *tmp;
    HASH_ITER(hh, h->table, x, tmp)
    {
        HASH_DEL(h->table, x);
        if (x->running) {
            /* Its run ends later: the entry frees itself then. */
            x->hook = NULL;
            free(x->waiters);
            x->waiters = NULL;
            x->n_waiters = 0;
        } else {
            entry_free(x);
        }
    }
    free(h);
}
