/*
 * ingest_load: a load generator for Ferry's webhook endpoint,
 * POST /v1/events/{source} (tests/bench/ingest.sh runs it).
 *
 * N keep-alive HTTP/1.1 connections, all driven from one thread with
 * non-blocking sockets and epoll, each posting CNCF Distribution notification
 * envelopes of --events-per-request manifest pushes whose ids are unique to
 * the run. Closed loop (--rate 0): each connection sends its next request as
 * soon as the previous one is answered, which measures the most the server
 * takes. Open loop (--rate EVENTS_PER_S): request slot j is due at
 * start + j / (rate / events-per-request) and belongs to connection j mod N;
 * its latency runs from that due time, not from when it was sent, so an answer
 * that comes late and holds up the next request on its connection is counted
 * against the server (no coordinated omission). Slots still unsent when the
 * duration is over are reported as "unsent".
 *
 * Raw sockets rather than libcurl: the tool shares two cores with the daemon
 * and must cost as little as possible per request; libcurl would also send
 * "Expect: 100-continue" for bodies over 1 KiB and wait for the answer.
 *
 * With --acked-file, every acknowledged request (a 200) is recorded as one
 * line "CLIENT REQUEST", in the order the answers came: its events' ids are
 * RUN-CLIENT-REQUEST-0 .. RUN-CLIENT-REQUEST-(E-1), so a checker can look
 * for each acknowledged event in the journal by id (chaos/scenarios/journal.sh)
 * while the file stays small (one short line per request, not per event).
 *
 * Only loopback URLs are accepted, and a run is capped at 120 s.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/xalloc.h"

#define LOAD_MAX_CLIENTS            512
#define LOAD_MAX_DURATION_S         120.0
#define LOAD_MAX_EVENTS_PER_REQUEST 1000
#define LOAD_MAX_RATE               1000000.0
#define LOAD_MAX_TOKEN              4096
#define LOAD_RESPONSE_CAP           (64 * 1024)
#define LOAD_NS                     1000000000ULL
/* After the duration, how long answers to requests already sent are awaited. */
#define LOAD_DRAIN_NS (10 * LOAD_NS)
/* How long the connections may take to open before the run starts. */
#define LOAD_CONNECT_NS (5 * LOAD_NS)
/* Pause before reconnecting after a failed connect, so a dead server is not spun on. */
#define LOAD_RECONNECT_NS (100 * 1000 * 1000ULL)

#define EVENT_MEDIA_TYPE "application/vnd.oci.image.manifest.v1+json"
#define CONTENT_TYPE     "application/vnd.docker.distribution.events.v1+json"

/*
 * Latency histogram in microseconds: exact below 2048 us, then 1024 buckets
 * per power of two (0.1 % resolution), up to about 2^38 us.
 */
#define HIST_SUB_BITS 10
#define HIST_SUB      (1U << HIST_SUB_BITS)
#define HIST_LINEAR   (2U * HIST_SUB)
#define HIST_SHIFTS   28U
#define HIST_BUCKETS  (HIST_LINEAR + HIST_SHIFTS * HIST_SUB)

struct histogram {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max_us;
};

struct options {
    const char *url;
    const char *token;
    const char *run_id;
    const char *acked_file;
    unsigned clients;
    double duration_s;
    double rate;
    unsigned events_per_request;
    bool json;
};

struct target {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[80]; /* the Host header: "127.0.0.1:8780" */
    char *path;
};

enum client_state {
    CLIENT_DOWN = 0,   /* no connection; reconnect at retry_at_ns */
    CLIENT_CONNECTING, /* non-blocking connect in progress */
    CLIENT_IDLE,       /* connected, nothing in flight */
    CLIENT_SENDING,    /* request partly written */
    CLIENT_WAITING,    /* request written, answer not complete */
};

struct load;

struct client {
    struct load *load;
    unsigned index;
    int fd;
    enum client_state state;
    bool want_out; /* EPOLLOUT is registered */
    char *out;
    size_t out_len;
    size_t out_sent;
    size_t out_cap;
    char *in; /* LOAD_RESPONSE_CAP bytes */
    size_t in_len;
    uint64_t requests;    /* requests started on this connection (its next open-loop slot) */
    uint64_t start_ns;    /* latency origin of the request in flight */
    uint64_t retry_at_ns; /* CLIENT_DOWN: when to connect again */
};

