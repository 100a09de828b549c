/*
 * repo_hook: a destination registry's `create_repository` hook. Some
 * registries refuse a push into a repository that does not exist (ECR
 * answers 404 NAME_UNKNOWN, Harbor a missing project 404 or 403 DENIED);
 * their config names a command that creates one (`aws ecr
 * create-repository --repository-name {repo}`). The engine runs it when a
 * push is refused, then runs the job again once.
 *
 * The command is an argv (no shell) with `{repo}` and `{registry}` (the
 * registry's host) replaced in every argument, run off the loop
 * (registry/spawn.h) with the registry's command_timeout. One run per
 * (registry, repository) at a time: a refusal while it runs waits for that
 * run. A repository a run created is remembered, and not created again.
 * Nothing the command prints is logged; the first line of its stderr goes
 * into the error when it fails (never its stdout).
 */
#ifndef FERRY_REPO_HOOK_H
#define FERRY_REPO_HOOK_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"

/* Repositories remembered as created; past this the memory starts over. */
#define REPO_HOOK_CREATED_MAX 100000
/*
 * A repository created this recently is taken as there when a push that
 * started before its creation is refused; later, a refusal means it was
 * deleted since, and the hook runs again.
 */
#define REPO_HOOK_FRESH_MS ((uint64_t)60 * 1000)

struct repo_hook;

/**
 * A run for the repository ended: rc 0 when the command exited 0, else a
 * negative code and `error`, one line: "create_repository for REPO at
 * REGISTRY failed: exited with status 1: <stderr's first line>" (REGISTRY
 * as the config names it). `error` is valid during the call only.
 */
typedef void (*repo_hook_cb)(int rc, const char *error, void *arg);

/** A hook runner on `loop` (no handle of its own; free it with repo_hook_free()). */
struct repo_hook *repo_hook_new(uv_loop_t *loop);

/** Other bounds than REPO_HOOK_CREATED_MAX and REPO_HOOK_FRESH_MS, for tests. */
void repo_hook_set_limits(struct repo_hook *h, size_t created_max, uint64_t fresh_ms);

/** True when `reg` has a create_repository command. */
bool repo_hook_configured(const struct config_registry *reg);

/* What repo_hook_ensure() did. */
enum repo_hook_state {
    REPO_HOOK_RUNNING = 0, /* a run was started or is under way: `cb` fires once it ends */
    REPO_HOOK_CREATED,     /* a run created it before: `cb` never fires */
};

/**
 * A push of `repo` to `reg` was refused: have the repository created.
 * Returns REPO_HOOK_CREATED when a run of this hook created it already, or
 * REPO_HOOK_RUNNING when `cb` will fire, exactly once, from the loop (never
 * inside this call), as the run started now or already under way for the
 * same (registry, repository) ends. A failed run is forgotten: the next
 * refusal runs the command again. `reg` must have a command
 * (repo_hook_configured()) and outlive the run; `repo` is copied.
 */
enum repo_hook_state repo_hook_ensure(struct repo_hook *h, const struct config_registry *reg,
                                      const char *repo, repo_hook_cb cb, void *arg);

/**
 * The command's argv for `repo` at `reg`: each argument with every `{repo}`
 * replaced by `repo` and every `{registry}` by reg->host; NULL-terminated.
 * Free it with repo_hook_argv_free().
 */
char **repo_hook_argv(const struct config_registry *reg, const char *repo);

void repo_hook_argv_free(char **argv);

/**
 * Free the runner. Runs still under way finish on their own (the process
 * is not killed before its time limit), and their callbacks never fire.
 */
void repo_hook_free(struct repo_hook *h);

#endif
