/*
 * credentials.c: a registry's credentials, from their source, cached with
 * their lifetime and fetched again when they expire, when the file they come
 * from changes, or when the registry refuses them. See credentials.h.
 */
#include "registry/credentials.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base64.h"
#include "common/clock.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "registry/credhelper.h"
#include "registry/dockerconfig.h"

/* A secret's readable lifetime is believed up to this long. */
#define CREDENTIALS_LIFE_MAX_MS ((uint64_t)7 * 24 * 3600 * 1000)
/* The longest password file line read (as the config's). */
#define CREDENTIALS_SECRET_MAX (64 * 1024)
/* The most callers that may wait for one fetch; more are refused at once. */
#define CREDENTIALS_WAITERS_MAX 100000

struct cred_waiter {
    credentials_cb cb;
    void *arg;
};

/* What a file looked like when it was read: a change is a new file. */
struct file_mark {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct timespec ctime;
};

struct credentials {
    int refs;
    struct credentials_spec spec; /* its strings are our copies */
    char *source;                 /* for status and messages */

    /* What is held now. */
    bool held; /* username/secret are valid (username NULL: anonymous) */
    char *username;
    char *secret;
    bool identity_token;
    uint64_t generation;
    uint64_t expires_ms; /* mono_ms() after which it is fetched again; 0: never */
    uint64_t expires_unix_ms;

    /* The file behind it (password file or Docker config) and when it was last looked at. */
    struct file_mark mark;
    uint64_t checked_ms;
    char *helper_now;  /* docker config: the helper it names now, or NULL */
    bool config_auths; /* docker config: held came from its auths entry */

    /* A helper fetch under way, and who waits for it. */
    bool fetching;
    struct cred_waiter *waiters;
    size_t n_waiters;
    uv_loop_t *loop;

    /* For status. */
    uint64_t renewed_unix_ms;
    uint64_t renewals;
    uint64_t failures;
    char *last_error;
};

/* The clocks, unsigned: both only go forward from far above 0. */
static uint64_t mono_ms(void)
{
    return (uint64_t)clock_mono_ms();
}

static uint64_t unix_ms(void)
{
    return (uint64_t)clock_unix_ms();
}

/* ---- lifetimes ---- */

/* A number of seconds since the epoch named `key` in a JSON text; 0 when there is none. */
static double json_seconds(const char *text, const char *key)
{
    cJSON *json = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, key);
    double seconds = cJSON_IsNumber(v) && v->valuedouble > 0 ? v->valuedouble : 0;
    /* The document may be the secret itself (an ECR token's payload). */
    for (cJSON *item = json != NULL ? json->child : NULL; item != NULL; item = item->next)
        if (cJSON_IsString(item))
            secret_wipe_str(item->valuestring);
    cJSON_Delete(json);
    return seconds;
}

uint64_t credentials_secret_life_ms(const char *secret, uint64_t now_unix_ms)
{
    double exp = 0;
    if (secret == NULL)
        return 0;
    const char *dot1 = strchr(secret, '.');
    const char *dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
    if (dot1 != NULL && dot2 != NULL && strchr(dot2 + 1, '.') == NULL) {
        /* A JWT: header.claims.signature; the claims carry "exp". */
        char *claims = base64_decode_text(dot1 + 1, (size_t)(dot2 - dot1 - 1), true);
        if (claims != NULL)
            exp = json_seconds(claims, "exp");
        secret_free(claims);
    } else if (dot1 == NULL) {
        /* An ECR token: base64 of "AWS:" and a JSON document with "expiration". */
        char *decoded = base64_decode_text(secret, strlen(secret), true);
        char *colon = decoded != NULL ? strchr(decoded, ':') : NULL;
        if (colon != NULL && colon[1] == '{')
            exp = json_seconds(colon + 1, "expiration");
        secret_free(decoded);
    }
    double exp_ms = exp * 1000.0;
    if (exp_ms <= (double)now_unix_ms)
        return 0;
    double life = exp_ms - (double)now_unix_ms;
    return life > (double)CREDENTIALS_LIFE_MAX_MS ? CREDENTIALS_LIFE_MAX_MS : (uint64_t)life;
}

/* When credentials that live `life_ms` (0: unknown) from now must be fetched again. */
static void credentials_set_life(struct credentials *c, uint64_t life_ms)
{
    if (life_ms == 0) {
        c->expires_ms = 0;
        c->expires_unix_ms = 0;
        return;
    }
    uint64_t margin = life_ms / 10;
    if (margin > CREDENTIALS_RENEW_MARGIN_MAX_MS)
        margin = CREDENTIALS_RENEW_MARGIN_MAX_MS;
    c->expires_ms = mono_ms() + life_ms - margin;
    c->expires_unix_ms = unix_ms() + life_ms;
}