struct counters {
    uint64_t sent;        /* requests started */
    uint64_t responses;   /* complete answers, any status */
    uint64_t ok;          /* 200 answers */
    uint64_t non_200;     /* other answers */
    uint64_t transport;   /* requests lost to a broken connection or a bad answer */
    uint64_t timeouts;    /* requests still unanswered when the drain ended */
    uint64_t connect;     /* failed connection attempts */
    uint64_t reconnects;  /* connections reopened after the server closed them */
    uint64_t events_sent; /* events in requests started */
    uint64_t events_ok;   /* events in 200 answers */
    uint64_t accepted;    /* sum of "accepted" in 200 answers */
    uint64_t duplicates;  /* sum of "duplicates" in 200 answers */
    uint64_t status[600];
};

struct load {
    struct options opt;
    struct target target;
    int epfd;
    bool pwait2; /* epoll_pwait2 works (nanosecond timeouts) */
    struct client *clients;
    unsigned in_flight;
    double requests_per_s; /* open loop; 0 in closed loop */
    uint64_t t0_ns;
    uint64_t end_ns;
    uint64_t last_answer_ns;
    bool stopping;
    uint64_t seed;
    uint64_t event_counter;
    char *body; /* scratch for one request body */
    size_t body_len;
    size_t body_cap;
    struct histogram hist;
    struct counters n;
    FILE *acked; /* --acked-file, or NULL */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * LOAD_NS + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("ingest_load: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ------------------------------------------------------------ histogram */

static size_t hist_index(uint64_t us)
{
    if (us < HIST_LINEAR)
        return (size_t)us;
    unsigned msb = 63U - (unsigned)__builtin_clzll(us);
    unsigned shift = msb - HIST_SUB_BITS;
    size_t index =
        HIST_LINEAR + (size_t)(shift - 1) * HIST_SUB + (size_t)((us >> shift) - HIST_SUB);
    return index < HIST_BUCKETS ? index : HIST_BUCKETS - 1;
}

/* The middle of bucket `index`, in microseconds. */
static uint64_t hist_value(size_t index)
{
    if (index < HIST_LINEAR)
        return index;
    unsigned shift = (unsigned)((index - HIST_LINEAR) / HIST_SUB) + 1;
    uint64_t mantissa = (index - HIST_LINEAR) % HIST_SUB + HIST_SUB;
    return (mantissa << shift) + (1ULL << (shift - 1));
}

static void hist_add(struct histogram *h, uint64_t us)
{
    h->counts[hist_index(us)]++;
    h->total++;
    if (us > h->max_us)
        h->max_us = us;
}

/* The latency at or below which `pct` percent of the answers came, in ms. */
static double hist_percentile_ms(const struct histogram *h, double pct)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)h->total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t us = hist_value(i);
            return (double)(us < h->max_us ? us : h->max_us) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* ------------------------------------------------------------ options */

static void usage(FILE *out)
{
    fputs("usage: ingest_load --url URL [flags]\n"
          "\n"
          "Posts Distribution notification envelopes to Ferry's webhook endpoint over\n"
          "keep-alive HTTP/1.1 connections and reports throughput and latency.\n"
          "\n"
          "  --url URL                  http://127.0.0.1:PORT/v1/events/SOURCE (loopback only)\n"
          "  --token TOKEN              send Authorization: Bearer TOKEN\n"
          "  --clients N                concurrent connections (default 8, at most 512)\n"
          "  --duration S               seconds of load (default 10, at most 120)\n"
          "  --rate EVENTS_PER_S        open loop at this rate, spread evenly over the\n"
          "                             connections; 0 (default): closed loop\n"
          "  --events-per-request N     events per envelope (default 10, at most 1000)\n"
          "  --run-id ID                prefix of the event ids (default: time and pid)\n"
          "  --acked-file PATH          append a line \"CLIENT REQUEST\" for each request\n"
          "                             answered 200: its events' ids are\n"
          "                             ID-CLIENT-REQUEST-0 .. ID-CLIENT-REQUEST-(N-1)\n"
          "  --json                     one line of JSON on stdout instead of text\n"
          "\n"
          "Latency runs from the send (closed loop) or from the scheduled send time\n"
          "(open loop) to the last byte of the answer. Exit status 0 when the run took\n"
          "place (whatever the answers), 1 when it could not start, 2 on a usage error.\n",
          out);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("ingest_load: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see --help)\n", stderr);
    exit(2);
}

static double parse_number(const char *flag, const char *text, double min, double max)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v) || v < min || v > max)
        usage_error("%s wants a number from %g to %g, got '%s'", flag, min, max, text);
    return v;
}

