/*
 * proxy_rules.c: the seeded random draws and the rules of ferry-chaos-proxy
 * as the proxy applies them: deciding a request's plan, counting faults,
 * reading rules documents (from --rules-file and the control endpoint) and
 * applying rules installed at run time to the requests in flight.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "chaos/proxy_int.h"
#include "common/errors.h"
#include "common/log.h"

/* ------------------------------------------------------------------ random */

/* splitmix64: small, seedable, and good enough to pick which requests fail. */
uint64_t proxy_random_u64(struct proxy *p)
{
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double proxy_random(struct proxy *p)
{
    return (double)(proxy_random_u64(p) >> 11) / (double)(1ULL << 53);
}

/* ------------------------------------------------------------------- rules */

/*
 * Whether a rule that selected a request acts on it: not when its count is
 * spent, else drawn at its rate. When it fires it is counted and its count
 * goes down. A draw is made only for a rate below 1, so the seeded sequence
 * depends on the rules alone.
 */
static bool rule_fires(struct proxy *p, struct rule *r)
{
    if (r->count_left == 0)
        return false;
    if (r->rate < 1.0 && proxy_random(p) >= r->rate)
        return false;
    r->fired++;
    if (r->count_left > 0)
        r->count_left--;
    return true;
}

/* Docker Hub's answer to a pull over the limit. */
#define PROXY_RATELIMIT_MESSAGE                                                                    \
    "You have reached your pull rate limit. You may increase the limit by authenticating and "     \
    "upgrading: https://www.docker.com/increase-rate-limit"

/*
 * A ratelimit or etag rule acts on every request it selects (no draw). The
 * first ratelimit rule that selects the request counts it and puts its
 * headers on the answer; when it refuses a manifest GET, that is the
 * request's answer unless a fault came first.
 */
static void proxy_decide_vendor(struct proxy *p, struct rule *r, size_t number, bool pull,
                                struct plan *plan)
{
    r->fired++;
    plan->delay_ms += r->delay_ms;
    if (r->bandwidth && (plan->bandwidth == 0 || r->bandwidth < plan->bandwidth))
        plan->bandwidth = r->bandwidth;
    if (r->etag)
        plan->etag = true;
    if (!r->has_ratelimit || plan->headers[0] != '\0')
        return;
    uint64_t retry_after_s = 0;
    bool refused = vendor_ratelimit_take(&r->ratelimit, uv_now(p->loop), pull, &retry_after_s);
    vendor_ratelimit_headers(&r->ratelimit, plan->headers);
    if (!refused || plan->fault != RULE_FAULT_NONE)
        return;
    p->stats.ratelimit_refused++;
    plan->fault = RULE_FAULT_STATUS;
    plan->status = 429;
    plan->retry_after_s = (int)retry_after_s;
    plan->rule_number = number;
    plan->vendor = true;
    snprintf(plan->code, sizeof(plan->code), "TOOMANYREQUESTS");
    snprintf(plan->message, sizeof(plan->message), "%s", PROXY_RATELIMIT_MESSAGE);
}

bool proxy_gate(struct proxy *p, const char *method, const char *target, struct plan *plan)
{
    char repo[VENDOR_REPO_NAME_MAX + 1];
    if (p->gate_status == 0 || !vendor_push_repo(method, target, repo, sizeof(repo)) ||
        vendor_repos_has(&p->repos, repo))
        return false;
    memset(plan, 0, sizeof(*plan));
    plan->retry_after_s = -1;
    plan->fault = RULE_FAULT_STATUS;
    plan->status = p->gate_status;
    plan->vendor = true;
    /* ECR answers NAME_UNKNOWN; Harbor, for a project that does not exist, DENIED. */
    if (p->gate_status == 404) {
        snprintf(plan->code, sizeof(plan->code), "NAME_UNKNOWN");
        snprintf(plan->message, sizeof(plan->message), "repository %s not found", repo);
    } else {
        snprintf(plan->code, sizeof(plan->code), "DENIED");
        snprintf(plan->message, sizeof(plan->message),
                 "requested access to the resource is denied");
    }
    p->stats.gate_refused++;
    log_info("gate refused method=%s target=%s repository=%s status=%d", method, target, repo,
             p->gate_status);
    return true;
}

/*
 * Rules are tried in order. Shaping (delay, bandwidth) of every rule that
 * fires adds up; the first rule that fires with a fault gives the fault, and
 * later rules with a fault are not drawn: a rule's rate applies to the
 * requests the faults before it left alone. Ratelimit and etag rules are not
 * drawn (proxy_decide_vendor()).
 */
void proxy_decide(struct proxy *p, const char *method, const char *target, struct plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->retry_after_s = -1;
    bool pull = vendor_is_manifest_get(method, target);
    for (size_t i = 0; i < p->n_rules; i++) {
        struct rule *r = p->rules[i];
        if (!rule_matches(r, method, target))
            continue;
        r->matched++;
        if (r->has_ratelimit || r->etag) {
            proxy_decide_vendor(p, r, i + 1, pull, plan);
            continue;
        }
        if (r->fault != RULE_FAULT_NONE && plan->fault != RULE_FAULT_NONE)
            continue;
        if (!rule_fires(p, r))
            continue;
        plan->delay_ms += r->delay_ms;
        if (r->bandwidth && (plan->bandwidth == 0 || r->bandwidth < plan->bandwidth))
            plan->bandwidth = r->bandwidth;
        if (r->fault != RULE_FAULT_NONE) {
            plan->fault = r->fault;
            plan->status = r->status;
            plan->retry_after_s = r->retry_after_s;
            plan->rule_number = i + 1;
            memcpy(plan->code, r->code, sizeof(plan->code));
        }
    }
}

void proxy_count_fault(struct conn *conn, enum rule_fault fault, const char *detail)
{
    struct proxy *p = conn->proxy;
    p->stats.faults[fault]++;
    log_info("fault kind=%s conn=%" PRIu64 " method=%s target=%s rule=%zu%s%s",
             rule_fault_name(fault), conn->id, conn->ex.method,
             conn->ex.target.data ? conn->ex.target.data : "", conn->ex.plan.rule_number,
             detail ? " " : "", detail ? detail : "");
}

/* A new blackhole rule takes the matching requests already in flight, too. */
void proxy_rules_changed(struct proxy *p)
{
    struct conn *next;
    for (struct conn *conn = p->conns; conn; conn = next) {
        next = conn->next;
        struct exchange *ex = &conn->ex;
        if (conn->mode != CONN_PROXY || !ex->active || !ex->req_headers_done || ex->synthetic)
            continue;
        for (size_t i = 0; i < p->n_rules; i++) {
            struct rule *r = p->rules[i];
            if (r->fault != RULE_FAULT_BLACKHOLE || !rule_matches(r, ex->method, ex->target.data))
                continue;
            if (!rule_fires(p, r))
                continue;
            ex->plan.rule_number = i + 1;
            proxy_conn_blackhole(conn);
            proxy_conn_after_io(conn);
            break;
        }
    }
}

void proxy_clear_rules(struct proxy *p)
{
    for (size_t i = 0; i < p->n_rules; i++)
        rule_free(p->rules[i]);
    p->n_rules = 0;
}

/* --------------------------------------------------------- rules documents */

/* Parses one more rule of a document into out[*n], refusing more than `max`. */
static int rules_add(const char *line, struct rule **out, size_t max, size_t *n, char *err,
                     size_t err_len)
{
    if (*n == max) {
        snprintf(err, err_len, "bad rules: more than %d rules", RULE_MAX);
        return FERRY_EINVAL;
    }
    int rc = rule_parse(line, &out[*n], err, err_len);
    if (rc == 0)
        (*n)++;
    return rc;
}

/* ["RULE", ...] or {"rules": [...]}; adds to out[*n]. */
static int rules_parse_json(const char *text, struct rule **out, size_t max, size_t *n, char *err,
                            size_t err_len)
{
    int rc = 0;
    cJSON *json = cJSON_Parse(text);
    cJSON *list = json;
    if (json && cJSON_IsObject(json))
        list = cJSON_GetObjectItemCaseSensitive(json, "rules");
    if (!list || !cJSON_IsArray(list)) {
        snprintf(err, err_len, "bad rules: want JSON [\"RULE\", ...] or {\"rules\": [...]}");
        rc = FERRY_EINVAL;
        goto out;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        if (!cJSON_IsString(item)) {
            snprintf(err, err_len, "bad rules: every rule must be a string");
            rc = FERRY_EINVAL;
            goto out;
        }
        rc = rules_add(item->valuestring, out, max, n, err, err_len);
        if (rc < 0)
            goto out;
    }
out:
    cJSON_Delete(json);
    return rc;
}

/* One rule per line, blank lines and # comments skipped; adds to out[*n]. */
static int rules_parse_lines(const char *s, struct rule **out, size_t max, size_t *n, char *err,
                             size_t err_len)
{
    while (*s) {
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        char line[RULE_LINE_MAX + 2];
        if (len > RULE_LINE_MAX) {
            snprintf(err, err_len, "bad rule: a line is longer than %d bytes", RULE_LINE_MAX);
            return FERRY_EINVAL;
        }
        memcpy(line, s, len);
        line[len] = '\0';
        s = eol ? eol + 1 : s + len;
        char *t = line;
        while (*t == ' ' || *t == '\t' || *t == '\r')
            t++;
        if (*t == '\0' || *t == '#')
            continue;
        int rc = rules_add(t, out, max, n, err, err_len);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int proxy_parse_rules(const char *text, struct rule **out, size_t max, size_t *n_out, char *err,
                      size_t err_len)
{
    size_t n = 0;
    const char *s = text;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    int rc = (*s == '[' || *s == '{') ? rules_parse_json(s, out, max, &n, err, err_len)
                                      : rules_parse_lines(s, out, max, &n, err, err_len);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            rule_free(out[i]);
        n = 0;
    }
    *n_out = n;
    return rc;
}
