/* rule.c: parsing and matching of the fault rules of ferry-chaos-proxy (see rule.h). */
#include "chaos/rule.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/xalloc.h"

/* Tokens of one line; a rule has few, so a fixed array bounds the split. */
#define RULE_TOKENS_MAX 16

static const char *const rule_fault_names[] = {
    [RULE_FAULT_NONE] = "none",
    [RULE_FAULT_STATUS] = "status",
    [RULE_FAULT_RESET_BEFORE] = "reset_before",
    [RULE_FAULT_RESET_MID] = "reset_mid",
    [RULE_FAULT_TRUNCATE] = "truncate",
    [RULE_FAULT_FLIP] = "flip",
    [RULE_FAULT_BLACKHOLE] = "blackhole",
};

const char *rule_fault_name(enum rule_fault fault)
{
    if ((size_t)fault >= sizeof(rule_fault_names) / sizeof(rule_fault_names[0]))
        return "?";
    return rule_fault_names[fault];
}

/* Parses an unsigned decimal in [min, max] with an optional K/M/G suffix (x1024). */
static int rule_parse_u64(const char *s, bool suffix, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return FERRY_EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return FERRY_EINVAL;
    uint64_t mult = 1;
    if (suffix && *end != '\0') {
        switch (*end) {
        case 'K':
        case 'k':
            mult = 1024;
            break;
        case 'M':
        case 'm':
            mult = 1024 * 1024;
            break;
        case 'G':
        case 'g':
            mult = 1024ULL * 1024 * 1024;
            break;
        default:
            return FERRY_EINVAL;
        }
        end++;
    }
    if (*end != '\0' || v > UINT64_MAX / mult)
        return FERRY_EINVAL;
    v *= mult;
    if (v < min || v > max)
        return FERRY_EINVAL;
    *out = v;
    return 0;
}

static int rule_fail(char *err, size_t err_len, const char *line, const char *fmt, const char *tok)
{
    char why[256];
    snprintf(why, sizeof(why), fmt, tok ? tok : "");
    snprintf(err, err_len, "bad rule '%s': %s", line, why);
    return FERRY_EINVAL;
}

static int rule_set_fault(struct rule *r, enum rule_fault fault, const char *tok, char *err,
                          size_t err_len, const char *line)
{
    if (r->fault != RULE_FAULT_NONE)
        return rule_fail(err, err_len, line, "'%s': a rule has one fault at most", tok);
    r->fault = fault;
    return 0;
}

/* The ACTION keys, in the order of rule_action_keys. */
enum rule_action {
    ACTION_STATUS,
    ACTION_RETRY_AFTER,
    ACTION_RATE,
    ACTION_RESET,
    ACTION_TRUNCATE,
    ACTION_FLIP,
    ACTION_BLACKHOLE,
    ACTION_DELAY_MS,
    ACTION_BANDWIDTH,
    ACTION_COUNT,
    ACTION_CODE,
    ACTION_RATELIMIT,
    ACTION_ETAG,
    N_ACTIONS
};

static const char *const rule_action_keys[N_ACTIONS] = {
    [ACTION_STATUS] = "status",       [ACTION_RETRY_AFTER] = "retry_after",
    [ACTION_RATE] = "rate",           [ACTION_RESET] = "reset",
    [ACTION_TRUNCATE] = "truncate",   [ACTION_FLIP] = "flip",
    [ACTION_BLACKHOLE] = "blackhole", [ACTION_DELAY_MS] = "delay_ms",
    [ACTION_BANDWIDTH] = "bandwidth", [ACTION_COUNT] = "count",
    [ACTION_CODE] = "code",           [ACTION_RATELIMIT] = "ratelimit",
    [ACTION_ETAG] = "etag",
};

/* The bounds of the numeric actions. */
#define RULE_RETRY_AFTER_MAX_S 86400
#define RULE_DELAY_MAX_MS      600000
#define RULE_BANDWIDTH_MAX     (1ULL << 40)