/*
 * Accept only http:// URLs whose host is on loopback: 127.0.0.0/8,
 * "localhost" or [::1]. The path defaults to "/".
 */
static void parse_url(const char *url, struct target *t)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0)
        usage_error("--url must start with http:// (loopback only), got '%s'", url);
    p += 7;
    const char *slash = strchr(p, '/');
    size_t authority_len = slash != NULL ? (size_t)(slash - p) : strlen(p);
    if (authority_len == 0 || authority_len >= sizeof(t->host))
        usage_error("--url has no usable host: '%s'", url);
    char authority[sizeof(t->host)];
    memcpy(authority, p, authority_len);
    authority[authority_len] = '\0';
    if (strchr(authority, '@') != NULL)
        usage_error("--url must not carry credentials");

    char host[64];
    const char *port_text = NULL;
    if (authority[0] == '[') {
        char *close = strchr(authority, ']');
        if (close == NULL || (size_t)(close - authority - 1) >= sizeof(host))
            usage_error("--url has a malformed IPv6 host: '%s'", url);
        memcpy(host, authority + 1, (size_t)(close - authority - 1));
        host[close - authority - 1] = '\0';
        if (close[1] == ':')
            port_text = close + 2;
        else if (close[1] != '\0')
            usage_error("--url has a malformed IPv6 host: '%s'", url);
    } else {
        char *colon = strchr(authority, ':');
        size_t host_len = colon != NULL ? (size_t)(colon - authority) : strlen(authority);
        if (host_len == 0 || host_len >= sizeof(host))
            usage_error("--url has no usable host: '%s'", url);
        memcpy(host, authority, host_len);
        host[host_len] = '\0';
        if (colon != NULL)
            port_text = colon + 1;
    }
    long port = 80;
    if (port_text != NULL) {
        char *end = NULL;
        port = strtol(port_text, &end, 10);
        if (end == port_text || *end != '\0' || port < 1 || port > 65535)
            usage_error("--url has a bad port: '%s'", url);
    }

    memset(&t->addr, 0, sizeof(t->addr));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&t->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&t->addr;
    if (strcasecmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127)
            usage_error("--url must be on loopback (127.0.0.0/8, localhost, [::1]), got '%s'",
                        host);
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        t->addr_len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
            usage_error("--url must be on loopback (127.0.0.0/8, localhost, [::1]), got '%s'",
                        host);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        t->addr_len = sizeof(*v6);
    } else {
        usage_error("--url host must be a loopback address or localhost, got '%s'", host);
    }
    memcpy(t->host, authority, authority_len + 1);
    const char *path = slash != NULL ? slash : "/";
    for (const char *c = path; *c != '\0'; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            usage_error("--url path must not hold spaces or control characters");
    t->path = xstrdup(path);
}

static bool run_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}

static void parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"token", required_argument, NULL, 't'},
        {"clients", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'r'},
        {"events-per-request", required_argument, NULL, 'e'},
        {"run-id", required_argument, NULL, 'i'},
        {"acked-file", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.clients = 8, .duration_s = 10, .events_per_request = 10};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 't':
            o->token = optarg;
            break;
        case 'c':
            o->clients = (unsigned)parse_number("--clients", optarg, 1, LOAD_MAX_CLIENTS);
            break;
        case 'd':
            o->duration_s = parse_number("--duration", optarg, 0.1, LOAD_MAX_DURATION_S);
            break;
        case 'r':
            o->rate = parse_number("--rate", optarg, 0, LOAD_MAX_RATE);
            break;
        case 'e':
            o->events_per_request = (unsigned)parse_number("--events-per-request", optarg, 1,
                                                           LOAD_MAX_EVENTS_PER_REQUEST);
            break;
        case 'i':
            o->run_id = optarg;
            break;
        case 'a':
            o->acked_file = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (o->url == NULL)
        usage_error("--url is required");
    if (o->token != NULL) {
        if (strlen(o->token) > LOAD_MAX_TOKEN || strpbrk(o->token, "\r\n") != NULL)
            usage_error("--token must be one line of at most %d bytes", LOAD_MAX_TOKEN);
    }
    if (o->run_id != NULL && !run_id_valid(o->run_id))
        usage_error("--run-id must be 1 to 64 of [A-Za-z0-9._-]");
}

