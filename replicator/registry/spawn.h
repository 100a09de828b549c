/*
 * spawn: run a program off the loop (uv_spawn with pipes), the way Ferry
 * runs credential helpers and registry hooks: an argv (no shell), bytes on
 * its stdin, its stdout and stderr captured up to a cap, and a time limit
 * after which it is killed (SIGKILL to the child's own process group, so a
 * helper's children die with it). Nothing it prints is logged here; the
 * caller decides what of it may appear in a message (a helper's stdout holds
 * secrets: it never does).
 */
#ifndef FERRY_SPAWN_H
#define FERRY_SPAWN_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The most argv entries spawn_run() takes, and the default output cap. */
#define SPAWN_ARGS_MAX   64
#define SPAWN_OUTPUT_MAX (64 * 1024)
/* What of stderr spawn_error_text() keeps for a message. */
#define SPAWN_MESSAGE_MAX 300

/* How the program ended, and what it printed. */
struct spawn_result {
    bool timed_out;      /* killed at the time limit */
    bool canceled;       /* killed by spawn_abort_all() */
    int64_t exit_status; /* when it exited; -1 when killed by a signal or not started */
    int term_signal;     /* the signal that ended it, or 0 */
    const char *out;     /* stdout, NUL-terminated (len out_len); wiped after the callback */
    size_t out_len;
    bool out_truncated; /* it printed more than the cap: the rest was dropped */
    const char *err;    /* stderr, NUL-terminated, capped the same way */
    size_t err_len;
};

/*
 * `rc` is 0 when the program ran (see `res` for how it ended), or a code
 * when it could not be started (-ENOENT: not found in PATH; -EACCES ...);
 * then `res` still points at a result with nothing captured.
 */
typedef void (*spawn_cb)(int rc, const struct spawn_result *res, void *arg);

struct spawn_options {
    const char *const *argv; /* NULL-terminated; argv[0] searched in PATH unless it holds '/' */
    const char *input;       /* written to stdin, then stdin is closed; NULL: closed at once */
    size_t input_len;
    uint64_t timeout_ms; /* 0: no limit (only for tests) */
    size_t output_max;   /* per stream; 0: SPAWN_OUTPUT_MAX */
};

/**
 * Start the program. The callback fires exactly once, from the loop (never
 * from inside this call), after the process has exited and both pipes are
 * closed. Returns nothing: a program that cannot be started fails through
 * the callback (an empty argv, or more than SPAWN_ARGS_MAX entries:
 * FERRY_EINVAL). The environment is Ferry's own, as Docker passes its own to
 * a helper. `opts` (argv and input included) is not used after this call
 * returns: the input is copied, and the copy wiped when done. A child that
 * exits without reading all its input is fine (no SIGPIPE: the input is
 * written with send(MSG_NOSIGNAL) on a socket pair); what it did not read is
 * dropped. At the time limit the process group is killed and the pipes are
 * closed without waiting for their end of file (something that left the
 * group may hold them); a child that exited but left a process holding its
 * pipes open is timed out the same way.
 */
void spawn_run(uv_loop_t *loop, const struct spawn_options *opts, spawn_cb cb, void *arg);

/**
 * Kill every program started on `loop` that still runs (SIGKILL to its
 * group), as at the time limit: their callbacks come with `canceled` set.
 * For a shutdown that cannot wait out helpers and hooks.
 */
void spawn_abort_all(uv_loop_t *loop);

/**
 * One line saying how `res` (of program `name`) failed, for an error
 * message: "timed out after 30 s", "exited with status 1: <first line of
 * stderr, at most SPAWN_MESSAGE_MAX bytes, control characters replaced>",
 * "killed by signal 9", or for rc < 0 "cannot run it: <strerror>"
 * ("not found in PATH" for -ENOENT). Never holds stdout. Caller frees.
 */
char *spawn_error_text(int rc, const struct spawn_result *res, uint64_t timeout_ms);

#endif
