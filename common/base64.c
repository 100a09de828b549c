#include "common/base64.h"

#include <stdint.h>
#include <stdlib.h>

#include "common/secret.h"
#include "common/xalloc.h"

static const char base64_table[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char base64url_table[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *base64_encode_with(const void *data, size_t len, const char *table, bool pad)
{
    const unsigned char *s = data;
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len)
            v |= (uint32_t)s[i + 2];
        out[o++] = table[(v >> 18) & 63];
        out[o++] = table[(v >> 12) & 63];
        if (i + 1 < len || pad)
            out[o++] = i + 1 < len ? table[(v >> 6) & 63] : '=';
        if (i + 2 < len || pad)
            out[o++] = i + 2 < len ? table[v & 63] : '=';
        secret_wipe(&v, sizeof(v));
    }
    out[o] = '\0';
    return out;
}

char *base64_encode(const void *data, size_t len)
{
    return base64_encode_with(data, len, base64_table, true);
}

char *base64url_encode(const void *data, size_t len)
{
    return base64_encode_with(data, len, base64url_table, false);
}

static int base64_value(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || (url && c == '-'))
        return 62;
    if (c == '/' || (url && c == '_'))
        return 63;
    return -1;
}

char *base64_decode_text(const char *in, size_t len, bool url)
{
    size_t pad = 0;
    while (len > 0 && pad < 2 && in[len - 1] == '=') {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0))
        return NULL;
    char *out = xmalloc(len / 4 * 3 + 3);
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = base64_value(in[i], url);
        if (v < 0)
            goto bad;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char c = (char)((acc >> bits) & 0xff);
            if (c == '\0')
                goto bad;
            out[n++] = c;
        }
    }
    out[n] = '\0';
    secret_wipe(&acc, sizeof(acc));
    return out;

bad:
    secret_wipe(&acc, sizeof(acc));
    secret_wipe(out, n);
    free(out);
    return NULL;
}
