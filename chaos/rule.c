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

/* Applies one ACTION token to the rule; on error fills `err`. */
static int rule_parse_action(struct rule *r, const char *tok, unsigned *seen, char *err,
                             size_t err_len, const char *line)
{
    const char *eq = strchr(tok, '=');
    size_t klen = eq ? (size_t)(eq - tok) : strlen(tok);
    const char *val = eq ? eq + 1 : NULL;
    uint64_t v;

    static const char *const keys[] = {"status", "retry_after", "rate",     "reset",     "truncate",
                                       "flip",   "blackhole",   "delay_ms", "bandwidth", "count"};
    size_t k;
    for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        if (strlen(keys[k]) == klen && strncmp(keys[k], tok, klen) == 0)
            break;
    }
    if (k == sizeof(keys) / sizeof(keys[0]))
        return rule_fail(err, err_len, line,
                         "unknown action '%s' (want status=, retry_after=, rate=, reset=, "
                         "truncate, flip, blackhole, delay_ms=, bandwidth=, count=)",
                         tok);
    if (*seen & (1U << k))
        return rule_fail(err, err_len, line, "'%s' given twice", tok);
    *seen |= 1U << k;
    bool takes_value = k != 4 && k != 5 && k != 6; /* truncate, flip, blackhole take none */
    if (takes_value && (val == NULL || *val == '\0'))
        return rule_fail(err, err_len, line, "'%s' needs a value (key=value)", tok);
    if (!takes_value && val != NULL)
        return rule_fail(err, err_len, line, "'%s' takes no value", tok);

    switch (k) {
    case 0:
        if (rule_parse_u64(val, false, 100, 599, &v) < 0)
            return rule_fail(err, err_len, line, "'%s': status wants 100..599", tok);
        r->status = (int)v;
        return rule_set_fault(r, RULE_FAULT_STATUS, tok, err, err_len, line);
    case 1:
        if (rule_parse_u64(val, false, 0, 86400, &v) < 0)
            return rule_fail(err, err_len, line, "'%s': retry_after wants 0..86400 seconds", tok);
        r->retry_after_s = (int)v;
        return 0;
    case 2: {
        char *end;
        errno = 0;
        double d = strtod(val, &end);
        if (errno != 0 || *end != '\0' || !(d >= 0.0 && d <= 1.0))
            return rule_fail(err, err_len, line, "'%s': rate wants 0..1", tok);
        r->rate = d;
        return 0;
    }
    case 3:
        if (strcmp(val, "before") == 0)
            return rule_set_fault(r, RULE_FAULT_RESET_BEFORE, tok, err, err_len, line);
        if (strcmp(val, "mid") == 0)
            return rule_set_fault(r, RULE_FAULT_RESET_MID, tok, err, err_len, line);
        return rule_fail(err, err_len, line, "'%s': reset wants before or mid", tok);
    case 4:
        return rule_set_fault(r, RULE_FAULT_TRUNCATE, tok, err, err_len, line);
    case 5:
        return rule_set_fault(r, RULE_FAULT_FLIP, tok, err, err_len, line);
    case 6:
        return rule_set_fault(r, RULE_FAULT_BLACKHOLE, tok, err, err_len, line);
    case 7:
        if (rule_parse_u64(val, false, 0, 600000, &v) < 0)
            return rule_fail(err, err_len, line, "'%s': delay_ms wants 0..600000", tok);
        r->delay_ms = v;
        return 0;
    case 8:
        if (rule_parse_u64(val, true, 1, 1ULL << 40, &v) < 0)
            return rule_fail(err, err_len, line,
                             "'%s': bandwidth wants bytes per second (K, M, G suffixes)", tok);
        r->bandwidth = v;
        return 0;
    default:
        if (rule_parse_u64(val, false, 1, INT64_MAX, &v) < 0)
            return rule_fail(err, err_len, line, "'%s': count wants a positive number", tok);
        r->count_left = (int64_t)v;
        return 0;
    }
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

    if (strcmp(toks[0], "*") != 0) {
        size_t mlen = strlen(toks[0]);
        bool ok = mlen > 0 && mlen < sizeof(r->method);
        for (size_t i = 0; ok && i < mlen; i++)
            ok = isupper((unsigned char)toks[0][i]);
        if (!ok) {
            rc =
                rule_fail(err, err_len, r->text, "method '%s' is not an HTTP method or *", toks[0]);
            goto out;
        }
        memcpy(r->method, toks[0], mlen + 1);
    }

    if (toks[1][0] == '~') {
        int rerr = regcomp(&r->regex, toks[1] + 1, REG_EXTENDED | REG_NOSUB);
        if (rerr != 0) {
            char msg[160];
            regerror(rerr, &r->regex, msg, sizeof(msg));
            char why[200];
            snprintf(why, sizeof(why), "path regex: %s", msg);
            rc = rule_fail(err, err_len, r->text, "%s", why);
            goto out;
        }
        r->has_regex = true;
    } else if (strcmp(toks[1], "*") != 0) {
        r->substring = xstrdup(toks[1]);
    }

    for (size_t i = 2; i < n; i++) {
        rc = rule_parse_action(r, toks[i], &seen, err, err_len, r->text);
        if (rc < 0)
            goto out;
    }
    if (r->fault == RULE_FAULT_NONE && r->delay_ms == 0 && r->bandwidth == 0) {
        rc = rule_fail(err, err_len, r->text, "no action (want a fault, delay_ms= or bandwidth=)%s",
                       "");
        goto out;
    }
    if (r->retry_after_s >= 0 && r->fault != RULE_FAULT_STATUS) {
        rc = rule_fail(err, err_len, r->text, "retry_after needs status=%s", "");
        goto out;
    }

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
