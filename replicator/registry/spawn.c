#include "registry/spawn.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/secret.h"
#include "common/xalloc.h"

/* Bytes read past a stream's cap land here and are dropped. */
#define SPAWN_DISCARD_SIZE 4096
/* The first allocation of a capture buffer; it doubles up to the cap. */
#define SPAWN_CAPTURE_FIRST 4096

/* One captured stream: what the program printed, up to `max` bytes. */
struct spawn_capture {
    uv_pipe_t pipe;
    char *data; /* NULL until the first read; then NUL-terminated */
    size_t len;
    size_t alloc;
    size_t max;
    bool truncated;
    char discard[SPAWN_DISCARD_SIZE];
};

struct spawn {
    uv_process_t process;
    struct spawn_capture out;
    struct spawn_capture err;
    uv_poll_t input_poll; /* writability of input_fd, our end of the child's stdin */
    int input_fd;         /* -1 when there is no input or it was closed */
    char *input;          /* a copy of the caller's input; wiped when done */
    size_t input_len;
    size_t input_sent;
    uv_timer_t timer; /* the time limit; initialised first and closed last */
    uint64_t timeout_ms;
    unsigned open; /* handles initialised whose close callback has not run */
    bool exited;   /* its exit was reaped */
    int rc;        /* why it could not be started, or 0 */
    struct spawn_result res;
    spawn_cb cb;
    void *arg;
    struct spawn *next, **pprev; /* on spawn_running while its process may run */
};

/* Every spawn whose process may still run, for spawn_abort_all(). Loop threads only. */
static struct spawn *spawn_running;

static void spawn_settle(struct spawn *s);

static void spawn_handle_closed(uv_handle_t *handle)
{
    struct spawn *s = handle->data;
    s->open--;
    spawn_settle(s);
}

static void spawn_close(uv_handle_t *handle)
{
    if (!uv_is_closing(handle))
        uv_close(handle, spawn_handle_closed);
}

static void spawn_capture_wipe(struct spawn_capture *c)
{
    if (c->data != NULL)
        secret_wipe(c->data, c->alloc);
    free(c->data);
    c->data = NULL;
}

/*
 * Everything is closed: tell the caller, then wipe what the program printed
 * (a credential helper's stdout is a secret) and the input we copied.
 */
static void spawn_deliver(struct spawn *s)
{
    if (s->pprev != NULL) {
        *s->pprev = s->next;
        if (s->next != NULL)
            s->next->pprev = s->pprev;
        s->pprev = NULL;
    }
    s->res.out = s->out.data != NULL ? s->out.data : "";
    s->res.out_len = s->out.len;
    s->res.out_truncated = s->out.truncated;
    s->res.err = s->err.data != NULL ? s->err.data : "";
    s->res.err_len = s->err.len;
    s->cb(s->rc, &s->res, s->arg);
    spawn_capture_wipe(&s->out);
    spawn_capture_wipe(&s->err);
    if (s->input != NULL)
        secret_wipe(s->input, s->input_len);
    free(s->input);
    free(s);
}

/*
 * Close the timer once it is the last handle open, and deliver once every
 * handle has closed: the callback then comes after the exit and after both
 * pipes closed, and no handle outlives `s`.
 */
static void spawn_settle(struct spawn *s)
{
    if (s->open == 0)
        spawn_deliver(s);
    else if (s->open == 1)
        spawn_close((uv_handle_t *)&s->timer);
}

/* Stop feeding stdin: the child then reads end of file. */
static void spawn_input_poll_closed(uv_handle_t *handle)
{
    struct spawn *s = handle->data;
    /* Only now: libuv must not watch an fd that was closed under it. */
    close(s->input_fd);
    s->input_fd = -1;
    spawn_handle_closed(handle);
}

static void spawn_input_close(struct spawn *s)
{
    if (s->input_fd >= 0 && !uv_is_closing((uv_handle_t *)&s->input_poll))
        uv_close((uv_handle_t *)&s->input_poll, spawn_input_poll_closed);
}

/*
 * Write what the child can take. send() with MSG_NOSIGNAL, not write(): a
 * child that exits without reading its stdin makes the write fail with
 * EPIPE, and must not raise SIGPIPE in Ferry, which does not ignore it.
 */
