/*
 * ferry-chaos-proxy: see proxy.h for what it does and rule.h for the rules.
 * This file holds main (the command line, listening, the ready file) and the
 * lifecycle of client connections (accept, close); proxy_int.h names the
 * files that hold the rest.
 *
 *   ferry-chaos-proxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT
 *                     [--control 127.0.0.1:PORT] [--rule RULE]... [--rules-file PATH]
 *                     [--seed N] [--max-connections N] [--ready-file PATH] [-v|-q]
 *                     [--repo-gate 404|403 [--repo-gate-allow REPOSITORY]...]
 *
 * Data path: each accepted client connection gets its own upstream
 * connection (opened at its first forwarded request, opened again if the
 * upstream closed it while idle). Bytes for either side go through an output
 * queue (struct outq) that applies the delay and the bandwidth limit; when a
 * queue holds more than PROXY_HIGH_WATER the side feeding it is no longer
 * read, so memory stays bounded whatever the body sizes.
 */
#include "chaos/proxy.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chaos/proxy_int.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"

#define PROXY_LISTEN_BACKLOG 511
/* The most --max-connections accepts. */
#define PROXY_MAX_CONNECTIONS_LIMIT 100000
/* Exit statuses: a failure once running, and a bad command line. */
#define PROXY_EXIT_FAILURE 1
#define PROXY_EXIT_USAGE   2

/* ------------------------------------------------------------- lifecycle */

void proxy_conn_unref(struct conn *conn)
{
    if (--conn->open_handles == 0)
        free(conn);
}

static void conn_handle_closed(uv_handle_t *h)
{
    proxy_conn_unref(h->data);
}

void proxy_conn_close(struct conn *conn, bool reset)
{
    if (conn->closing)
        return;
    struct proxy *p = conn->proxy;
    proxy_link_close(conn);
    conn->closing = true;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        p->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    p->n_conns--;
    proxy_exchange_release(&conn->ex);
    free(conn->pending);
    conn->pending = NULL;
    proxy_outq_close(&conn->up);
    proxy_outq_close(&conn->down);
    /* A connection whose setup failed may not have its reset timer. */
    if (uv_handle_get_type((uv_handle_t *)&conn->reset_timer) == UV_TIMER)
        uv_close((uv_handle_t *)&conn->reset_timer, conn_handle_closed);
    if (reset && uv_tcp_close_reset(&conn->client, conn_handle_closed) == 0)
        return;
    uv_close((uv_handle_t *)&conn->client, conn_handle_closed);
}

/* Sets up an accepted connection's queues, reset timer and parsers; 0 or a libuv error. */
static int conn_start(struct conn *conn)
{
    struct proxy *p = conn->proxy;
    int rc = uv_tcp_nodelay(&conn->client, 1);
    if (rc < 0)
        log_debug("client nodelay failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(rc));
    rc = proxy_outq_init(&conn->up, conn, &p->stats.bytes_to_upstream);
    if (rc < 0)
        return rc;
    rc = proxy_outq_init(&conn->down, conn, &p->stats.bytes_to_client);
    if (rc < 0)
        return rc;
    conn->down.stream = (uv_stream_t *)&conn->client;
    rc = uv_timer_init(p->loop, &conn->reset_timer);
    if (rc < 0)
        return rc;
    conn->reset_timer.data = conn;
    conn->open_handles++;
    proxy_parsers_init(conn);
    return 0;
}

static void proxy_accept_cb(uv_stream_t *server, int status)
{
    struct proxy *p = server->data;
    if (status < 0) {
        log_warn("accept failed error=%s", uv_strerror(status));
        return;
    }
    struct conn *conn = xcalloc(1, sizeof(*conn));
    conn->proxy = p;
    conn->id = ++p->stats.connections;
    int rc = uv_tcp_init(p->loop, &conn->client);
    if (rc < 0) {
        log_warn("accept failed error=%s", uv_strerror(rc));
        free(conn);
        return;
    }
    conn->client.data = conn;
    conn->open_handles = 1;
    if (uv_accept(server, (uv_stream_t *)&conn->client) < 0 || p->stopping ||
        p->n_conns >= p->max_connections) {
        if (p->n_conns >= p->max_connections)
            p->stats.connections_refused++;
        uv_close((uv_handle_t *)&conn->client, conn_handle_closed);
        return;
    }
    conn->next = p->conns;
    if (p->conns)
        p->conns->prev = conn;
    p->conns = conn;
    p->n_conns++;
    rc = conn_start(conn);
    if (rc < 0) {
        log_warn("connection setup failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(rc));
        proxy_conn_close(conn, false);
        return;
    }
    proxy_conn_update_reading(conn);
}

/* Closes a handle of the proxy itself if it was opened and is not closing yet. */
static void proxy_close_handle(uv_handle_t *h)
{
    /* The proxy's handles live in the proxy (static in main): their close frees nothing. */
    if (uv_handle_get_type(h) != UV_UNKNOWN_HANDLE && !uv_is_closing(h))
        uv_close(h, NULL);
}

/* Closes the listeners, the signal handlers and every connection; the loop then ends. */
static void proxy_shutdown(struct proxy *p)
{
    p->stopping = true;
    proxy_close_handle((uv_handle_t *)&p->listener);
    proxy_close_handle((uv_handle_t *)&p->control);
    proxy_close_handle((uv_handle_t *)&p->sigterm);
    proxy_close_handle((uv_handle_t *)&p->sigint);
    /* Bounded by the number of connections: each close unlinks one. */
    while (p->conns)
        proxy_conn_close(p->conns, false);
}

static void proxy_stop(struct proxy *p)
{
    if (p->stopping)
        return;
    log_info("stopping connections=%zu", p->n_conns);
    proxy_shutdown(p);
}

static void proxy_signal_cb(uv_signal_t *s, int signum)
{
    (void)signum;
    proxy_stop(s->data);
}

/* ------------------------------------------------------------------- main */

struct proxy_args {
    const char *listen;
    const char *upstream;
    const char *control;
    const char *ready_file;
};

/* Parses HOST:PORT with HOST an IPv4 literal, [IPv6] or localhost. */
static int proxy_parse_addr(const char *text, struct sockaddr_storage *out)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof(host))
        return FERRY_EINVAL;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || colon[1] == '\0' || port > 65535)
        return FERRY_EINVAL;
    memset(out, 0, sizeof(*out));
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out) == 0 ? 0 : FERRY_EINVAL;
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0 ? 0 : FERRY_EINVAL;
}

