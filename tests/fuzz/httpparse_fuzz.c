/*
 * Fuzz target for the header parsers of replicator/registry/httpparse.h: Link,
 * Location (URL resolution), Range, Retry-After, and the raw header lines
 * libcurl hands over.
 *
 * Input: one raw header line as libcurl delivers it ("Link: <...>;
 * rel=\"next\"\r\n"). The line goes through httpparse_header_is() for each
 * header name, and a matching value to its parser; the whole input (up to
 * its first NUL) also goes to every parser, as a value, as a reference and
 * as a base URL, so that the corpus drives each of them whatever it holds.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry/httpparse.h"
#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The URL a registry request went to, as bases for relative references. */
static const char *const bases[] = {
    "https://registry.example:5000/v2/team/app/tags/list?n=100",
    "http://127.0.0.1:5000/v2/_catalog",
    "http://[::1]:8080/v2/app/blobs/uploads/",
};

/* Clocks for Retry-After: the epoch, now-ish, and both ends of int64_t. */
static const int64_t clocks[] = {0, 1714557600, INT64_MAX, INT64_MIN};

/*
 * What a resolved URL must be: absolute http(s) (the scheme in any case, as
 * RFC 3986 allows and libcurl takes it), printable, bounded, without
 * a fragment, and kept as it is when resolved again.
 */
static void check_url(char *url)
{
    if (url == NULL)
        return;
    size_t len = strlen(url);
    if (len > HTTPPARSE_MAX_URL)
        abort();
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        abort();
    for (const char *c = url; *c != '\0'; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#')
            abort();
    }
    char *again = httpparse_url_resolve(url, url);
    if (again == NULL || strcmp(again, url) != 0)
        abort();
    free(again);
    free(url);
}

static void parse_value(const char *value)
{
    uint64_t offset;
    uint64_t delay;

    /* The offset after "0-END" is END + 1: never 0, which would mean an overflow. */
    if (httpparse_range_end(value, &offset) == 0 && offset == 0)
        abort();
    /* Past 255 bytes a value is refused whatever it says. */
    for (size_t i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++)
        if (httpparse_retry_after(value, clocks[i], &delay) == 0 && strlen(value) >= 256)
            abort();
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
        check_url(httpparse_url_resolve(bases[i], value));
        check_url(httpparse_link_next(value, bases[i]));
    }
    check_url(httpparse_url_resolve(value, "../x/./y?n=1#f"));
    check_url(httpparse_url_resolve(value, "?last=b"));
    check_url(httpparse_url_resolve(value, "//other.example/v2/"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"Link", "Location", "Range", "Retry-After"};
    const char *line = (const char *)data;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *value = NULL;
        size_t value_len = 0;
        if (!httpparse_header_is(line, size, names[i], &value, &value_len))
            continue;
        if (value == NULL || value < line || value + value_len > line + size)
            abort();
        char *copy = xstrndup(value, value_len);
        parse_value(copy);
        free(copy);
    }

    char *text = xstrndup(line, size);
    parse_value(text);
    free(text);
    return 0;
}
