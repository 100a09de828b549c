/*
 * spawn (replicator/registry/spawn.c) on the real loop, with shell scripts
 * written at test time as the programs: output captured and capped, input
 * delivered, a child that does not read its input, the time limit killing a
 * child and what it started, a program not found (reported from the loop),
 * and the one-line error texts, which never hold stdout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/errors.h"
#include "common/xalloc.h"
#include "registry/spawn.h"

#define MARKER       "MARKER-SECRET-7f3a9c"
#define SERVER_INPUT "registry.example.com:5000"

struct fixture {
    char dir[64];
    uv_loop_t loop;
};

/* What one spawn_run() reported, copied out of the callback. */
struct outcome {
    int calls;
    bool returned;      /* spawn_run() had returned when the callback came */
    bool called_inside; /* the callback came from inside spawn_run() */
    int rc;
    struct spawn_result res;
    char *out;
    char *err;
    uint64_t start_ns;
    uint64_t elapsed_ms;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/ferry-spawn-XXXXXX");
    if (unit_tmpdir_make(f->dir) < 0 || uv_loop_init(&f->loop) < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uv_loop_close(&f->loop), 0);
    int rc = unit_tmpdir_remove(f->dir);
    free(f);
    return rc;
}

/* Write DIR/name, a /bin/sh script with `body`, mode 755; its path into `path`. */
static void write_script(const struct fixture *f, const char *name, const char *body, char *path,
                         size_t len)
{
    snprintf(path, len, "%s/%s", f->dir, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fprintf(file, "#!/bin/sh\n%s\n", body);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

static char *copy_bytes(const char *s, size_t len)
{
    char *c = malloc(len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    return c;
}

static void ran(int rc, const struct spawn_result *res, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->called_inside = !o->returned;
    o->rc = rc;
    o->res = *res;
    o->out = copy_bytes(res->out, res->out_len);
    o->err = copy_bytes(res->err, res->err_len);
    /* Spawn's own buffers are wiped and freed after this callback: point at the copies. */
    o->res.out = o->out;
    o->res.err = o->err;
    o->elapsed_ms = (uv_hrtime() - o->start_ns) / 1000000;
}

/*
 * Run `opts` on the loop to the end, `delay_ms` after starting it (the loop
 * busy elsewhere); the callback must come once, from the loop.
 */
static void run_after(struct fixture *f, const struct spawn_options *opts, struct outcome *o,
                      unsigned delay_ms)
{
    memset(o, 0, sizeof(*o));
    o->start_ns = uv_hrtime();
    spawn_run(&f->loop, opts, ran, o);
    o->returned = true;
    if (delay_ms > 0)
        usleep(delay_ms * 1000);
    assert_int_equal(o->calls, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(o->calls, 1);
    assert_false(o->called_inside);
}

static void run(struct fixture *f, const struct spawn_options *opts, struct outcome *o)
{
    run_after(f, opts, o, 0);
}

static void outcome_release(struct outcome *o)
{
    free(o->out);
    free(o->err);
}

/* The process `pid` has ended: no such process, or a zombie nobody reaped yet. */
static bool process_gone(pid_t pid)
{
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    char path[64], stat[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return true;
    size_t n = fread(stat, 1, sizeof(stat) - 1, file);
    fclose(file);
    stat[n] = '\0';
    const char *paren = strrchr(stat, ')');
    return paren != NULL && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

/* Wait up to 3 s for `pid` to end (the kernel delivers SIGKILL promptly, reaping takes a moment).
 */
static bool process_ends(pid_t pid)
{
    for (int i = 0; i < 300; i++) {
        if (process_gone(pid))
            return true;
        usleep(10000);
    }
    return false;
}

static pid_t read_pid(const char *path)
{
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    int pid = 0;
    assert_int_equal(fscanf(file, "%d", &pid), 1);
    fclose(file);
    assert_true(pid > 1);
    return (pid_t)pid;
}

static void test_output_captured(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"/bin/sh", "-c", "printf 'hello\\nworld'; printf 'oops' >&2", NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_false(o.res.timed_out);
    assert_int_equal(o.res.exit_status, 0);
    assert_int_equal(o.res.term_signal, 0);
    assert_string_equal(o.out, "hello\nworld");
    assert_int_equal(o.res.out_len, 11);
    assert_false(o.res.out_truncated);
    assert_string_equal(o.err, "oops");
    assert_int_equal(o.res.err_len, 4);
    outcome_release(&o);
}

/* The program is searched in PATH, and a status other than 0 comes back as it is. */
/*
 * Descriptors Ferry holds without close-on-exec (libcurl's sockets are
 * opened so) do not reach the child: it sees its three pipes only.
 */
static void test_no_descriptor_leaks(void **state)
{
    struct fixture *f = *state;
    int leaky = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(leaky > 2);
    char *script = xasprintf("if test -e /proc/self/fd/%d; then echo open; else echo closed; fi; "
                             "ls /proc/self/fd | wc -l",
                             leaky);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    /* closed, and the shell holds 0, 1, 2 and the directory ls reads, perhaps one more. */
    assert_non_null(strstr(o.out, "closed\n"));
    close(leaky);
    outcome_release(&o);
    free(script);
}

static void test_path_search_and_status(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"sh", "-c", "exit 7", NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.exit_status, 7);
    assert_string_equal(o.out, "");
    char *text = spawn_error_text(o.rc, &o.res, 10000);
    assert_string_equal(text, "exited with status 7");
    free(text);
    outcome_release(&o);
}

static void test_input_delivered(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"cat", NULL};
    const char *input = "registry.example.com:5000";
    struct spawn_options opts = {
        .argv = argv, .input = input, .input_len = strlen(input), .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.exit_status, 0);
    /* Exactly the bytes given: no newline added. */
    assert_string_equal(o.out, input);
    outcome_release(&o);
}

/* Input larger than a socket buffer goes through in pieces as the child reads. */
static void test_input_large(void **state)
{
    struct fixture *f = *state;
    const size_t len = 1024 * 1024;
    char *input = malloc(len);
    for (size_t i = 0; i < len; i++)
        input[i] = (char)('a' + i % 26);
    const char *argv[] = {"cat", NULL};
    struct spawn_options opts = {
        .argv = argv, .input = input, .input_len = len, .timeout_ms = 20000, .output_max = 2 * len};
    struct outcome o;
    run(f, &opts, &o);
    /* spawn_run() copied it: the caller's buffer may go at once. */
    free(input);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.exit_status, 0);
    assert_int_equal(o.res.out_len, len);
    assert_false(o.res.out_truncated);
    for (size_t i = 0; i < len; i++) {
        if (o.out[i] != (char)('a' + i % 26))
            fail_msg("byte %zu differs", i);
    }
    outcome_release(&o);
}

/* No input: stdin is at end of file at once, so `cat` ends. */
static void test_no_input(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"cat", NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_false(o.res.timed_out);
    assert_int_equal(o.res.exit_status, 0);
    assert_string_equal(o.out, "");
    outcome_release(&o);
}

/*
 * Past the cap the bytes are dropped and out_truncated set, while the
 * program is still read to its end (it is not blocked on a full pipe);
 * exactly the cap is not truncated.
 */
static void test_output_truncated(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"/bin/sh", "-c",
                          "head -c 100000 /dev/zero | tr '\\0' a; "
                          "head -c 5000 /dev/zero | tr '\\0' b >&2",
                          NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000, .output_max = 1000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_false(o.res.timed_out);
    assert_int_equal(o.res.exit_status, 0);
    assert_int_equal(o.res.out_len, 1000);
    assert_true(o.res.out_truncated);
    assert_int_equal(strspn(o.out, "a"), 1000);
    assert_int_equal(o.res.err_len, 1000);
    assert_int_equal(strspn(o.err, "b"), 1000);
    outcome_release(&o);

    const char *exact[] = {"/bin/sh", "-c", "head -c 1000 /dev/zero | tr '\\0' a", NULL};
    opts.argv = exact;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.out_len, 1000);
    assert_false(o.res.out_truncated);
    outcome_release(&o);
}

/* The default cap is SPAWN_OUTPUT_MAX. */
static void test_output_default_cap(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a", NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.out_len, SPAWN_OUTPUT_MAX);
    assert_true(o.res.out_truncated);
    outcome_release(&o);
}

static void abort_now(uv_timer_t *timer)
{
    spawn_abort_all(timer->loop);
    uv_close((uv_handle_t *)timer, NULL);
}

/* A shutdown does not wait out a helper's time limit: spawn_abort_all() kills it now. */
static void test_abort_all(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"sleep", "100", NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 60000};
    uv_timer_t timer;
    assert_int_equal(uv_timer_init(&f->loop, &timer), 0);
    assert_int_equal(uv_timer_start(&timer, abort_now, 200, 0), 0);
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_true(o.res.canceled);
    assert_false(o.res.timed_out);
    assert_int_equal(o.res.term_signal, SIGKILL);
    assert_true(o.elapsed_ms < 5000);
    char *text = spawn_error_text(o.rc, &o.res, 60000);
    assert_string_equal(text, "canceled: Ferry is shutting down");
    free(text);
    outcome_release(&o);
}

static void test_timeout_kills_child(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"sleep", "100", NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 300};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_true(o.res.timed_out);
    assert_int_equal(o.res.term_signal, SIGKILL);
    assert_int_equal(o.res.exit_status, -1);
    assert_true(o.elapsed_ms >= 290);
    assert_true(o.elapsed_ms < 3000);
    char *text = spawn_error_text(o.rc, &o.res, 300);
    assert_string_equal(text, "timed out after 300 ms");
    free(text);
    outcome_release(&o);
}