/* The port a listener is bound to, in `port`; 0 or a libuv error. */
static int proxy_bound_port(uv_tcp_t *tcp, int *port)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return rc;
    if (ss.ss_family == AF_INET6)
        *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* Listens on `addr_text` with `cb`; 0, or an error already told on stderr. */
static int proxy_listen(struct proxy *p, uv_tcp_t *tcp, const char *addr_text, uv_connection_cb cb)
{
    struct sockaddr_storage addr;
    if (proxy_parse_addr(addr_text, &addr) < 0) {
        fprintf(stderr, "ferry-chaos-proxy: bad address '%s' (want HOST:PORT)\n", addr_text);
        return FERRY_EINVAL;
    }
    int rc = uv_tcp_init(p->loop, tcp);
    if (rc == 0) {
        tcp->data = p;
        rc = uv_tcp_bind(tcp, (const struct sockaddr *)&addr, 0);
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)tcp, PROXY_LISTEN_BACKLOG, cb);
    if (rc < 0)
        fprintf(stderr, "ferry-chaos-proxy: cannot listen on %s: %s\n", addr_text, uv_strerror(rc));
    return rc;
}

/* Stops the proxy on `signum`; 0, or an error already told on stderr. */
static int proxy_handle_signal(struct proxy *p, uv_signal_t *s, int signum)
{
    int rc = uv_signal_init(p->loop, s);
    if (rc == 0) {
        s->data = p;
        rc = uv_signal_start(s, proxy_signal_cb, signum);
    }
    if (rc < 0)
        fprintf(stderr, "ferry-chaos-proxy: cannot handle signal %d: %s\n", signum,
                uv_strerror(rc));
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry-chaos-proxy --listen HOST:PORT --upstream HOST:PORT [--control "
               "HOST:PORT]\n"
               "                         [--rule RULE]... [--rules-file PATH] [--seed N]\n"
               "                         [--max-connections N] [--ready-file PATH] [-v|-q]\n"
               "\n"
               "RULE: METHOD PATH ACTION...   METHOD: GET, PUT, ... or *   PATH: *, ~REGEX or a "
               "substring\n"
               "ACTION: status=N [retry_after=S] [code=CODE] | reset=before|mid | truncate | flip\n"
               "        | blackhole | delay_ms=N | bandwidth=N[K|M|G], with rate=F (0..1) and "
               "count=N;\n"
               "        ratelimit=LIMIT[/WINDOW_S] | etag (on every request they select)\n"
               "e.g. --rule 'GET /blobs/ flip rate=1' --rule '* * status=503 rate=0.2'\n"
               "--repo-gate 404|403: pushes to repositories not created are refused (ECR: 404\n"
               "NAME_UNKNOWN, Harbor: 403 DENIED); --repo-gate-allow R creates R at start\n"
               "Control: GET|DELETE /stats, GET|PUT|POST|DELETE /rules, GET /healthz,\n"
               "         GET /repositories, POST /repositories?name=R\n");
}