/* ---- what is held ---- */

static void credentials_drop(struct credentials *c)
{
    free(c->username);
    secret_free(c->secret);
    c->username = NULL;
    c->secret = NULL;
    c->held = false;
    c->identity_token = false;
    c->expires_ms = 0;
    c->expires_unix_ms = 0;
}

/* Hold `username` and `secret` (copied; NULL username: anonymous), with a new generation. */
static void credentials_hold(struct credentials *c, const char *username, const char *secret,
                             uint64_t life_ms)
{
    bool changed = !c->held || (username == NULL) != (c->username == NULL) ||
                   (username != NULL && strcmp(username, c->username) != 0) ||
                   (secret != NULL) != (c->secret != NULL) ||
                   (secret != NULL && !secret_equal(secret, c->secret));
    credentials_drop(c);
    c->held = true;
    if (username != NULL && secret != NULL) {
        c->identity_token = strcmp(username, CREDHELPER_TOKEN_USERNAME) == 0;
        c->username = xstrdup(username);
        c->secret = xstrdup(secret);
        if (life_ms == 0)
            life_ms = credentials_secret_life_ms(secret, unix_ms());
    }
    credentials_set_life(c, life_ms);
    if (changed)
        c->generation++;
    c->renewed_unix_ms = unix_ms();
    c->renewals++;
}

static void credentials_fail(struct credentials *c, const char *error)
{
    c->failures++;
    free(c->last_error);
    c->last_error = xstrdup(error);
}

static void credentials_give(const struct credentials *c, struct credential *out)
{
    out->username = c->username;
    out->secret = c->secret;
    out->identity_token = c->identity_token;
    out->generation = c->generation;
}

/* ---- files ---- */

static struct file_mark file_mark_of(const char *path)
{
    struct file_mark m = {0};
    struct stat st;
    if (path != NULL && stat(path, &st) == 0) {
        m.exists = true;
        m.dev = st.st_dev;
        m.ino = st.st_ino;
        m.size = st.st_size;
        m.mtime = st.st_mtim;
        m.ctime = st.st_ctim;
    }
    return m;
}