/* What the child started dies with it: the whole process group is killed. */
static void test_timeout_kills_grandchild(void **state)
{
    struct fixture *f = *state;
    char script[128], body[256], pidfile[128];
    snprintf(pidfile, sizeof(pidfile), "%s/grandchild.pid", f->dir);
    snprintf(body, sizeof(body), "sleep 100 &\necho $! > %s\nwait", pidfile);
    write_script(f, "parent.sh", body, script, sizeof(script));
    const char *argv[] = {script, NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 500};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_true(o.res.timed_out);
    assert_int_equal(o.res.term_signal, SIGKILL);
    assert_true(o.elapsed_ms < 3000);
    assert_true(process_ends(read_pid(pidfile)));
    outcome_release(&o);
}

/*
 * A child that exits but leaves a process holding its stdout: the callback
 * waits for the pipe, up to the time limit, then kills the group and comes.
 */
static void test_exit_leaving_pipe_holder(void **state)
{
    struct fixture *f = *state;
    char script[128], body[256], pidfile[128];
    snprintf(pidfile, sizeof(pidfile), "%s/holder.pid", f->dir);
    snprintf(body, sizeof(body), "sleep 100 &\necho $! > %s\necho done\nexit 0", pidfile);
    write_script(f, "leaver.sh", body, script, sizeof(script));
    const char *argv[] = {script, NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 500};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_true(o.res.timed_out);
    assert_int_equal(o.res.exit_status, 0);
    assert_int_equal(o.res.term_signal, 0);
    assert_string_equal(o.out, "done\n");
    assert_true(o.elapsed_ms >= 490);
    assert_true(o.elapsed_ms < 3000);
    assert_true(process_ends(read_pid(pidfile)));
    outcome_release(&o);
}