/* The whole file (at most PROXY_CONTROL_BODY_MAX bytes), owned by the caller; NULL if not. */
static char *proxy_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b, PROXY_CONTROL_BODY_MAX);
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = buf_append(&b, chunk, n);
    if (ferror(f))
        rc = -EIO;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

/*
 * --rule RULE (one rule even when it holds a newline) or, with `is_file`,
 * --rules-file PATH (a rules document): adds to the proxy's rules. 0, or an
 * error already told on stderr.
 */
static int proxy_args_rules(struct proxy *p, const char *arg, bool is_file)
{
    char err[PROXY_ERR_MAX];
    struct rule *parsed[RULE_MAX];
    size_t n = 0;
    int rc;
    char *text = is_file ? proxy_read_file(arg) : xstrdup(arg);
    if (!text) {
        fprintf(stderr, "ferry-chaos-proxy: cannot read rules file %s\n", arg);
        return FERRY_EINVAL;
    }
    if (is_file) {
        rc = proxy_parse_rules(text, parsed, RULE_MAX - p->n_rules, &n, err, sizeof(err));
    } else if (p->n_rules == RULE_MAX) {
        snprintf(err, sizeof(err), "more than %d rules", RULE_MAX);
        rc = FERRY_EINVAL;
    } else {
        rc = rule_parse(text, &parsed[0], err, sizeof(err));
        n = rc == 0 ? 1 : 0;
    }
    free(text);
    if (rc < 0) {
        fprintf(stderr, "ferry-chaos-proxy: %s\n", err);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        p->rules[p->n_rules++] = parsed[i];
    return 0;
}

/* --repo-gate 404|403 and --repo-gate-allow R; 0, or an error already told on stderr. */
static int proxy_args_gate(struct proxy *p, int opt, const char *arg)
{
    if (opt == 'g') {
        if (strcmp(arg, "404") != 0 && strcmp(arg, "403") != 0) {
            fprintf(stderr, "ferry-chaos-proxy: bad --repo-gate '%s' (want 404 or 403)\n", arg);
            return FERRY_EINVAL;
        }
        p->gate_status = atoi(arg);
        return 0;
    }
    int rc = vendor_repos_add(&p->repos, arg, false);
    if (rc < 0)
        fprintf(stderr, "ferry-chaos-proxy: bad --repo-gate-allow '%s' (%s)\n", arg,
                rc == FERRY_ETOOBIG ? "too many repositories" : "not a repository name");
    return rc < 0 ? rc : 0;
}

/* --seed N and --max-connections N; 0, or an error already told on stderr. */
static int proxy_args_number(struct proxy *p, int opt, const char *arg)
{
    char *end;
    errno = 0;
    if (opt == 's') {
        p->seed = strtoull(arg, &end, 10);
        if (errno || *end || !*arg) {
            fprintf(stderr, "ferry-chaos-proxy: bad --seed '%s'\n", arg);
            return FERRY_EINVAL;
        }
        return 0;
    }
    unsigned long v = strtoul(arg, &end, 10);
    if (*end || v == 0 || v > PROXY_MAX_CONNECTIONS_LIMIT) {
        fprintf(stderr, "ferry-chaos-proxy: bad --max-connections '%s'\n", arg);
        return FERRY_EINVAL;
    }
    p->max_connections = v;
    return 0;
}

/*
 * Reads the command line into the proxy and `args`. True when the proxy is
 * to run; false with the exit status in `status` (help, or a bad command
 * line, told on stderr).
 */
static bool proxy_args_parse(struct proxy *p, struct proxy_args *args, int argc, char **argv,
                             int *status)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"upstream", required_argument, NULL, 'u'},
        {"control", required_argument, NULL, 'c'},
        {"rule", required_argument, NULL, 'r'},
        {"rules-file", required_argument, NULL, 'f'},
        {"seed", required_argument, NULL, 's'},
        {"max-connections", required_argument, NULL, 'm'},
        {"ready-file", required_argument, NULL, 'R'},
        {"repo-gate", required_argument, NULL, 'g'},
        {"repo-gate-allow", required_argument, NULL, 'a'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool seeded = false;
    int c, rc = 0;
    *status = PROXY_EXIT_USAGE;
    while (rc == 0 && (c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            args->listen = optarg;
            break;
        case 'u':
            args->upstream = optarg;
            break;
        case 'c':
            args->control = optarg;
            break;
        case 'r':
        case 'f':
            rc = proxy_args_rules(p, optarg, c == 'f');
            break;
        case 's':
            rc = proxy_args_number(p, c, optarg);
            seeded = true;
            break;
        case 'm':
            rc = proxy_args_number(p, c, optarg);
            break;
        case 'R':
            args->ready_file = optarg;
            break;
        case 'g':
        case 'a':
            rc = proxy_args_gate(p, c, optarg);
            break;
        case 'v':
            log_threshold = FERRY_LOG_DEBUG;
            break;
        case 'q':
            log_threshold = FERRY_LOG_WARN;
            break;
        case 'h':
            usage(stdout);
            *status = 0;
            return false;
        default:
            usage(stderr);
            return false;
        }
    }
    if (rc < 0)
        return false;
    if (optind != argc || !args->listen || !args->upstream) {
        usage(stderr);
        return false;
    }
    if (proxy_parse_addr(args->upstream, &p->upstream) < 0) {
        fprintf(stderr, "ferry-chaos-proxy: bad --upstream '%s' (want HOST:PORT)\n",
                args->upstream);
        return false;
    }
    snprintf(p->upstream_text, sizeof(p->upstream_text), "%s", args->upstream);
    if (!seeded)
        p->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    p->rng = p->seed;
    return true;
}

