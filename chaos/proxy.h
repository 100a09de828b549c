/*
 * proxy: ferry-chaos-proxy, an HTTP/1.1 reverse proxy on libuv that sits
 * between Ferry and a registry and injects faults by rule (see rule.h).
 *
 * Every request and response is parsed (http_parser) and written again: the
 * head as received, the body as it streams, re-chunked when it came chunked.
 * So keep-alive connections, Content-Length and chunked bodies are delimited,
 * and each request is matched against the rules on its own. One request is
 * handled at a time per connection (later pipelined bytes wait, capped).
 *
 * The rules come from the command line and can be replaced at run time
 * through the control endpoint:
 *
 *   GET    /stats    counters: connections, requests, faults injected by kind
 *   DELETE /stats    zero the counters
 *   GET    /rules    the rules, with how often each matched and fired
 *   PUT    /rules    replace the rules   (body: one rule per line, or JSON:
 *   POST   /rules    add rules            ["RULE", ...] or {"rules": [...]})
 *   DELETE /rules    clear the rules
 *   GET    /healthz  200
 *   GET    /repositories            the repositories the gate lets pushes to
 *   POST   /repositories?name=R     create R (201; 200 when it was there)
 *
 * A blackhole rule installed at run time also swallows the requests in
 * flight that it matches, so a partition starts at once.
 *
 * The proxy also plays what vendors' registries do that Distribution does
 * not (vendor.h): --repo-gate 404|403 refuses pushes to repositories not
 * created (ECR's NAME_UNKNOWN, Harbor's DENIED for a missing project), the
 * ratelimit= action is Docker Hub's pull limit, etag gives answers an ETag
 * and honours If-None-Match.
 */
#ifndef FERRY_CHAOS_PROXY_H
#define FERRY_CHAOS_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* Caps: every buffer that grows from network input is bounded by one of these. */
#define PROXY_READ_SIZE        (64 * 1024)           /* one read */
#define PROXY_HEAD_MAX         (64 * 1024)           /* request or response head */
#define PROXY_TARGET_MAX       (8 * 1024)            /* request target */
#define PROXY_REASON_MAX       256                   /* response reason phrase */
#define PROXY_PENDING_MAX      (2 * PROXY_READ_SIZE) /* pipelined bytes waiting */
#define PROXY_HIGH_WATER       (1024 * 1024)         /* queued bytes before reading stops */
#define PROXY_LOW_WATER        (256 * 1024)          /* ...and starts again */
#define PROXY_CONTROL_BODY_MAX (1024 * 1024)
#define PROXY_MAX_CONNECTIONS  1024

#endif
