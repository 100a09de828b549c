/*
 * registry_auth.c: how the registry's requests authenticate. Basic
 * credentials go out once a challenge names Basic; a bearer challenge names
 * a token realm, whose tokens are cached per set of scopes until they
 * expire, and fetched once for all the ops waiting for them. Credentials
 * reach only the registry's own origin, and a realm only over HTTPS (or
 * plain HTTP when the registry itself is).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "registry/credentials.h"
#include "registry/regerror.h"
#include "registry/registry_int.h"
#include "registry/wwwauth.h"

/* A token response is small; a larger one is refused. */
#define TOKEN_BODY_MAX (64 * 1024)
/* A token URL (realm, service and scopes) is capped like a header. */
#define TOKEN_URL_MAX (64 * 1024)
/* A token longer than this is not a token. */
#define TOKEN_LEN_MAX 16384
/* A token's life when its response names none (or less than a second), and the longest kept. */
#define TOKEN_LIFE_DEFAULT_S 60
#define TOKEN_LIFE_MAX_S     86400
/* Tokens are renewed a tenth of their life early, at most this early. */
#define TOKEN_RENEW_MARGIN_MAX_MS 5000
/* A request is sent again after at most this many challenges (discovery, a refused token);
 * credentials renewed once on a refusal come on top. */
#define AUTH_TRIES_MAX 2

/* A cached token for one set of scopes; single-flight while it is fetched. */
struct registry_token {
    struct registry *reg;
    char *scope;
    char *token;
    uint64_t expires_ms; /* uv_now() time after which it is not used */
    bool fetching;
    uint64_t creds_gen; /* the credentials the fetch under way sent */
    bool creds_renewed; /* refused once and fetched again during this fetch */
    char *form;         /* a refresh_token grant's body (a secret), while it is sent */
    size_t form_len;
    struct registry_op **waiters;
    size_t n_waiters;
    struct registry_token *next;
};

/* ---- Basic ---- */

char *registry_auth_basic_header(const char *username, const char *password)
{
    char *pair = xasprintf("%s:%s", username, password);
    char *enc = base64_encode(pair, strlen(pair));
    char *header = xasprintf("Authorization: Basic %s", enc);
    /* Only the header remains; the pair and its encoding are wiped. */
    secret_free(pair);
    secret_free(enc);
    return header;
}

/* ---- tokens ---- */