/* Writes "LISTEN_PORT CONTROL_PORT" to `path` at once (through a temporary file). */
static int proxy_write_ready_file(const char *path, int lport, int cport)
{
    int rc = 0;
    char *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d %d\n", lport, cport) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        rc = FERRY_EINVAL;
    free(tmp);
    if (rc < 0)
        fprintf(stderr, "ferry-chaos-proxy: cannot write %s\n", path);
    return rc;
}

/* Logs the ports, the seed and the rules, and writes the ready file; 0 or an error told on stderr.
 */
static int proxy_announce(struct proxy *p, const struct proxy_args *args)
{
    int lport = 0, cport = 0;
    int rc = proxy_bound_port(&p->listener, &lport);
    if (rc == 0 && args->control)
        rc = proxy_bound_port(&p->control, &cport);
    if (rc < 0) {
        fprintf(stderr, "ferry-chaos-proxy: cannot read the bound port: %s\n", uv_strerror(rc));
        return rc;
    }
    log_info("listening listen_port=%d upstream=%s control_port=%d seed=%" PRIu64
             " rules=%zu repo_gate=%d repositories=%zu",
             lport, p->upstream_text, cport, p->seed, p->n_rules, p->gate_status, p->repos.n);
    for (size_t i = 0; i < p->n_rules; i++)
        log_info("rule number=%zu rule='%s'", i + 1, p->rules[i]->text);
    if (args->ready_file)
        return proxy_write_ready_file(args->ready_file, lport, cport);
    return 0;
}

/* Listens, handles the signals and announces itself; 0 or an error told on stderr. */
static int proxy_start(struct proxy *p, const struct proxy_args *args)
{
    int rc = proxy_listen(p, &p->listener, args->listen, proxy_accept_cb);
    if (rc == 0 && args->control)
        rc = proxy_listen(p, &p->control, args->control, proxy_control_accept_cb);
    if (rc == 0)
        rc = proxy_handle_signal(p, &p->sigterm, SIGTERM);
    if (rc == 0)
        rc = proxy_handle_signal(p, &p->sigint, SIGINT);
    if (rc < 0)
        return rc;
    rc = proxy_announce(p, args);
    if (rc < 0)
        proxy_stop(p);
    return rc;
}

/* Runs the proxy until a signal stops it; the exit status. */
static int proxy_run(struct proxy *p, const struct proxy_args *args)
{
    uv_loop_t loop;
    int status = 0;
    http_parser_set_max_header_size(PROXY_HEAD_MAX);
    signal(SIGPIPE, SIG_IGN);
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        fprintf(stderr, "ferry-chaos-proxy: cannot start the loop: %s\n", uv_strerror(rc));
        return PROXY_EXIT_FAILURE;
    }
    loop.data = p;
    p->loop = &loop;
    if (proxy_start(p, args) < 0) {
        status = PROXY_EXIT_FAILURE;
        proxy_shutdown(p); /* closes what the start opened */
    }
    /* Until a signal stops the proxy, or until the closes after a failed start are done;
     * only uv_stop() (never called) makes it return with handles active. */
    if (uv_run(&loop, UV_RUN_DEFAULT) != 0)
        log_warn("loop ended with handles active");
    if (uv_loop_close(&loop) != 0 && status == 0)
        status = PROXY_EXIT_FAILURE;
    return status;
}

int main(int argc, char **argv)
{
    static struct proxy proxy;
    struct proxy *p = &proxy;
    struct proxy_args args = {0};
    int status;

    xalloc_init();
    log_threshold = FERRY_LOG_INFO;
    p->max_connections = PROXY_MAX_CONNECTIONS;
    if (proxy_args_parse(p, &args, argc, argv, &status))
        status = proxy_run(p, &args);
    proxy_clear_rules(p);
    vendor_repos_release(&p->repos);
    return status;
}