/* code=CODE: an error code as registries write them, upper case. */
static int rule_parse_code(struct rule *r, const char *val, const char *tok, char *err,
                           size_t err_len, const char *line)
{
    size_t n = strlen(val);
    bool ok = n > 0 && n < sizeof(r->code);
    for (size_t i = 0; ok && i < n; i++)
        ok = (val[i] >= 'A' && val[i] <= 'Z') || (val[i] >= '0' && val[i] <= '9') || val[i] == '_';
    if (!ok)
        return rule_fail(err, err_len, line, "'%s': code wants A-Z, 0-9 and _ (up to 31)", tok);
    memcpy(r->code, val, n + 1);
    return 0;
}

/* ratelimit=LIMIT[/WINDOW_S]. */
static int rule_parse_ratelimit(struct rule *r, const char *val, const char *tok, char *err,
                                size_t err_len, const char *line)
{
    char limit[32];
    uint64_t l, w = VENDOR_RATELIMIT_WINDOW_DEFAULT_S;
    const char *slash = strchr(val, '/');
    size_t n = slash ? (size_t)(slash - val) : strlen(val);
    bool ok = n > 0 && n < sizeof(limit);
    if (ok) {
        memcpy(limit, val, n);
        limit[n] = '\0';
        ok = rule_parse_u64(limit, false, 0, VENDOR_RATELIMIT_LIMIT_MAX, &l) == 0;
    }
    if (ok && slash)
        ok = rule_parse_u64(slash + 1, false, 1, VENDOR_RATELIMIT_WINDOW_MAX_S, &w) == 0;
    if (!ok)
        return rule_fail(err, err_len, line,
                         "'%s': ratelimit wants LIMIT[/WINDOW_S] (window 1..604800 s)", tok);
    r->has_ratelimit = true;
    vendor_ratelimit_init(&r->ratelimit, l, w);
    return 0;
}

/* Applies the value `val` of ACTION `k` (token `tok`) to the rule; on error fills `err`. */
static int rule_apply_action(struct rule *r, enum rule_action k, const char *val, const char *tok,
                             char *err, size_t err_len, const char *line)
{
    uint64_t v;
    switch (k) {
    case ACTION_STATUS:
        if (rule_parse_u64(val, false, 100, 599, &v) < 0)
            return rule_fail(err, err_len, line, "'%s': status wants 100..599", tok);
        r->status = (int)v;
        return rule_set_fault(r, RULE_FAULT_STATUS, tok, err, err_len, line);
    case ACTION_RETRY_AFTER:
        if (rule_parse_u64(val, false, 0, RULE_RETRY_AFTER_MAX_S, &v) < 0)
            return rule_fail(err, err_len, line, "'%s': retry_after wants 0..86400 seconds", tok);
        r->retry_after_s = (int)v;
        return 0;
    case ACTION_RATE: {
        char *end;
        errno = 0;
        double d = strtod(val, &end);
        if (errno != 0 || *end != '\0' || !(d >= 0.0 && d <= 1.0))
            return rule_fail(err, err_len, line, "'%s': rate wants 0..1", tok);
        r->rate = d;
        return 0;
    }
    case ACTION_RESET:
        if (strcmp(val, "before") == 0)
            return rule_set_fault(r, RULE_FAULT_RESET_BEFORE, tok, err, err_len, line);
        if (strcmp(val, "mid") == 0)
            return rule_set_fault(r, RULE_FAULT_RESET_MID, tok, err, err_len, line);
        return rule_fail(err, err_len, line, "'%s': reset wants before or mid", tok);
    case ACTION_TRUNCATE:
        return rule_set_fault(r, RULE_FAULT_TRUNCATE, tok, err, err_len, line);
    case ACTION_FLIP:
        return rule_set_fault(r, RULE_FAULT_FLIP, tok, err, err_len, line);
    case ACTION_BLACKHOLE:
        return rule_set_fault(r, RULE_FAULT_BLACKHOLE, tok, err, err_len, line);
    case ACTION_DELAY_MS:
        if (rule_parse_u64(val, false, 0, RULE_DELAY_MAX_MS, &v) < 0)
            return rule_fail(err, err_len, line, "'%s': delay_ms wants 0..600000", tok);
        r->delay_ms = v;
        return 0;
    case ACTION_BANDWIDTH:
        if (rule_parse_u64(val, true, 1, RULE_BANDWIDTH_MAX, &v) < 0)
            return rule_fail(err, err_len, line,
                             "'%s': bandwidth wants bytes per second (K, M, G suffixes)", tok);
        r->bandwidth = v;
        return 0;
    case ACTION_CODE:
        return rule_parse_code(r, val, tok, err, err_len, line);
    case ACTION_RATELIMIT:
        return rule_parse_ratelimit(r, val, tok, err, err_len, line);
    case ACTION_ETAG:
        r->etag = true;
        return 0;
    default:
        if (rule_parse_u64(val, false, 1, INT64_MAX, &v) < 0)
            return rule_fail(err, err_len, line, "'%s': count wants a positive number", tok);
        r->count_left = (int64_t)v;
        return 0;
    }
}