/* Not found: -ENOENT through the callback, from the loop, with nothing captured. */
static void test_not_found(void **state)
{
    struct fixture *f = *state;
    const char *in_path[] = {"ferry-no-such-program-h1", "get", NULL};
    const char *absolute[] = {"/nonexistent/ferry/program", NULL};
    const char *const *argvs[] = {in_path, absolute};
    for (size_t i = 0; i < 2; i++) {
        struct spawn_options opts = {
            .argv = argvs[i], .input = "x", .input_len = 1, .timeout_ms = 1000};
        struct outcome o;
        run(f, &opts, &o);
        assert_int_equal(o.rc, -ENOENT);
        assert_false(o.res.timed_out);
        assert_int_equal(o.res.out_len, 0);
        assert_string_equal(o.out, "");
        char *text = spawn_error_text(o.rc, &o.res, 1000);
        assert_string_equal(text, "cannot run it: not found in PATH");
        free(text);
        outcome_release(&o);
    }
}

static void test_not_executable(void **state)
{
    struct fixture *f = *state;
    char script[128];
    write_script(f, "noexec.sh", "exit 0", script, sizeof(script));
    assert_int_equal(chmod(script, 0644), 0);
    const char *argv[] = {script, NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 1000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, -EACCES);
    char *text = spawn_error_text(o.rc, &o.res, 1000);
    assert_string_equal(text, "cannot run it: Permission denied");
    free(text);
    outcome_release(&o);
}

/* An empty argv, or one longer than SPAWN_ARGS_MAX: FERRY_EINVAL, from the loop. */
static void test_bad_argv(void **state)
{
    struct fixture *f = *state;
    const char *empty[] = {NULL};
    const char *blank[] = {"", NULL};
    const char *many[SPAWN_ARGS_MAX + 2];
    for (size_t i = 0; i <= SPAWN_ARGS_MAX; i++)
        many[i] = "true";
    many[SPAWN_ARGS_MAX + 1] = NULL;
    const char *const *argvs[] = {empty, blank, many};
    for (size_t i = 0; i < 3; i++) {
        struct spawn_options opts = {.argv = argvs[i], .timeout_ms = 1000};
        struct outcome o;
        run(f, &opts, &o);
        assert_int_equal(o.rc, FERRY_EINVAL);
        outcome_release(&o);
    }
    /* SPAWN_ARGS_MAX itself is fine. */
    many[SPAWN_ARGS_MAX] = NULL;
    struct spawn_options opts = {.argv = many, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.exit_status, 0);
    outcome_release(&o);
}

/*
 * A failure's text: the status and the first line of stderr, control
 * characters replaced; never stdout, where a helper's secret is.
 */