static bool file_mark_same(const struct file_mark *a, const struct file_mark *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Has the file changed since it was read (looked at no more than every RECHECK ms)? */
static bool credentials_file_changed(struct credentials *c, bool force)
{
    uint64_t now = mono_ms();
    if (!force && c->checked_ms != 0 && now - c->checked_ms < CREDENTIALS_RECHECK_MS)
        return false;
    c->checked_ms = now;
    struct file_mark m = file_mark_of(c->spec.path);
    return !file_mark_same(&m, &c->mark);
}

/* Read the password file again; on failure keep what is held (the old one may still work). */
static void credentials_read_password_file(struct credentials *c)
{
    char *secret = NULL;
    char *err = NULL;
    c->mark = file_mark_of(c->spec.path);
    c->checked_ms = mono_ms();
    int rc = fs_read_secret_line(c->spec.path, CREDENTIALS_SECRET_MAX, &secret, NULL, &err);
    if (rc < 0) {
        char *why = xasprintf("password_file: %s", err != NULL ? err : ferry_strerror(rc));
        log_info("registry credentials not renewed registry=%s error=\"%s\"", c->spec.host, why);
        credentials_fail(c, why);
        free(why);
    } else {
        credentials_hold(c, c->spec.username, secret, 0);
    }
    secret_free(secret);
    free(err);
}

/* Read the Docker config again: auths are held now; a helper it names is fetched. */
static void credentials_read_docker_config(struct credentials *c)
{
    struct dockerconfig_creds found;
    char *err = NULL;
    c->mark = file_mark_of(c->spec.path);
    c->checked_ms = mono_ms();
    int rc = dockerconfig_find(c->spec.path, c->spec.host, &found, &err);
    /* The same helper named again: what it gave stays (a file rewritten, not re-pointed). */
    bool same_helper = rc == 0 && found.helper != NULL && c->helper_now != NULL &&
                       strcmp(found.helper, c->helper_now) == 0 && !c->config_auths;
    free(c->helper_now);
    c->helper_now = NULL;
    c->config_auths = false;
    if (rc == FERRY_ENOTFOUND) {
        credentials_hold(c, NULL, NULL, 0);
    } else if (rc < 0) {
        /* A broken file gives nothing: anonymous, with the reason kept for status. */
        log_warn("docker config unusable registry=%s error=\"%s\"", c->spec.host,
                 err != NULL ? err : ferry_strerror(rc));
        credentials_fail(c, err != NULL ? err : ferry_strerror(rc));
        credentials_drop(c);
        c->held = true;
    } else if (found.helper != NULL) {
        c->helper_now = xstrdup(found.helper);
        if (!same_helper)
            credentials_drop(c); /* fetched from the helper */
    } else {
        c->config_auths = true;
        credentials_hold(c, found.username, found.password, 0);
    }
    free(c->source);
    c->source = c->helper_now != NULL
                    ? xasprintf("docker config %s: credential helper docker-credential-%s",
                                c->spec.path, c->helper_now)
                    : xasprintf("docker config %s", c->spec.path);
    dockerconfig_creds_release(&found);
    free(err);
}

/* ---- the object ---- */

static char *source_text(const struct credentials_spec *spec)
{
    switch (spec->kind) {
    case CREDENTIALS_STATIC:
        return xstrdup(spec->label != NULL ? spec->label : "static");
    case CREDENTIALS_FILE:
        return xasprintf("password_file %s", spec->path);
    case CREDENTIALS_HELPER:
        return xasprintf("credential helper docker-credential-%s", spec->helper);
    case CREDENTIALS_DOCKER_CONFIG:
        return xasprintf("docker config %s", spec->path != NULL ? spec->path : "(none)");
    }
    return xstrdup("unknown");
}

struct credentials *credentials_new(const struct credentials_spec *spec)
{
    struct credentials *c = xcalloc(1, sizeof(*c));
    c->refs = 1;
    c->spec = *spec;
    c->spec.host = xstrdup(spec->host != NULL ? spec->host : "");
    c->spec.username = spec->username != NULL ? xstrdup(spec->username) : NULL;
    c->spec.password = NULL; /* held, not kept twice */
    c->spec.path = spec->path != NULL ? xstrdup(spec->path) : NULL;
    c->spec.helper = spec->helper != NULL ? xstrdup(spec->helper) : NULL;
    c->spec.label = NULL;
    if (c->spec.timeout_ms == 0)
        c->spec.timeout_ms = CREDENTIALS_HELPER_TIMEOUT_MS;
    c->source = source_text(spec);
    switch (spec->kind) {
    case CREDENTIALS_STATIC:
        credentials_hold(c, spec->username, spec->password, 0);
        credentials_set_life(c, 0); /* never fetched again, whatever it looks like */
        c->renewals = 0;
        break;
    case CREDENTIALS_FILE:
        if (spec->password != NULL) {
            c->mark = file_mark_of(c->spec.path);
            c->checked_ms = mono_ms();
            credentials_hold(c, spec->username, spec->password, 0);
        } else {
            credentials_read_password_file(c);
        }
        break;
    case CREDENTIALS_HELPER:
        break;
    case CREDENTIALS_DOCKER_CONFIG:
        if (c->spec.path != NULL) {
            credentials_read_docker_config(c);
        } else {
            credentials_hold(c, NULL, NULL, 0);
        }
        break;
    }
    return c;
}

struct credentials *credentials_ref(struct credentials *c)
{
    if (c != NULL)
        c->refs++;
    return c;
}

static void credentials_free(struct credentials *c)
{
    credentials_drop(c);
    free((char *)c->spec.host);
    free((char *)c->spec.username);
    free((char *)c->spec.path);
    free((char *)c->spec.helper);
    free(c->source);
    free(c->helper_now);
    free(c->last_error);
    free(c->waiters);
    free(c);
}

void credentials_unref(struct credentials *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    /* A helper still running holds its own reference (credentials_fetch). */
    credentials_free(c);
}

/* The helper to run now: the configured one, or the one the Docker config names. */
static const char *credentials_helper(const struct credentials *c)
{
    return c->spec.kind == CREDENTIALS_HELPER ? c->spec.helper : c->helper_now;
}

bool credentials_current(struct credentials *c, struct credential *out)
{
    memset(out, 0, sizeof(*out));
    if (c->spec.kind == CREDENTIALS_FILE && credentials_file_changed(c, false))
        credentials_read_password_file(c);
    if (c->spec.kind == CREDENTIALS_DOCKER_CONFIG && c->spec.path != NULL &&
        credentials_file_changed(c, false))
        credentials_read_docker_config(c);
    if (!c->held)
        return false;
    if (c->expires_ms != 0 && mono_ms() >= c->expires_ms) {
        /* Expired: a helper is asked again; a file's content is all there is. */
        if (credentials_helper(c) != NULL)
            return false;
    }
    credentials_give(c, out);
    return true;
}

/* ---- fetching from a helper ---- */

static void credentials_answer(struct credentials *c, int rc, const char *error)
{
    struct cred_waiter *waiters = c->waiters;
    size_t n = c->n_waiters;
    struct credential cred = {0};
    c->waiters = NULL;
    c->n_waiters = 0;
    if (rc == 0)
        credentials_give(c, &cred);
    for (size_t i = 0; i < n; i++) {
        /* Each waiter may take or drop references; `cred` points into c, held below. */
        waiters[i].cb(rc, error, rc == 0 ? &cred : NULL, waiters[i].arg);
    }
    free(waiters);
}

static void credentials_helper_done(int rc, const char *error, const char *username,
                                    const char *secret, void *arg)
{
    struct credentials *c = arg;
    char *why = NULL;
    c->fetching = false;
    if (rc == 0) {
        credentials_hold(c, username, secret, 0);
        /* A helper's answer with no readable lifetime is asked for again after a while. */
        if (c->expires_ms == 0)
            credentials_set_life(c, CREDENTIALS_HELPER_TTL_MS);
    } else if (rc == FERRY_ENOTFOUND && c->spec.kind == CREDENTIALS_DOCKER_CONFIG) {
        /* The store has nothing for this registry: the auths entry, if any, else anonymous. */
        struct dockerconfig_creds found;
        if (dockerconfig_find(c->spec.path, c->spec.host, &found, NULL) == 0 &&
            found.username != NULL)
            credentials_hold(c, found.username, found.password, 0);
        else
            credentials_hold(c, NULL, NULL, 0);
        credentials_set_life(c, CREDENTIALS_HELPER_TTL_MS);
        dockerconfig_creds_release(&found);
        rc = 0;
    } else {
        why = xasprintf("credentials for %s from %s: %s", c->spec.host, c->source,
                        error != NULL ? error : ferry_strerror(rc));
        credentials_fail(c, why);
        log_info("registry credentials not renewed registry=%s error=\"%s\"", c->spec.host, why);
    }
    c->refs++; /* c outlives the answers, whatever their callbacks let go */
    credentials_answer(c, rc, why);
    free(why);
    c->refs--;            /* the reference just taken: the fetch's own still holds c */
    credentials_unref(c); /* the fetch's own reference */
}

void credentials_fetch(struct credentials *c, uv_loop_t *loop, credentials_cb cb, void *arg)
{
    if (c->n_waiters >= CREDENTIALS_WAITERS_MAX) {
        cb(FERRY_ETOOBIG, "too many requests wait for credentials", NULL, arg);
        return;
    }
    c->waiters = xrealloc(c->waiters, (c->n_waiters + 1) * sizeof(*c->waiters));
    c->waiters[c->n_waiters++] = (struct cred_waiter){cb, arg};
    if (c->fetching)
        return;
    const char *helper = credentials_helper(c);
    if (helper == NULL) {
        /* Nothing to run: what the file gives (read again now) is the answer. */
        struct credential cur;
        (void)credentials_current(c, &cur);
        if (!c->held)
            credentials_hold(c, NULL, NULL, 0);
        c->refs++;
        credentials_answer(c, 0, NULL);
        credentials_unref(c);
        return;
    }
    c->fetching = true;
    c->loop = loop;
    c->refs++; /* held while the helper runs */
    credhelper_get(loop, helper, dockerconfig_server_url(c->spec.host), c->spec.timeout_ms,
                   credentials_helper_done, c);
}

bool credentials_refused(struct credentials *c, uint64_t generation)
{
    if (c->spec.kind == CREDENTIALS_STATIC)
        return false;
    if (generation != c->generation)
        return true; /* renewed since that request left: try what is held now */
    switch (c->spec.kind) {
    case CREDENTIALS_FILE:
        if (!credentials_file_changed(c, true))
            return false; /* the same file gives the same password */
        credentials_read_password_file(c);
        return true;
    case CREDENTIALS_DOCKER_CONFIG:
        if (credentials_file_changed(c, true))
            credentials_read_docker_config(c);
        else if (c->helper_now != NULL)
            credentials_drop(c);
        else
            return false;
        return true;
    case CREDENTIALS_HELPER:
        credentials_drop(c);
        return true;
    case CREDENTIALS_STATIC:
        break;
    }
    return false;
}

void credentials_get_info(struct credentials *c, struct credentials_info *out)
{
    memset(out, 0, sizeof(*out));
    out->source = c->source;
    out->renewed_unix_ms = c->renewed_unix_ms;
    out->expires_unix_ms = c->expires_unix_ms;
    out->renewals = c->renewals;
    out->failures = c->failures;
    out->last_error = c->last_error;
}