/* Applies one ACTION token to the rule; on error fills `err`. */
static int rule_parse_action(struct rule *r, const char *tok, unsigned *seen, char *err,
                             size_t err_len, const char *line)
{
    const char *eq = strchr(tok, '=');
    size_t klen = eq ? (size_t)(eq - tok) : strlen(tok);
    const char *val = eq ? eq + 1 : NULL;

    size_t k;
    for (k = 0; k < N_ACTIONS; k++) {
        if (strlen(rule_action_keys[k]) == klen && strncmp(rule_action_keys[k], tok, klen) == 0)
            break;
    }
    if (k == N_ACTIONS)
        return rule_fail(err, err_len, line,
                         "unknown action '%s' (want status=, retry_after=, code=, rate=, reset=, "
                         "truncate, flip, blackhole, delay_ms=, bandwidth=, count=, ratelimit=, "
                         "etag)",
                         tok);
    if (*seen & (1U << k))
        return rule_fail(err, err_len, line, "'%s' given twice", tok);
    *seen |= 1U << k;
    bool takes_value =
        k != ACTION_TRUNCATE && k != ACTION_FLIP && k != ACTION_BLACKHOLE && k != ACTION_ETAG;
    if (takes_value && (val == NULL || *val == '\0'))
        return rule_fail(err, err_len, line, "'%s' needs a value (key=value)", tok);
    if (!takes_value && val != NULL)
        return rule_fail(err, err_len, line, "'%s' takes no value", tok);
    return rule_apply_action(r, (enum rule_action)k, val, tok, err, err_len, line);
}

/* METHOD: an HTTP method (upper case) or `*` (any). */
static int rule_parse_method(struct rule *r, const char *tok, char *err, size_t err_len)
{
    if (strcmp(tok, "*") == 0)
        return 0;
    size_t mlen = strlen(tok);
    bool ok = mlen > 0 && mlen < sizeof(r->method);
    for (size_t i = 0; ok && i < mlen; i++)
        ok = isupper((unsigned char)tok[i]);
    if (!ok)
        return rule_fail(err, err_len, r->text, "method '%s' is not an HTTP method or *", tok);
    memcpy(r->method, tok, mlen + 1);
    return 0;
}

/* PATH: `*` (any), `~REGEX`, or a substring of the request target. */
static int rule_parse_path(struct rule *r, const char *tok, char *err, size_t err_len)
{
    if (tok[0] == '~') {
        int rerr = regcomp(&r->regex, tok + 1, REG_EXTENDED | REG_NOSUB);
        if (rerr != 0) {
            char msg[160];
            regerror(rerr, &r->regex, msg, sizeof(msg));
            char why[200];
            snprintf(why, sizeof(why), "path regex: %s", msg);
            return rule_fail(err, err_len, r->text, "%s", why);
        }
        r->has_regex = true;
    } else if (strcmp(tok, "*") != 0) {
        r->substring = xstrdup(tok);
    }
    return 0;
}