/* ------------------------------------------------------------ requests */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* printf onto the end of a growable buffer. */
static void append_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void append_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            die("cannot format a request");
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        *cap = (*cap + (size_t)n + 1) * 2;
        *buf = xrealloc(*buf, *cap);
    }
}

/*
 * Write the next request of `c` into c->out: a Distribution envelope of
 * events-per-request pushes of bench/app, ids "<run>-<client>-<request>-<k>",
 * digests and tags from a per-run counter.
 */
static void client_build_request(struct client *c)
{
    struct load *l = c->load;
    const struct options *o = &l->opt;

    l->body_len = 0;
    append_printf(&l->body, &l->body_len, &l->body_cap, "{\"events\":[");
    for (unsigned k = 0; k < o->events_per_request; k++) {
        uint64_t n = ++l->event_counter;
        uint64_t h = l->seed ^ (n * 4);
        append_printf(&l->body, &l->body_len, &l->body_cap,
                      "%s{\"id\":\"%s-%u-%" PRIu64 "-%u\",\"timestamp\":\"2026-11-26T10:00:00Z\","
                      "\"action\":\"push\",\"target\":{\"mediaType\":\"" EVENT_MEDIA_TYPE "\","
                      "\"digest\":\"sha256:%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64
                      "\",\"size\":100,\"repository\":\"bench/app\",\"tag\":\"t%" PRIu64 "\"}}",
                      k > 0 ? "," : "", o->run_id, c->index, c->requests, k, splitmix64(h),
                      splitmix64(h + 1), splitmix64(h + 2), splitmix64(h + 3), n);
    }
    append_printf(&l->body, &l->body_len, &l->body_cap, "]}");

    c->out_len = 0;
    c->out_sent = 0;
    append_printf(&c->out, &c->out_len, &c->out_cap,
                  "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferry-ingest-load/1\r\n"
                  "Content-Type: " CONTENT_TYPE "\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                  l->target.path, l->target.host, l->body_len,
                  o->token != NULL ? "Authorization: Bearer " : "", o->token ? o->token : "",
                  o->token != NULL ? "\r\n" : "");
    if (c->out_cap - c->out_len < l->body_len + 1) {
        c->out_cap = c->out_len + l->body_len + 1;
        c->out = xrealloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, l->body, l->body_len);
    c->out_len += l->body_len;
}

/* ------------------------------------------------------------ connections */

static void client_watch(struct client *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(c->load->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->want_out = out;
}

/* Start a non-blocking connect; on immediate failure the client stays down for a while. */
static void client_connect(struct client *c, uint64_t now)
{
    struct load *l = c->load;
    int fd = socket(l->target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(fd, (struct sockaddr *)&l->target.addr, l->target.addr_len);
    if (rc < 0 && errno != EINPROGRESS) {
        close(fd);
        l->n.connect++;
        c->state = CLIENT_DOWN;
        c->retry_at_ns = now + LOAD_RECONNECT_NS;
        return;
    }
    c->fd = fd;
    c->in_len = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->want_out = true;
    c->state = CLIENT_CONNECTING;
}

/*
 * Drop the connection. A request in flight on it is lost (counted by the
 * caller); the client reconnects at `retry_at`.
 */
static void client_close(struct client *c, uint64_t retry_at)
{
    struct load *l = c->load;
    if (c->state == CLIENT_SENDING || c->state == CLIENT_WAITING)
        l->in_flight--;
    if (c->fd >= 0) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->in_len = 0;
    c->state = CLIENT_DOWN;
    c->retry_at_ns = retry_at;
}

static void client_fail(struct client *c, uint64_t now)
{
    c->load->n.transport++;
    client_close(c, now);
}

static void client_flush(struct client *c, uint64_t now)
{
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out)
                client_watch(c, true);
            return;
        }
        if (n <= 0) {
            client_fail(c, now);
            return;
        }
        c->out_sent += (size_t)n;
    }
    c->state = CLIENT_WAITING;
    if (c->want_out)
        client_watch(c, false);
}

/* Start the next request on an idle client; its latency counts from `origin_ns`. */
static void client_send(struct client *c, uint64_t origin_ns, uint64_t now)
{
    struct load *l = c->load;
    client_build_request(c);
    c->requests++;
    c->start_ns = origin_ns;
    c->state = CLIENT_SENDING;
    l->in_flight++;
    l->n.sent++;
    l->n.events_sent += l->opt.events_per_request;
    client_flush(c, now);
}

