#include "config/glob.h"

#include <stdbool.h>
#include <string.h>

/*
 * A pattern is compiled into a row of tokens and matched by simulating the
 * nondeterministic automaton they form: one flag per token says whether the
 * text read so far can end just before it. Each character of the text costs
 * one pass over the tokens, which is what bounds the work to pattern length
 * times text length, where backtracking matchers go exponential on patterns
 * such as "*a*a*a*a*b".
 */

enum glob_kind {
    GLOB_LITERAL,  /* one given character */
    GLOB_ONE,      /* `?`: one character other than '/' */
    GLOB_STAR,     /* `*`: any run without '/' */
    GLOB_GLOBSTAR, /* `**`: any run */
    GLOB_SKIP,     /* no input; lets the next GLOB_GLOBSTAR and '/' be skipped */
};

struct glob_token {
    unsigned char kind;
    char c; /* GLOB_LITERAL only */
};

/* Tokens following a GLOB_SKIP that it lets the automaton jump over. */
#define GLOB_SKIP_SPAN 3

/*
 * Compile `pattern` into `tokens` (room for GLOB_MAX_PATTERN) and return how
 * many there are. A whole path element "**" followed by '/' becomes SKIP,
 * GLOBSTAR, '/', that is "(any run ending in '/')?", so that the element may
 * vanish; no pattern of n bytes needs more than n tokens.
 */
static size_t glob_compile(const char *pattern, size_t len, struct glob_token *tokens)
{
    size_t n = 0;
    size_t i = 0;
    while (i < len) {
        if (pattern[i] == '?') {
            tokens[n++] = (struct glob_token){GLOB_ONE, 0};
            i++;
        } else if (pattern[i] != '*') {
            tokens[n++] = (struct glob_token){GLOB_LITERAL, pattern[i]};
            i++;
        } else {
            size_t end = i;
            while (end < len && pattern[end] == '*')
                end++;
            bool element_start = i == 0 || pattern[i - 1] == '/';
            if (end - i == 1) {
                tokens[n++] = (struct glob_token){GLOB_STAR, 0};
            } else if (element_start && end < len && pattern[end] == '/') {
                tokens[n++] = (struct glob_token){GLOB_SKIP, 0};
                tokens[n++] = (struct glob_token){GLOB_GLOBSTAR, 0};
                tokens[n++] = (struct glob_token){GLOB_LITERAL, '/'};
                end++;
            } else {
                tokens[n++] = (struct glob_token){GLOB_GLOBSTAR, 0};
            }
            i = end;
        }
    }
    return n;
}

/*
 * Add every state reachable from the active ones without reading input. All
 * such moves go forward, so one pass in token order reaches the closure.
 */
static void glob_close(const struct glob_token *tokens, size_t n, bool *active)
{
    for (size_t i = 0; i < n; i++) {
        if (!active[i])
            continue;
        switch (tokens[i].kind) {
        case GLOB_STAR:
        case GLOB_GLOBSTAR:
            active[i + 1] = true;
            break;
        case GLOB_SKIP:
            active[i + 1] = true;
            active[i + GLOB_SKIP_SPAN] = true;
            break;
        default:
            break;
        }
    }
}

bool glob_match(const char *pattern, const char *text)
{
    struct glob_token tokens[GLOB_MAX_PATTERN] = {{0}};
    bool states[2][GLOB_MAX_PATTERN + 1];

    if (pattern == NULL || text == NULL)
        return false;
    size_t len = strnlen(pattern, GLOB_MAX_PATTERN + 1);
    if (len > GLOB_MAX_PATTERN)
        return false;
    size_t n = glob_compile(pattern, len, tokens);

    bool *active = states[0];
    bool *next = states[1];
    memset(active, 0, n + 1);
    active[0] = true;
    glob_close(tokens, n, active);
    for (const char *t = text; *t != '\0'; t++) {
        bool any = false;
        memset(next, 0, n + 1);
        for (size_t i = 0; i < n; i++) {
            if (!active[i])
                continue;
            switch (tokens[i].kind) {
            case GLOB_LITERAL:
                if (*t == tokens[i].c)
                    next[i + 1] = any = true;
                break;
            case GLOB_ONE:
                if (*t != '/')
                    next[i + 1] = any = true;
                break;
            case GLOB_STAR:
                if (*t != '/')
                    next[i] = any = true;
                break;
            case GLOB_GLOBSTAR:
                next[i] = any = true;
                break;
            default:
                break;
            }
        }
        if (!any)
            return false;
        glob_close(tokens, n, next);
        bool *swap = active;
        active = next;
        next = swap;
    }
    return active[n];
}

bool glob_select(char *const *patterns, size_t n, const char *text)
{
    bool included = false;

    if (text == NULL)
        return false;
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        const char *pattern = patterns[i];
        if (pattern == NULL)
            continue;
        if (pattern[0] == '!') {
            if (glob_match(pattern + 1, text))
                return false;
        } else if (!included) {
            included = glob_match(pattern, text);
        }
    }
    return included;
}
