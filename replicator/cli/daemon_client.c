/*
 * daemon_client: blocking requests to a running daemon; see daemon_client.h.
 */
#include "cli/daemon_client.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/human.h"
#include "common/secret.h"
#include "common/xalloc.h"

void daemon_client_init(struct daemon_client *c, const char *server, const struct config *cfg,
                        const char *token)
{
    if (server != NULL) {
        c->base = xstrdup(server);
        size_t n = strlen(c->base);
        while (n > 0 && c->base[n - 1] == '/')
            c->base[--n] = '\0';
    } else {
        c->base = xasprintf("http://%s", cfg->listen);
    }
    c->auth =
        token != NULL && token[0] != '\0' ? xasprintf("Authorization: Bearer %s", token) : NULL;
    c->timeout_ms = DAEMON_CLIENT_TIMEOUT_MS;
    c->body_max = DAEMON_CLIENT_BODY_MAX;
}

void daemon_client_release(struct daemon_client *c)
{
    free(c->base);
    c->base = NULL;
    secret_free(c->auth);
    c->auth = NULL;
}

const char *daemon_client_api_token(const struct config *cfg)
{
    if (cfg != NULL && cfg->api_token != NULL)
        return cfg->api_token;
    return getenv("FERRY_API_TOKEN");
}

void daemon_answer_release(struct daemon_answer *a)
{
    free(a->body);
    cJSON_Delete(a->json);
    memset(a, 0, sizeof(*a));
}

/* The body as it arrives, into a capped buffer; past the cap, curl stops. */
struct daemon_body {
    struct buf buf;
    bool too_big;
};

static size_t daemon_client_body(char *data, size_t size, size_t n, void *arg)
{
    struct daemon_body *b = arg;
    if (buf_append(&b->buf, data, size * n) < 0) {
        b->too_big = true;
        return 0;
    }
    return size * n;
}

/* Set option `opt` on `h` unless an earlier one failed; *cc keeps the first failure. */
#define DAEMON_CLIENT_SET(h, cc, opt, val)                                                         \
    do {                                                                                           \
        if (*(cc) == CURLE_OK)                                                                     \
            *(cc) = curl_easy_setopt((h), opt, (val));                                             \
    } while (0)

/* The options of one request on `h`: returns CURLE_OK, or the first that could not be set. */
static CURLcode daemon_client_setup(CURL *h, const struct daemon_client *c, const char *url,
                                    struct curl_slist *headers, const char *post,
                                    struct daemon_body *body, char *errbuf)
{
    CURLcode cc = CURLE_OK;
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_ERRORBUFFER, errbuf);
    if (post != NULL)
        DAEMON_CLIENT_SET(h, &cc, CURLOPT_POSTFIELDS, post);
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_URL, url);
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_HTTPHEADER, headers);
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_WRITEFUNCTION, daemon_client_body);
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_WRITEDATA, body);
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_CONNECTTIMEOUT_MS, (long)DAEMON_CLIENT_CONNECT_TIMEOUT_MS);
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_NOSIGNAL, 1L);
    DAEMON_CLIENT_SET(h, &cc, CURLOPT_PROTOCOLS_STR, "http,https");
    return cc;
}

int daemon_client_request(const struct daemon_client *c, const char *path, const char *post,
                          struct daemon_answer *answer, char **error)
{
    struct daemon_body body = {.too_big = false};
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    char *url = xasprintf("%s%s", c->base, path);
    int rc = 0;

    memset(answer, 0, sizeof(*answer));
    *error = NULL;
    buf_init(&body.buf, c->body_max);
    if (c->auth != NULL)
        headers = curl_slist_append(headers, c->auth);
    if (post != NULL)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    CURL *h = curl_easy_init();
    CURLcode cc = h != NULL ? daemon_client_setup(h, c, url, headers, post, &body, errbuf)
                            : CURLE_OUT_OF_MEMORY;
    if (cc == CURLE_OK)
        cc = curl_easy_perform(h);
    if (body.too_big) {
        char cap[32];
        human_bytes(cap, sizeof(cap), (double)c->body_max);
        *error = xasprintf("the answer is larger than %s", cap);
        rc = FERRY_ETOOBIG;
    } else if (cc != CURLE_OK) {
        *error = xstrdup(errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = FERRY_ECONNECT;
    } else {
        if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &answer->status) != CURLE_OK)
            answer->status = 0;
        answer->body = buf_detach(&body.buf, &answer->len);
        answer->json = cJSON_ParseWithLength(answer->body, answer->len);
    }
    curl_easy_cleanup(h);
    /* The list holds a copy of the Authorization header. */
    for (struct curl_slist *l = headers; l != NULL; l = l->next)
        secret_wipe_str(l->data);
    curl_slist_free_all(headers);
    buf_release(&body.buf);
    free(url);
    return rc;
}

int daemon_client_call(const struct daemon_client *c, const char *path, const char *post,
                       cJSON **json, char **error)
{
    struct daemon_answer a;
    *json = NULL;
    int rc = daemon_client_request(c, path, post, &a, error);
    if (rc < 0) {
        char *why = *error;
        if (rc == FERRY_ETOOBIG)
            *error = xasprintf("%s%s: %s", c->base, path, why);
        else
            *error = xasprintf("%s: %s", c->base, why);
        free(why);
        return rc;
    }
    if (a.status != 200) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(a.json, "error");
        *error = xasprintf("%s%s: HTTP %ld%s%s", c->base, path, a.status,
                           cJSON_IsString(e) ? ": " : "", cJSON_IsString(e) ? e->valuestring : "");
        rc = FERRY_EHTTP;
    } else if (a.json == NULL) {
        *error = xasprintf("%s%s: the answer is not JSON", c->base, path);
        rc = FERRY_EPARSE;
    } else {
        *json = a.json;
        a.json = NULL;
    }
    daemon_answer_release(&a);
    return rc;
}