static void spawn_input_writable(uv_poll_t *poll, int status, int events)
{
    struct spawn *s = poll->data;
    (void)events;
    if (status < 0) {
        spawn_input_close(s);
        return;
    }
    while (s->input_sent < s->input_len) {
        ssize_t n = send(s->input_fd, s->input + s->input_sent, s->input_len - s->input_sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            /* EPIPE or ECONNRESET: the child does not want the rest. */
            spawn_input_close(s);
            return;
        }
        s->input_sent += (size_t)n;
    }
    spawn_input_close(s);
}

static struct spawn_capture *spawn_capture_of(struct spawn *s, uv_handle_t *handle)
{
    return handle == (uv_handle_t *)&s->out.pipe ? &s->out : &s->err;
}

/*
 * Hand libuv room in the capture buffer itself, so that the bytes are never
 * copied (and no copy is left behind unwiped); past the cap, the discard area.
 */
static void spawn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct spawn_capture *c = spawn_capture_of(handle->data, handle);
    (void)suggested;
    if (c->len >= c->max) {
        *buf = uv_buf_init(c->discard, sizeof(c->discard));
        return;
    }
    if (c->data == NULL || c->len + 1 >= c->alloc) {
        /* Grown by hand, not realloc(): the old block is wiped before it is freed. */
        size_t grown = c->alloc != 0 ? c->alloc * 2 : SPAWN_CAPTURE_FIRST;
        if (grown > c->max + 1)
            grown = c->max + 1;
        char *data = xmalloc(grown);
        if (c->data != NULL) {
            memcpy(data, c->data, c->len);
            secret_wipe(c->data, c->alloc);
            free(c->data);
        }
        data[c->len] = '\0';
        c->data = data;
        c->alloc = grown;
    }
    /* alloc never passes max + 1, so the room never passes the cap. */
    *buf = uv_buf_init(c->data + c->len, (unsigned)(c->alloc - 1 - c->len));
}

static void spawn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct spawn *s = stream->data;
    struct spawn_capture *c = spawn_capture_of(s, (uv_handle_t *)stream);
    if (nread > 0) {
        if (buf->base == c->discard) {
            c->truncated = true;
            secret_wipe(c->discard, (size_t)nread);
        } else {
            c->len += (size_t)nread;
            c->data[c->len] = '\0';
        }
    } else if (nread < 0) {
        /* UV_EOF, or a read error: either way nothing more comes. */
        spawn_close((uv_handle_t *)stream);
    }
}

static void spawn_exited(uv_process_t *process, int64_t exit_status, int term_signal)
{
    struct spawn *s = process->data;
    s->exited = true;
    s->res.exit_status = term_signal != 0 ? -1 : exit_status;
    s->res.term_signal = term_signal;
    /* Whatever it did not read, it never will. */
    spawn_input_close(s);
    spawn_close((uv_handle_t *)process);
}

/*
 * The time limit passed: SIGKILL to the child's process group (it leads
 * its own: UV_PROCESS_DETACHED), so that what it started dies with it, and
 * stop waiting for the pipes, which a process that left the group could
 * hold open forever. The exit is still awaited: SIGKILL cannot be ignored.
 */
/* Kill the child's group (at the time limit, or on an abort) and stop listening to it. */
static void spawn_kill(struct spawn *s)
{
    bool pipes_open =
        !uv_is_closing((uv_handle_t *)&s->out.pipe) || !uv_is_closing((uv_handle_t *)&s->err.pipe);
    /*
     * After the exit, the group only lives on in what holds the pipes open;
     * when nothing does, its number may already belong to someone else.
     */
    if (!s->exited || pipes_open) {
        if (uv_kill(-s->process.pid, SIGKILL) < 0 && !s->exited)
            (void)uv_kill(s->process.pid, SIGKILL);
    }
    spawn_input_close(s);
    spawn_close((uv_handle_t *)&s->out.pipe);
    spawn_close((uv_handle_t *)&s->err.pipe);
}

static void spawn_timed_out(uv_timer_t *timer)
{
    struct spawn *s = timer->data;
    s->res.timed_out = true;
    spawn_kill(s);
}

void spawn_abort_all(uv_loop_t *loop)
{
    for (struct spawn *s = spawn_running; s != NULL; s = s->next) {
        if (s->process.loop != loop || s->res.timed_out || s->res.canceled)
            continue;
        s->res.canceled = true;
        if (!uv_is_closing((uv_handle_t *)&s->timer))
            (void)uv_timer_stop(&s->timer);
        spawn_kill(s);
    }
}