/* The open-loop due time of this client's next request. */
static uint64_t client_due(const struct client *c)
{
    const struct load *l = c->load;
    double slot = (double)c->index + (double)c->requests * (double)l->opt.clients;
    return l->t0_ns + (uint64_t)(slot * (double)LOAD_NS / l->requests_per_s);
}

/* ------------------------------------------------------------ answers */

/* The unsigned number after `"key":` in a JSON body, or 0. */
static uint64_t json_field(const char *body, size_t len, const char *key)
{
    char pattern[48];
    int n = snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *at = memmem(body, len, pattern, (size_t)n);
    if (at == NULL)
        return 0;
    at += n;
    uint64_t v = 0;
    while (at < body + len && *at >= '0' && *at <= '9')
        v = v * 10 + (uint64_t)(*at++ - '0');
    return v;
}

static void client_answered(struct client *c, unsigned status, const char *body, size_t len,
                            bool close_after, uint64_t now)
{
    struct load *l = c->load;
    hist_add(&l->hist, (now - c->start_ns) / 1000);
    l->n.responses++;
    l->n.status[status < 600 ? status : 0]++;
    l->last_answer_ns = now;
    if (status == 200) {
        /* One request in flight per connection: it is the one numbered requests - 1. */
        if (l->acked != NULL &&
            fprintf(l->acked, "%u %" PRIu64 "\n", c->index, c->requests - 1) < 0)
            die("cannot write to %s: %s", l->opt.acked_file, strerror(errno));
        l->n.ok++;
        l->n.events_ok += l->opt.events_per_request;
        l->n.accepted += json_field(body, len, "accepted");
        l->n.duplicates += json_field(body, len, "duplicates");
    } else {
        l->n.non_200++;
    }
    /* An early answer (the request not fully written) leaves the stream unusable. */
    bool whole = c->state == CLIENT_WAITING;
    l->in_flight--;
    c->state = CLIENT_IDLE;
    c->in_len = 0;
    if (close_after || !whole) {
        l->n.reconnects++;
        client_close(c, now);
    }
}

/*
 * Look for a whole answer in c->in. Returns 1 and handles it, 0 when more
 * bytes are needed, -1 when the answer cannot be used (the caller fails the
 * request).
 */
static int client_parse(struct client *c, uint64_t now)
{
    const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (end == NULL)
        return c->in_len < LOAD_RESPONSE_CAP ? 0 : -1;
    size_t head_len = (size_t)(end - c->in) + 4;
    if (c->in_len < 12 || strncmp(c->in, "HTTP/1.", 7) != 0 || c->in[8] != ' ')
        return -1;
    unsigned status = 0;
    for (int i = 9; i < 12; i++) {
        if (c->in[i] < '0' || c->in[i] > '9')
            return -1;
        status = status * 10 + (unsigned)(c->in[i] - '0');
    }
    bool close_after = c->in[7] == '0';
    long long content_length = -1;
    const char *line = (const char *)memchr(c->in, '\n', head_len) + 1;
    while (line < c->in + head_len - 2) {
        const char *eol = memchr(line, '\n', (size_t)(c->in + head_len - line));
        if (eol == NULL)
            return -1;
        size_t n = (size_t)(eol - line);
        if (n > 15 && strncasecmp(line, "content-length:", 15) == 0)
            content_length = strtoll(line + 15, NULL, 10);
        else if (n > 11 && strncasecmp(line, "connection:", 11) == 0)
            close_after = memmem(line, n, "close", 5) != NULL;
        else if (n > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0)
            return -1; /* MHD sizes its answers; chunked is not expected */
        line = eol + 1;
    }
    if (content_length < 0 || content_length > LOAD_RESPONSE_CAP)
        return -1;
    size_t total = head_len + (size_t)content_length;
    if (c->in_len < total)
        return total <= LOAD_RESPONSE_CAP ? 0 : -1;
    if (c->in_len > total)
        return -1; /* nothing was pipelined: bytes past the answer mean a broken stream */
    client_answered(c, status, c->in + head_len, (size_t)content_length, close_after, now);
    return 1;
}