static void test_error_text_never_stdout(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"/bin/sh", "-c",
                          "echo " MARKER
                          "; printf '\\n  boom:\\033[31m it failed \\r\\nline two\\n' "
                          ">&2; exit 3",
                          NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.exit_status, 3);
    assert_string_equal(o.out, MARKER "\n");
    char *text = spawn_error_text(o.rc, &o.res, 10000);
    assert_string_equal(text, "exited with status 3: boom:?[31m it failed");
    assert_null(strstr(text, MARKER));
    assert_message(text);
    free(text);
    outcome_release(&o);
}

/* A long stderr line is cut at SPAWN_MESSAGE_MAX bytes, not inside a UTF-8 character. */
static void test_error_text_cut(void **state)
{
    struct fixture *f = *state;
    /* "x" then 'é' (2 bytes) repeated: byte 300 falls inside one. */
    const char *argv[] = {"/bin/sh", "-c",
                          "printf x >&2; i=0; while [ $i -lt 400 ]; do printf '\\303\\251' >&2; "
                          "i=$((i+1)); done; exit 1",
                          NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.res.exit_status, 1);
    char *text = spawn_error_text(o.rc, &o.res, 10000);
    const char *prefix = "exited with status 1: ";
    assert_int_equal(strncmp(text, prefix, strlen(prefix)), 0);
    const char *line = text + strlen(prefix);
    assert_int_equal(strlen(line), 299 + 3);
    assert_string_equal(line + 299, "...");
    free(text);
    outcome_release(&o);
}

static void test_killed_by_signal(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"/bin/sh", "-c", "kill -TERM $$", NULL};
    struct spawn_options opts = {.argv = argv, .timeout_ms = 10000};
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_false(o.res.timed_out);
    assert_int_equal(o.res.term_signal, SIGTERM);
    assert_int_equal(o.res.exit_status, -1);
    char *text = spawn_error_text(o.rc, &o.res, 10000);
    assert_string_equal(text, "killed by signal 15");
    free(text);
    outcome_release(&o);
}

/*
 * A program that exits without reading its stdin: writing the rest fails
 * with EPIPE, which must not raise SIGPIPE (it would end this test process).
 * The loop is kept busy until the child is gone, so that the first write
 * meets a closed socket with nothing unread (EPIPE, not ECONNRESET).
 */
static void test_exit_without_reading_input(void **state)
{
    struct fixture *f = *state;
    const char *quick[] = {"/bin/sh", "-c", "exec 0<&-; exit 0", NULL};
    struct spawn_options first = {.argv = quick,
                                  .input = SERVER_INPUT,
                                  .input_len = strlen(SERVER_INPUT),
                                  .timeout_ms = 10000};
    struct outcome early;
    run_after(f, &first, &early, 300);
    assert_int_equal(early.rc, 0);
    assert_int_equal(early.res.exit_status, 0);
    outcome_release(&early);

    /* Input larger than the socket buffer, the rest refused after the exit. */
    const size_t len = 4 * 1024 * 1024;
    char *input = calloc(1, len);
    const char *argv[] = {"/bin/sh", "-c", "exit 0", NULL};
    struct spawn_options opts = {
        .argv = argv, .input = input, .input_len = len, .timeout_ms = 10000};
    for (int i = 0; i < 3; i++) {
        struct outcome o;
        run(f, &opts, &o);
        assert_int_equal(o.rc, 0);
        assert_false(o.res.timed_out);
        assert_int_equal(o.res.exit_status, 0);
        outcome_release(&o);
    }
    /* One that reads a little, then exits. */
    const char *partial[] = {"/bin/sh", "-c", "head -c 10 >/dev/null; exit 4", NULL};
    opts.argv = partial;
    struct outcome o;
    run(f, &opts, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.exit_status, 4);
    outcome_release(&o);
    free(input);
}

static void test_error_text_durations(void **state)
{
    (void)state;
    struct spawn_result res = {.timed_out = true, .exit_status = -1, .out = "", .err = ""};
    char *text = spawn_error_text(0, &res, 30000);
    assert_string_equal(text, "timed out after 30 s");
    free(text);
    text = spawn_error_text(0, &res, 1500);
    assert_string_equal(text, "timed out after 1.5 s");
    free(text);
    text = spawn_error_text(-EACCES, &res, 1500);
    assert_string_equal(text, "cannot run it: Permission denied");
    free(text);
}

int main(void)
{
    /*
     * As in ferry, which does not ignore SIGPIPE: a test runner that ignores
     * it would hide a write that raises it (the disposition is inherited).
     */
    signal(SIGPIPE, SIG_DFL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_output_captured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_descriptor_leaks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_search_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_default_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_kills_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_kills_grandchild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_leaving_pipe_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_executable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_argv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_text_never_stdout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_text_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_by_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_without_reading_input, setup, teardown),
        cmocka_unit_test(test_error_text_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