/* Append `s` percent-encoded (RFC 3986 unreserved characters stay); 0 or FERRY_ETOOBIG. */
static int buf_append_escaped(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        int rc = plain ? buf_append(b, p, 1) : buf_append(b, enc, 3);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static struct registry_token *token_find(struct registry *reg, const char *scope)
{
    for (struct registry_token *t = reg->tokens; t != NULL; t = t->next)
        if (strcmp(t->scope, scope) == 0)
            return t;
    struct registry_token *t = xcalloc(1, sizeof(*t));
    t->reg = reg;
    t->scope = xstrdup(scope);
    t->next = reg->tokens;
    reg->tokens = t;
    return t;
}

/* Keep the token of a 200 answer's body; NULL, or why it holds none (caller frees). */
static char *token_parse(struct registry_token *t, const struct buf *body)
{
    char *error = NULL;
    cJSON *json = cJSON_ParseWithLength(body->data, body->len);
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(json, "token");
    if (!cJSON_IsString(tok) || tok->valuestring[0] == '\0')
        tok = cJSON_GetObjectItemCaseSensitive(json, "access_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(json, "expires_in");
    if (cJSON_IsString(tok) && tok->valuestring[0] != '\0' &&
        strlen(tok->valuestring) < TOKEN_LEN_MAX) {
        double expires =
            cJSON_IsNumber(exp) && exp->valuedouble >= 1 ? exp->valuedouble : TOKEN_LIFE_DEFAULT_S;
        if (expires > TOKEN_LIFE_MAX_S)
            expires = TOKEN_LIFE_MAX_S;
        /* Renew a little early so that no request leaves with a dying token. */
        uint64_t life_ms = (uint64_t)(expires * 1000.0);
        uint64_t margin =
            life_ms / 10 < TOKEN_RENEW_MARGIN_MAX_MS ? life_ms / 10 : TOKEN_RENEW_MARGIN_MAX_MS;
        secret_free(t->token);
        t->token = xstrdup(tok->valuestring);
        t->expires_ms = uv_now(t->reg->loop) + life_ms - margin;
    } else {
        error = xstrdup("token response is not a token (no \"token\" string in JSON)");
    }
    /* The parsed document holds the token too. */
    if (cJSON_IsString(tok))
        secret_wipe_str(tok->valuestring);
    cJSON_Delete(json);
    return error;
}

/*
 * Take the answer of a token request into `t`: NULL, or why there is no
 * token (caller frees), with *retryable true when a later try may get one.
 */
static char *token_take(struct registry_token *t, struct http_request *req, int rc, bool *retryable)
{
    long status = http_request_status(req);
    const struct buf *body = http_request_response_body(req);

    *retryable = retry_transient(rc, status, 0);
    if (rc < 0)
        return xasprintf("token request failed: %s", ferry_strerror(rc));
    if (status != 200) {
        char *summary = body->len ? regerror_summary(body->data, body->len) : NULL;
        struct credentials_info info = {0};
        if (t->reg->creds != NULL)
            credentials_get_info(t->reg->creds, &info);
        bool refused = (status == 401 || status == 403) && info.source != NULL;
        char *error = xasprintf("token request denied: HTTP %ld%s%s%s%s%s%s", status,
                                summary ? " (" : "", summary ? summary : "", summary ? ")" : "",
                                refused ? ": the credentials from " : "",
                                refused ? info.source : "", refused ? " were refused" : "");
        free(summary);
        return error;
    }
    return token_parse(t, body);
}

/* The fetch of `t` ended: every waiter goes on with its token, or fails with `error`. */
static void token_answer_waiters(struct registry_token *t, const char *error, bool retryable)
{
    struct registry_op **waiters = t->waiters;
    size_t n = t->n_waiters;
    t->fetching = false;
    t->creds_renewed = false; /* the next fetch may renew them again */
    t->waiters = NULL;
    t->n_waiters = 0;
    for (size_t i = 0; i < n; i++) {
        struct registry_op *op = waiters[i];
        if (error == NULL) {
            registry_op_attempt(op);
        } else if (retryable && registry_op_may_retry(op)) {
            registry_op_retry(op, registry_backoff_ms(op->reg, op->attempt));
        } else {
            free(op->auth_error);
            op->auth_error = xstrdup(error);
            registry_op_finish(op, NULL, retryable ? FERRY_ECONNECT : FERRY_EAUTH);
        }
    }
    free(waiters);
}

static void token_fetch(struct registry *reg, struct registry_token *t);

static void token_form_free(struct registry_token *t)
{
    if (t->form != NULL)
        secret_wipe(t->form, t->form_len);
    free(t->form);
    t->form = NULL;
    t->form_len = 0;
}

static void token_fetch_done(struct http_request *req, int rc, void *arg)
{
    struct registry_token *t = arg;
    struct registry *reg = t->reg;
    long status = rc < 0 ? 0 : http_request_status(req);
    token_form_free(t);
    /* The realm refused the credentials: renewed once (they may have expired), then asked again. */
    if (status == 401 && reg->creds != NULL && !t->creds_renewed &&
        credentials_refused(reg->creds, t->creds_gen)) {
        log_info("token realm refused the credentials; renewing them registry=%s", reg->host);
        http_request_free(req);
        t->creds_renewed = true;
        token_fetch(reg, t);
        return;
    }
    bool retryable = false;
    char *error = token_take(t, req, rc, &retryable);
    /* The body held the token. */
    const struct buf *body = http_request_response_body(req);
    if (body->data != NULL)
        secret_wipe(body->data, body->len);
    http_request_free(req);
    t->creds_renewed = false;
    token_answer_waiters(t, error, retryable);
    free(error);
}

/*
 * The realm's URL with the service and one scope parameter per scope (a
 * mount needs two scopes in one token), or NULL when it would pass the cap.
 * Caller frees.
 */
static char *token_url(const struct registry *reg, const char *scope)
{
    struct buf url;
    int rc;
    buf_init(&url, TOKEN_URL_MAX);
    rc = buf_append_str(&url, reg->realm);
    if (rc == 0)
        rc = buf_append_str(&url, strchr(reg->realm, '?') ? "&" : "?");
    if (rc == 0 && reg->service != NULL) {
        rc = buf_append_str(&url, "service=");
        if (rc == 0)
            rc = buf_append_escaped(&url, reg->service);
    }
    char *scopes = xstrdup(scope);
    char *save = NULL;
    for (char *s = strtok_r(scopes, " ", &save); rc == 0 && s != NULL;
         s = strtok_r(NULL, " ", &save)) {
        rc = buf_append_str(&url, "&scope=");
        if (rc == 0)
            rc = buf_append_escaped(&url, s);
    }
    free(scopes);
    if (rc < 0) {
        buf_release(&url);
        return NULL;
    }
    return buf_detach(&url, NULL);
}

/*
 * The form of an OAuth2 refresh_token grant (what `docker login` does with
 * an identity token): the service, the scopes space-separated, the token
 * and a client id. NULL when it would pass the cap. Caller wipes and frees.
 */
static char *token_form(const struct registry *reg, const char *scope, const char *refresh_token)
{
    struct buf form;
    buf_init(&form, TOKEN_URL_MAX);
    /* Room for all of it at once: a buffer that grew would leave copies of the token behind. */
    size_t need = 128 + 3 * (strlen(scope) + strlen(refresh_token) +
                             (reg->service != NULL ? strlen(reg->service) : 0));
    if (need <= TOKEN_URL_MAX) {
        form.data = xmalloc(need + 1);
        form.data[0] = '\0';
        form.alloc = need + 1;
    }
    int rc = buf_append_str(&form, "grant_type=refresh_token&client_id=ferry");
    if (rc == 0 && reg->service != NULL) {
        rc = buf_append_str(&form, "&service=");
        if (rc == 0)
            rc = buf_append_escaped(&form, reg->service);
    }
    if (rc == 0 && scope[0] != '\0') {
        rc = buf_append_str(&form, "&scope=");
        if (rc == 0)
            rc = buf_append_escaped(&form, scope);
    }
    if (rc == 0)
        rc = buf_append_str(&form, "&refresh_token=");
    if (rc == 0)
        rc = buf_append_escaped(&form, refresh_token);
    if (rc < 0) {
        if (form.data != NULL)
            secret_wipe(form.data, form.len);
        buf_release(&form);
        return NULL;
    }
    return buf_detach(&form, NULL);
}

/* Ask the realm for `t`'s token with `cred` (username NULL: anonymously). */
static void token_request(struct registry *reg, struct registry_token *t,
                          const struct credential *cred)
{
    bool refresh = cred->username != NULL && cred->identity_token;
    char *url = refresh ? xstrdup(reg->realm) : token_url(reg, t->scope);
    t->form = refresh ? token_form(reg, t->scope, cred->secret) : NULL;
    if (url == NULL || (refresh && t->form == NULL)) {
        free(url);
        token_form_free(t);
        token_answer_waiters(t, "token request refused: the realm's URL is too long", false);
        return;
    }
    struct http_request *req = http_request_new(reg->http, refresh ? "POST" : "GET", url);
    free(url);
    t->creds_gen = cred->generation;
    if (refresh) {
        t->form_len = strlen(t->form);
        http_request_add_header(req, "Content-Type: application/x-www-form-urlencoded");
        http_request_set_body(req, t->form, t->form_len);
    } else if (cred->username != NULL) {
        char *basic = registry_auth_basic_header(cred->username, cred->secret);
        http_request_add_header(req, basic);
        secret_free(basic);
    }
    http_request_set_body_limit(req, TOKEN_BODY_MAX);
    /* A refresh token is not sent on to wherever a redirect points. */
    http_request_follow_redirects(req, !refresh);
    reg->stats.token_fetches++;
    int rc = http_request_start(req, token_fetch_done, t);
    if (rc < 0)
        token_fetch_done(req, rc, t);
}

static void token_creds_ready(int rc, const char *error, const struct credential *cred, void *arg)
{
    struct registry_token *t = arg;
    if (rc < 0) {
        token_answer_waiters(t, error, false);
        return;
    }
    token_request(t->reg, t, cred);
}

static void token_fetch(struct registry *reg, struct registry_token *t)
{
    struct credential cred = {0};
    t->fetching = true;
    if (reg->creds != NULL && !credentials_current(reg->creds, &cred)) {
        credentials_fetch(reg->creds, reg->loop, token_creds_ready, t);
        return;
    }
    token_request(reg, t, &cred);
}

/* `op` waits for the token of `t`, fetched now unless it already is. */
static void token_wait(struct registry *reg, struct registry_token *t, struct registry_op *op)
{
    t->waiters = xrealloc(t->waiters, (t->n_waiters + 1) * sizeof(*t->waiters));
    t->waiters[t->n_waiters++] = op;
    if (!t->fetching)
        token_fetch(reg, t);
}

/* ---- what each attempt sends ---- */

/*
 * Is `url` at the registry's own origin (its scheme, host and port, exactly
 * as configured)? Credentials go nowhere else: not to a host a Link, a
 * Location or a redirect names.
 */
static bool registry_own_origin(const struct registry *reg, const char *url)
{
    size_t n = strlen(reg->base);
    return url != NULL && strncmp(url, reg->base, n) == 0 &&
           (url[n] == '\0' || url[n] == '/' || url[n] == '?');
}

/* Fresh credentials for a Basic registry are there: send `op` again, or fail it. */
static void basic_creds_ready(int rc, const char *error, const struct credential *cred, void *arg)
{
    struct registry_op *op = arg;
    (void)cred;
    if (rc < 0) {
        free(op->auth_error);
        op->auth_error = xstrdup(error);
        registry_op_finish(op, NULL, FERRY_EAUTH);
        return;
    }
    registry_op_attempt(op);
}

bool registry_auth_prepare(struct registry_op *op, char **header)
{
    struct registry *reg = op->reg;

    *header = NULL;
    if (reg->auth == AUTH_BEARER && reg->realm != NULL) {
        struct registry_token *t = token_find(reg, op->scope);
        if (t->token == NULL || uv_now(reg->loop) >= t->expires_ms) {
            token_wait(reg, t, op);
            return false;
        }
        *header = xasprintf("Authorization: Bearer %s", t->token);
        op->sent_bearer = true;
    } else if (reg->auth == AUTH_BASIC && reg->creds != NULL) {
        struct credential cred;
        if (!credentials_current(reg->creds, &cred)) {
            credentials_fetch(reg->creds, reg->loop, basic_creds_ready, op);
            return false;
        }
        /* An identity token goes only to a token realm, never as a password. */
        if (cred.username != NULL && !cred.identity_token) {
            *header = registry_auth_basic_header(cred.username, cred.secret);
            op->sent_basic = true;
            op->creds_gen = cred.generation;
        }
    }
    if (*header != NULL && !registry_own_origin(reg, op->url)) {
        log_warn("credentials withheld: the URL is not at the registry's origin registry=%s",
                 reg->host);
        op->sent_bearer = op->sent_basic = false;
        secret_free(*header);
        *header = NULL;
    }
    return true;
}

/* ---- challenges ---- */

/*
 * May a challenge's realm have the token request (and the Basic credentials
 * with it)? Over HTTPS always; over plain HTTP only when the registry itself
 * is plain HTTP (by configuration, or loopback).
 */
static bool registry_realm_allowed(const struct registry *reg, const char *realm)
{
    if (strncasecmp(realm, "https://", 8) == 0)
        return true;
    return strncasecmp(realm, "http://", 7) == 0 && strncmp(reg->base, "http://", 7) == 0;
}

/* A bearer challenge with a realm: learn it; true when the op should be sent again. */
static bool registry_auth_bearer(struct registry_op *op, const struct wwwauth *challenge)
{
    struct registry *reg = op->reg;

    if (!registry_realm_allowed(reg, challenge->realm)) {
        /* The token request carries the registry's Basic credentials: not
         * over plain HTTP unless the registry itself is. */
        free(op->auth_error);
        op->auth_error = xasprintf("token realm %s refused: it must be an https:// URL "
                                   "(http:// only for a plain-HTTP registry), or the "
                                   "credentials would cross the network in clear",
                                   challenge->realm);
        log_warn("token realm refused registry=%s: not an https:// URL", reg->host);
        return false;
    }
    free(reg->realm);
    free(reg->service);
    reg->realm = xstrdup(challenge->realm);
    reg->service = xstrdup(challenge->service);
    reg->auth = AUTH_BEARER;
    struct registry_token *t = token_find(reg, op->scope);
    if (op->sent_bearer) {
        /* The token we sent was refused: forget it and ask once more. */
        secret_free(t->token);
        t->token = NULL;
    }
    if (op->scope[0] == '\0' && challenge->scope != NULL) {
        free(op->scope);
        op->scope = xstrdup(challenge->scope);
    }
    return true;
}

/*
 * A Basic challenge: the first one switches the registry to Basic; one to
 * credentials sent renews them once (they may have expired, or the password
 * file changed), then the request fails naming where they came from.
 */
static bool registry_auth_basic_refused(struct registry_op *op, bool *renewed)
{
    struct registry *reg = op->reg;
    struct credential cred;
    bool known = credentials_current(reg->creds, &cred);
    reg->auth = AUTH_BASIC;
    /* Send what the challenge asks for, unless the source has nothing to send. */
    if (!op->sent_basic && (!known || cred.username != NULL))
        return true;
    uint64_t gen = op->sent_basic ? op->creds_gen : cred.generation;
    if (!op->creds_renewed && credentials_refused(reg->creds, gen)) {
        log_info("registry refused the credentials; renewing them registry=%s", reg->host);
        op->creds_renewed = true;
        op->sent_basic = false;
        *renewed = true;
        return true;
    }
    if (!op->sent_basic)
        return false; /* anonymous, and the registry wants credentials: its 401 says so */
    struct credentials_info info;
    credentials_get_info(reg->creds, &info);
    free(op->auth_error);
    op->auth_error = xasprintf("HTTP 401: the credentials from %s were refused%s", info.source,
                               op->creds_renewed ? " (renewed once, and refused again)" : "");
    return false;
}

bool registry_auth_challenge(struct registry_op *op, struct http_request *req)
{
    struct registry *reg = op->reg;
    const char *header = http_request_response_header(req, "WWW-Authenticate");
    struct wwwauth challenge;
    bool again = false;
    bool renewed = false; /* a renewal is bounded by op->creds_renewed, not by the tries */

    /* A challenge from another origin (a redirect target, a next page
     * elsewhere) names no realm of this registry's. */
    if (header == NULL || op->auth_tries >= AUTH_TRIES_MAX ||
        !registry_own_origin(reg, http_request_url(req)))
        return false;
    if (wwwauth_parse(&challenge, header, NULL) < 0)
        return false;
    if (strcmp(challenge.scheme, "bearer") == 0 && challenge.realm != NULL) {
        again = registry_auth_bearer(op, &challenge);
    } else if (strcmp(challenge.scheme, "basic") == 0 && reg->creds != NULL) {
        again = registry_auth_basic_refused(op, &renewed);
    }
    wwwauth_release(&challenge);
    if (again && !renewed)
        op->auth_tries++;
    return again;
}

void registry_auth_release(struct registry *reg)
{
    for (struct registry_token *t = reg->tokens, *next; t != NULL; t = next) {
        next = t->next;
        free(t->scope);
        secret_free(t->token);
        token_form_free(t);
        free(t->waiters);
        free(t);
    }
    reg->tokens = NULL;
    credentials_unref(reg->creds);
    reg->creds = NULL;
    free(reg->realm);
    free(reg->service);
    reg->realm = reg->service = NULL;
}