/* The actions a rule holds go together (see rule.h); `seen` has a bit per ACTION given. */
static int rule_check(const struct rule *r, unsigned seen, char *err, size_t err_len)
{
    bool vendor = r->has_ratelimit || r->etag;
    if (r->fault == RULE_FAULT_NONE && r->delay_ms == 0 && r->bandwidth == 0 && !vendor)
        return rule_fail(err, err_len, r->text,
                         "no action (want a fault, delay_ms=, bandwidth=, ratelimit= or etag)%s",
                         "");
    if (r->retry_after_s >= 0 && r->fault != RULE_FAULT_STATUS)
        return rule_fail(err, err_len, r->text, "retry_after needs status=%s", "");
    if (r->code[0] != '\0' && r->fault != RULE_FAULT_STATUS)
        return rule_fail(err, err_len, r->text, "code needs status=%s", "");
    if (vendor &&
        (r->fault != RULE_FAULT_NONE || (seen & ((1U << ACTION_RATE) | (1U << ACTION_COUNT))) != 0))
        return rule_fail(err, err_len, r->text,
                         "ratelimit and etag act on every request: no fault, rate= or count=%s",
                         "");
    return 0;
}

int rule_parse(const char *line, struct rule **out, char *err, size_t err_len)
{
    int rc = 0;
    char *copy = NULL;
    struct rule *r = NULL;
    char *toks[RULE_TOKENS_MAX];
    size_t n = 0;
    unsigned seen = 0;

    *out = NULL;
    size_t len = strlen(line);
    if (len > RULE_LINE_MAX) {
        snprintf(err, err_len, "bad rule: longer than %d bytes", RULE_LINE_MAX);
        return FERRY_EINVAL;
    }
    while (len > 0 && isspace((unsigned char)line[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*line)) {
        line++;
        len--;
    }
    r = xcalloc(1, sizeof(*r));
    r->text = xstrndup(line, len);
    r->rate = 1.0;
    r->retry_after_s = -1;
    r->count_left = -1;

    copy = xstrdup(r->text);
    for (char *save = NULL, *t = strtok_r(copy, " \t", &save); t;
         t = strtok_r(NULL, " \t", &save)) {
        if (n == RULE_TOKENS_MAX) {
            rc = rule_fail(err, err_len, r->text, "more than %s tokens", "16");
            goto out;
        }
        toks[n++] = t;
    }
    if (n < 3) {
        rc = rule_fail(err, err_len, r->text, "want METHOD PATH ACTION... (got %s)",
                       n == 0 ? "nothing" : "too few words");
        goto out;
    }

    rc = rule_parse_method(r, toks[0], err, err_len);
    if (rc == 0)
        rc = rule_parse_path(r, toks[1], err, err_len);
    if (rc < 0)
        goto out;

    for (size_t i = 2; i < n; i++) {
        rc = rule_parse_action(r, toks[i], &seen, err, err_len, r->text);
        if (rc < 0)
            goto out;
    }
    rc = rule_check(r, seen, err, err_len);

out:
    free(copy);
    if (rc < 0) {
        rule_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

bool rule_matches(const struct rule *rule, const char *method, const char *target)
{
    if (rule->method[0] != '\0' && strcmp(rule->method, method) != 0)
        return false;
    if (rule->has_regex)
        return regexec(&rule->regex, target, 0, NULL, 0) == 0;
    if (rule->substring)
        return strstr(target, rule->substring) != NULL;
    return true;
}

void rule_free(struct rule *rule)
{
    if (!rule)
        return;
    if (rule->has_regex)
        regfree(&rule->regex);
    free(rule->substring);
    free(rule->text);
    free(rule);
}
