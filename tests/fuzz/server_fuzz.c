/*
 * Fuzz target for the listener's header checks (replicator/daemon/server.h):
 * server_host_allowed() and server_media_type_json().
 *
 * Input: a header value (up to its first NUL byte, as a header reaches the
 * checks), taken as a Host header for listeners on loopback, on every
 * address and on one address, with and without server_names, and as a
 * Content-Type. Checks the contract too: a Host let in names the listen port
 * (8780 here) unless it is one of the names; a type let in is JSON.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "daemon/server.h"
#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The header ends in ":PORT" naming port 8780 (leading zeros allowed). */
static bool ends_with_port(const char *host)
{
    const char *colon = strrchr(host, ':');
    if (colon == NULL || colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return false;
    return strtol(colon + 1, NULL, 10) == 8780;
}

/* Only what a Host of a name, an IPv4 or a bracketed IPv6 address and a port holds. */
static bool host_chars(const char *host)
{
    return strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
           strlen(host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *value = xstrndup((const char *)data, size);
    char *names[] = {"ferry.example.com", "[fd00::1]"};
    static const char *const listens[] = {"127.0.0.1", "localhost", "::1",    "0.0.0.0",
                                          "::",        "10.0.0.5",  "fd00::5"};

    for (size_t i = 0; i < sizeof(listens) / sizeof(listens[0]); i++) {
        if (server_host_allowed(listens[i], 8780, value, NULL, 0)) {
            if (!ends_with_port(value) || !host_chars(value))
                abort();
        }
        if (server_host_allowed(listens[i], 8780, value, names, 2)) {
            bool named = strncasecmp(value, names[0], strlen(names[0])) == 0 ||
                         strncasecmp(value, "[fd00::1]", 9) == 0;
            if (!host_chars(value) || (!named && !ends_with_port(value)))
                abort();
        }
        /* Without a port, only the default ports match. */
        if (server_host_allowed(listens[i], 80, value, NULL, 0) && strchr(value, ']') == NULL &&
            strchr(value, ':') != NULL && strtol(strrchr(value, ':') + 1, NULL, 10) != 80)
            abort();
    }
    if (server_media_type_json(value)) {
        size_t type = strcspn(value, ";");
        char *lower = xstrndup(value, type);
        for (char *c = lower; *c != '\0'; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        if (strstr(lower, "json") == NULL || strchr(lower, '/') == NULL)
            abort();
        free(lower);
    }
    free(value);
    return 0;
}