/*
 * Nothing of Ferry's but the three pipes reaches a child: libcurl opens its
 * sockets (registry connections, its wakeup pair) without close-on-exec, and
 * a helper or hook must not hold them. Every descriptor above stderr is
 * marked close-on-exec before the fork (the child's stdio is dup2()ed, which
 * clears the flag on the copies it gets). close_range() does it in one call
 * on Linux 5.11 and later; otherwise /proc/self/fd is walked.
 */
static void spawn_cloexec_all(void)
{
#ifdef CLOSE_RANGE_CLOEXEC
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
#endif
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return;
    int self = dirfd(dir);
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir)) {
        char *end = NULL;
        long fd = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd < 3 || fd == self)
            continue;
        int flags = fcntl((int)fd, F_GETFD);
        if (flags >= 0 && (flags & FD_CLOEXEC) == 0)
            (void)fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
    }
    closedir(dir);
}

/* Could not start: close what was made; the callback fires from the close callbacks. */
static void spawn_fail(struct spawn *s, int rc)
{
    s->rc = rc;
    spawn_settle(s);
}

static void spawn_capture_init(struct spawn *s, struct spawn_capture *c, size_t max)
{
    c->max = max;
    c->pipe.data = s;
}

void spawn_run(uv_loop_t *loop, const struct spawn_options *opts, spawn_cb cb, void *arg)
{
    struct spawn *s = xcalloc(1, sizeof(*s));
    char *args[SPAWN_ARGS_MAX + 1];
    uv_stdio_container_t stdio[3];
    uv_process_options_t options;
    int input_fds[2] = {-1, -1};
    size_t argc = 0;
    int rc;

    s->cb = cb;
    s->arg = arg;
    s->input_fd = -1;
    s->res.exit_status = -1;
    s->timeout_ms = opts->timeout_ms;
    /* The timer first: every failure below ends by closing it, from the loop. */
    (void)uv_timer_init(loop, &s->timer); /* cannot fail on Unix */
    s->timer.data = s;
    s->open = 1;

    for (; opts->argv != NULL && opts->argv[argc] != NULL; argc++) {
        if (argc == SPAWN_ARGS_MAX) {
            spawn_fail(s, FERRY_EINVAL);
            return;
        }
        /* libuv takes char **, and only reads it. */
        args[argc] = (char *)opts->argv[argc];
    }
    if (argc == 0 || args[0][0] == '\0') {
        spawn_fail(s, FERRY_EINVAL);
        return;
    }
    args[argc] = NULL;

    size_t max = opts->output_max != 0 ? opts->output_max : SPAWN_OUTPUT_MAX;
    spawn_capture_init(s, &s->out, max);
    spawn_capture_init(s, &s->err, max);
    if ((rc = uv_pipe_init(loop, &s->out.pipe, 0)) < 0) {
        spawn_fail(s, rc);
        return;
    }
    s->open++;
    if ((rc = uv_pipe_init(loop, &s->err.pipe, 0)) < 0) {
        spawn_close((uv_handle_t *)&s->out.pipe);
        spawn_fail(s, rc);
        return;
    }
    s->open++;

    memset(stdio, 0, sizeof(stdio));
    stdio[0].flags = UV_IGNORE; /* /dev/null: end of file at once */
    if (opts->input != NULL && opts->input_len > 0) {
        /*
         * A socket pair rather than a pipe, so that our end can be written
         * with send(MSG_NOSIGNAL); the child's end is blocking, as a
         * program expects of its stdin.
         */
        rc = uv_socketpair(SOCK_STREAM, 0, input_fds, UV_NONBLOCK_PIPE, 0);
        if (rc == 0)
            rc = uv_poll_init(loop, &s->input_poll, input_fds[0]);
        if (rc < 0) {
            if (input_fds[0] >= 0) {
                close(input_fds[0]);
                close(input_fds[1]);
            }
            spawn_close((uv_handle_t *)&s->out.pipe);
            spawn_close((uv_handle_t *)&s->err.pipe);
            spawn_fail(s, rc);
            return;
        }
        s->input_poll.data = s;
        s->input_fd = input_fds[0];
        s->open++;
        s->input = xmalloc(opts->input_len);
        memcpy(s->input, opts->input, opts->input_len);
        s->input_len = opts->input_len;
        stdio[0].flags = UV_INHERIT_FD;
        stdio[0].data.fd = input_fds[1];
    }
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&s->out.pipe;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&s->err.pipe;

    memset(&options, 0, sizeof(options));
    options.exit_cb = spawn_exited;
    options.file = args[0];
    options.args = args;
    options.env = NULL; /* Ferry's own environment, PATH included */
    options.stdio = stdio;
    options.stdio_count = 3;
    /* Its own process group (setsid), which the time limit kills whole. */
    options.flags = UV_PROCESS_DETACHED;
    s->process.data = s;
    spawn_cloexec_all();
    rc = uv_spawn(loop, &s->process, &options);
    /* The handle is initialised even when uv_spawn fails: it must be closed. */
    s->open++;
    if (input_fds[1] >= 0)
        close(input_fds[1]);
    if (rc < 0) {
        spawn_close((uv_handle_t *)&s->process);
        spawn_input_close(s);
        spawn_close((uv_handle_t *)&s->out.pipe);
        spawn_close((uv_handle_t *)&s->err.pipe);
        spawn_fail(s, rc);
        return;
    }

    /*
     * From here on nothing fails for good: a stream that cannot be read is
     * closed (its output is lost, the exit still counts), stdin that cannot
     * be watched is closed (the child reads end of file).
     */
    if (uv_read_start((uv_stream_t *)&s->out.pipe, spawn_alloc, spawn_read) < 0)
        spawn_close((uv_handle_t *)&s->out.pipe);
    if (uv_read_start((uv_stream_t *)&s->err.pipe, spawn_alloc, spawn_read) < 0)
        spawn_close((uv_handle_t *)&s->err.pipe);
    if (s->input_fd >= 0 && uv_poll_start(&s->input_poll, UV_WRITABLE, spawn_input_writable) < 0)
        spawn_input_close(s);
    if (s->timeout_ms > 0)
        (void)uv_timer_start(&s->timer, spawn_timed_out, s->timeout_ms, 0); /* cannot fail */
    s->next = spawn_running;
    if (s->next != NULL)
        s->next->pprev = &s->next;
    s->pprev = &spawn_running;
    spawn_running = s;
}