static void client_readable(struct client *c, uint64_t now)
{
    struct load *l = c->load;
    for (;;) {
        if (c->in_len >= LOAD_RESPONSE_CAP) {
            client_fail(c, now);
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, LOAD_RESPONSE_CAP - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            if (c->state == CLIENT_IDLE && c->in_len == 0) {
                /* The server closed an idle keep-alive connection: not a lost request. */
                l->n.reconnects++;
                client_close(c, now);
            } else {
                client_fail(c, now);
            }
            return;
        }
        c->in_len += (size_t)n;
        if (c->state != CLIENT_SENDING && c->state != CLIENT_WAITING) {
            client_fail(c, now); /* bytes nobody asked for */
            return;
        }
        int rc = client_parse(c, now);
        if (rc < 0) {
            client_fail(c, now);
            return;
        }
        if (rc > 0)
            return;
    }
}

static void client_event(struct client *c, uint32_t events, uint64_t now)
{
    struct load *l = c->load;
    if (c->state == CLIENT_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
            l->n.connect++;
            client_close(c, now + LOAD_RECONNECT_NS);
            return;
        }
        c->state = CLIENT_IDLE;
        client_watch(c, false);
        return;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
        client_readable(c, now);
        if (c->state == CLIENT_DOWN)
            return;
    }
    if ((events & EPOLLOUT) != 0 && c->state == CLIENT_SENDING)
        client_flush(c, now);
}

/* ------------------------------------------------------------ the run */

/* Wait for socket events until `deadline_ns` at the latest, and handle them. */
static void load_wait(struct load *l, uint64_t deadline_ns)
{
    struct epoll_event events[64];
    uint64_t now = now_ns();
    uint64_t wait = deadline_ns > now ? deadline_ns - now : 0;
    if (wait > LOAD_NS)
        wait = LOAD_NS;
    int n = -1;
    if (l->pwait2) {
        struct timespec ts = {.tv_sec = (time_t)(wait / LOAD_NS),
                              .tv_nsec = (long)(wait % LOAD_NS)};
        n = epoll_pwait2(l->epfd, events, 64, &ts, NULL);
        if (n < 0 && errno == ENOSYS)
            l->pwait2 = false;
    }
    if (!l->pwait2)
        n = epoll_wait(l->epfd, events, 64, (int)((wait + 999999) / 1000000));
    if (n < 0) {
        if (errno == EINTR)
            return;
        die("epoll_wait: %s", strerror(errno));
    }
    now = now_ns();
    for (int i = 0; i < n; i++)
        client_event(events[i].data.ptr, events[i].events, now);
}

/* Open every connection before the clock starts. */
static void load_connect_all(struct load *l)
{
    uint64_t start = now_ns();
    for (unsigned i = 0; i < l->opt.clients; i++) {
        client_connect(&l->clients[i], start);
        if (l->clients[i].state == CLIENT_DOWN)
            die("cannot connect to %s: %s", l->target.host, strerror(errno));
    }
    for (;;) {
        unsigned up = 0;
        for (unsigned i = 0; i < l->opt.clients; i++) {
            if (l->clients[i].state == CLIENT_IDLE)
                up++;
            else if (l->clients[i].state == CLIENT_DOWN)
                die("cannot connect to %s (connection refused or reset)", l->target.host);
        }
        if (up == l->opt.clients)
            break;
        if (now_ns() - start > LOAD_CONNECT_NS)
            die("only %u of %u connections to %s opened in 5 s", up, l->opt.clients,
                l->target.host);
        load_wait(l, now_ns() + 100 * 1000 * 1000ULL);
    }
    l->n.connect = 0;
}

static void load_run(struct load *l)
{
    bool open_loop = l->requests_per_s > 0;
    l->t0_ns = now_ns();
    l->end_ns = l->t0_ns + (uint64_t)(l->opt.duration_s * (double)LOAD_NS);
    l->last_answer_ns = l->t0_ns;
    for (;;) {
        uint64_t now = now_ns();
        if (!l->stopping && now >= l->end_ns)
            l->stopping = true;
        uint64_t wake = l->stopping ? l->end_ns + LOAD_DRAIN_NS : l->end_ns;
        for (unsigned i = 0; i < l->opt.clients && !l->stopping; i++) {
            struct client *c = &l->clients[i];
            if (c->state == CLIENT_DOWN) {
                if (c->retry_at_ns <= now)
                    client_connect(c, now);
                else if (c->retry_at_ns < wake)
                    wake = c->retry_at_ns;
            }
            if (c->state != CLIENT_IDLE)
                continue;
            if (!open_loop) {
                client_send(c, now, now);
                continue;
            }
            uint64_t due = client_due(c);
            if (due >= l->end_ns)
                continue;
            if (due <= now)
                client_send(c, due, now);
            else if (due < wake)
                wake = due;
        }
        if (l->stopping && l->in_flight == 0)
            break;
        if (l->stopping && now >= l->end_ns + LOAD_DRAIN_NS) {
            l->n.timeouts = l->in_flight;
            break;
        }
        load_wait(l, wake);
    }
}