/* A duration for a message: "30 s", "250 ms", "1.5 s". */
static void spawn_duration(char *out, size_t len, uint64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(out, len, "%" PRIu64 " s", ms / 1000);
    else if (ms < 1000)
        snprintf(out, len, "%" PRIu64 " ms", ms);
    else
        snprintf(out, len, "%.1f s", (double)ms / 1000.0);
}

/*
 * The first line of `err` that holds more than blanks, trimmed, control
 * characters shown as '?', cut at SPAWN_MESSAGE_MAX bytes (not inside a
 * UTF-8 sequence) with "..."; "" when there is none. Caller frees.
 */
static bool spawn_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *spawn_first_line(const char *err, size_t len)
{
    size_t start = 0;
    while (start < len && spawn_blank(err[start]))
        start++;
    size_t end = start;
    while (end < len && err[end] != '\n')
        end++;
    while (end > start && spawn_blank(err[end - 1]))
        end--;
    size_t n = end - start;
    bool cut = n > SPAWN_MESSAGE_MAX;
    if (cut) {
        n = SPAWN_MESSAGE_MAX;
        /* Back off to the start of a UTF-8 sequence. */
        while (n > 0 && ((unsigned char)err[start + n] & 0xc0) == 0x80)
            n--;
    }
    char *line = xmalloc(n + 4);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)err[start + i];
        line[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    memcpy(line + n, cut ? "..." : "", cut ? 4 : 1);
    return line;
}

char *spawn_error_text(int rc, const struct spawn_result *res, uint64_t timeout_ms)
{
    char duration[32];
    if (rc == -ENOENT)
        return xstrdup("cannot run it: not found in PATH");
    if (rc < 0)
        return xasprintf("cannot run it: %s", ferry_strerror(rc));
    if (res->canceled)
        return xstrdup("canceled: Ferry is shutting down");
    if (res->timed_out) {
        spawn_duration(duration, sizeof(duration), timeout_ms);
        return xasprintf("timed out after %s", duration);
    }
    if (res->term_signal != 0)
        return xasprintf("killed by signal %d", res->term_signal);
    char *line = spawn_first_line(res->err, res->err_len);
    char *text = xasprintf("exited with status %" PRId64 "%s%s", res->exit_status,
                           line[0] != '\0' ? ": " : "", line);
    free(line);
    return text;
}