/* ------------------------------------------------------------ report */

struct report {
    double elapsed_s;
    double events_per_s;
    double requests_per_s;
    double p50, p90, p99, max;
    uint64_t unsent;
    double cpu_s;
};

static void load_report(const struct load *l, struct report *r)
{
    uint64_t end = l->last_answer_ns > l->end_ns ? l->last_answer_ns : l->end_ns;
    r->elapsed_s = (double)(end - l->t0_ns) / (double)LOAD_NS;
    r->events_per_s = (double)l->n.events_ok / r->elapsed_s;
    r->requests_per_s = (double)l->n.ok / r->elapsed_s;
    r->p50 = hist_percentile_ms(&l->hist, 50);
    r->p90 = hist_percentile_ms(&l->hist, 90);
    r->p99 = hist_percentile_ms(&l->hist, 99);
    r->max = (double)l->hist.max_us / 1000.0;
    r->unsent = 0;
    if (l->requests_per_s > 0) {
        uint64_t scheduled = (uint64_t)ceil(l->opt.duration_s * l->requests_per_s);
        r->unsent = scheduled > l->n.sent ? scheduled - l->n.sent : 0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double round2(double v)
{
    return round(v * 100.0) / 100.0;
}

static void print_json(const struct load *l, const struct report *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mode", l->requests_per_s > 0 ? "open" : "closed");
    cJSON_AddStringToObject(j, "run_id", l->opt.run_id);
    cJSON_AddNumberToObject(j, "clients", l->opt.clients);
    cJSON_AddNumberToObject(j, "duration_s", l->opt.duration_s);
    cJSON_AddNumberToObject(j, "target_events_per_s", l->opt.rate);
    cJSON_AddNumberToObject(j, "events_per_request", l->opt.events_per_request);
    cJSON_AddNumberToObject(j, "elapsed_s", round(r->elapsed_s * 1000.0) / 1000.0);
    cJSON_AddNumberToObject(j, "requests_sent", (double)l->n.sent);
    cJSON_AddNumberToObject(j, "requests", (double)l->n.responses);
    cJSON_AddNumberToObject(j, "requests_ok", (double)l->n.ok);
    cJSON_AddNumberToObject(j, "events_sent", (double)l->n.events_sent);
    cJSON_AddNumberToObject(j, "events", (double)l->n.events_ok);
    cJSON_AddNumberToObject(j, "accepted", (double)l->n.accepted);
    cJSON_AddNumberToObject(j, "duplicates", (double)l->n.duplicates);
    cJSON_AddNumberToObject(j, "events_per_s", round2(r->events_per_s));
    cJSON_AddNumberToObject(j, "requests_per_s", round2(r->requests_per_s));
    cJSON_AddNumberToObject(j, "p50_ms", round2(r->p50));
    cJSON_AddNumberToObject(j, "p90_ms", round2(r->p90));
    cJSON_AddNumberToObject(j, "p99_ms", round2(r->p99));
    cJSON_AddNumberToObject(j, "max_ms", round2(r->max));
    cJSON_AddNumberToObject(j, "non_200", (double)l->n.non_200);
    cJSON_AddNumberToObject(j, "transport_errors", (double)l->n.transport);
    cJSON_AddNumberToObject(j, "timeouts", (double)l->n.timeouts);
    cJSON_AddNumberToObject(j, "errors", (double)(l->n.non_200 + l->n.transport + l->n.timeouts));
    cJSON_AddNumberToObject(j, "connect_errors", (double)l->n.connect);
    cJSON_AddNumberToObject(j, "reconnects", (double)l->n.reconnects);
    cJSON_AddNumberToObject(j, "unsent", (double)r->unsent);
    cJSON_AddNumberToObject(j, "cpu_s", round(r->cpu_s * 1000.0) / 1000.0);
    cJSON *status = cJSON_AddObjectToObject(j, "status");
    for (unsigned s = 0; s < 600; s++) {
        if (l->n.status[s] == 0)
            continue;
        char code[8];
        snprintf(code, sizeof(code), "%u", s);
        cJSON_AddNumberToObject(status, code, (double)l->n.status[s]);
    }
    char *text = cJSON_PrintUnformatted(j);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(j);
}

static void print_text(const struct load *l, const struct report *r)
{
    if (l->requests_per_s > 0)
        printf("open loop at %.0f events/s (%.1f requests/s), %u clients, %.1f s, run %s\n",
               l->opt.rate, l->requests_per_s, l->opt.clients, l->opt.duration_s, l->opt.run_id);
    else
        printf("closed loop, %u clients, %.1f s, run %s\n", l->opt.clients, l->opt.duration_s,
               l->opt.run_id);
    printf("requests   %" PRIu64 " answered (%" PRIu64 " sent), %" PRIu64 " with 200\n",
           l->n.responses, l->n.sent, l->n.ok);
    printf("events     %" PRIu64 " acknowledged (accepted %" PRIu64 ", duplicates %" PRIu64
           ") in %.2f s\n",
           l->n.events_ok, l->n.accepted, l->n.duplicates, r->elapsed_s);
    printf("events/s   %.1f (requests/s %.1f)\n", r->events_per_s, r->requests_per_s);
    printf("latency ms p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r->p50, r->p90, r->p99, r->max);
    printf("non-200    %" PRIu64, l->n.non_200);
    for (unsigned s = 0; s < 600; s++)
        if (s != 200 && l->n.status[s] != 0)
            printf("  [%u: %" PRIu64 "]", s, l->n.status[s]);
    printf("\nerrors     transport %" PRIu64 ", timeouts %" PRIu64 ", connect %" PRIu64
           ", reconnects %" PRIu64 "\n",
           l->n.transport, l->n.timeouts, l->n.connect, l->n.reconnects);
    if (l->requests_per_s > 0)
        printf("unsent     %" PRIu64 " scheduled requests never sent (server behind)\n", r->unsent);
    printf("load cpu   %.2f s\n", r->cpu_s);
}

int main(int argc, char **argv)
{
    xalloc_init();
    static struct load l; /* the histogram is large: keep it off the stack */
    char run_id[32];

    parse_options(argc, argv, &l.opt);
    parse_url(l.opt.url, &l.target);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    if (l.opt.run_id == NULL) {
        snprintf(run_id, sizeof(run_id), "r%" PRIx64 "-%d",
                 (uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000, (int)getpid());
        l.opt.run_id = run_id;
    }
    l.seed =
        splitmix64((uint64_t)wall.tv_sec * LOAD_NS + (uint64_t)wall.tv_nsec) ^ (uint64_t)getpid();
    l.requests_per_s = l.opt.rate / (double)l.opt.events_per_request;
    l.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l.epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    l.pwait2 = true;
    l.clients = xcalloc(l.opt.clients, sizeof(*l.clients));
    for (unsigned i = 0; i < l.opt.clients; i++) {
        l.clients[i].load = &l;
        l.clients[i].index = i;
        l.clients[i].fd = -1;
        l.clients[i].in = xmalloc(LOAD_RESPONSE_CAP);
        l.clients[i].out_cap = (size_t)l.opt.events_per_request * 400 + 1024;
        l.clients[i].out = xmalloc(l.clients[i].out_cap);
    }
    l.body_cap = (size_t)l.opt.events_per_request * 400 + 64;
    l.body = xmalloc(l.body_cap);

    if (l.opt.acked_file != NULL) {
        l.acked = fopen(l.opt.acked_file, "ae");
        if (l.acked == NULL)
            die("cannot open %s: %s", l.opt.acked_file, strerror(errno));
    }
    load_connect_all(&l);
    load_run(&l);

    if (l.acked != NULL && (fflush(l.acked) != 0 || fclose(l.acked) != 0))
        die("cannot write to %s: %s", l.opt.acked_file, strerror(errno));

    struct report r;
    load_report(&l, &r);
    if (l.opt.json)
        print_json(&l, &r);
    else
        print_text(&l, &r);

    for (unsigned i = 0; i < l.opt.clients; i++) {
        if (l.clients[i].fd >= 0)
            close(l.clients[i].fd);
        free(l.clients[i].in);
        free(l.clients[i].out);
    }
    free(l.clients);
    free(l.body);
    free(l.target.path);
    close(l.epfd);
    return 0;
}
