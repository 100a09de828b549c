/*
 * dockerconfig.c: registry credentials from a Docker config.json ("auths":
 * base64 user:password, username and password, or an identity token), read
 * within a size cap, every copy of a secret wiped once used.
 */
#include "registry/dockerconfig.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/errors.h"
#include "common/fsutil.h"
#include "common/secret.h"
#include "common/xalloc.h"

char *dockerconfig_default_path(void)
{
    const char *dir = getenv("DOCKER_CONFIG");
    if (dir != NULL && dir[0] != '\0')
        return xasprintf("%s/config.json", dir);
    const char *home = getenv("HOME");
    if (home != NULL && home[0] != '\0')
        return xasprintf("%s/.docker/config.json", home);
    return NULL;
}

/* cJSON keeps its own copies of every string; wipe them too before freeing. */
static void dockerconfig_wipe_json(cJSON *item)
{
    for (; item != NULL; item = item->next) {
        if (item->valuestring != NULL)
            secret_wipe_str(item->valuestring);
        dockerconfig_wipe_json(item->child);
    }
}

static int dockerconfig_read(const char *path, struct buf *contents, char **err)
{
    struct stat st;
    int rc = 0;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            if (err != NULL)
                *err = xasprintf("no docker config at %s", path);
            return FERRY_ENOTFOUND;
        }
        rc = -errno;
        if (err != NULL)
            *err = xasprintf("cannot open docker config %s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        goto fail;
    }
    rc = fs_read_fd(fd, false, contents);
    if (rc == FERRY_ETOOBIG) {
        if (err != NULL)
            *err =
                xasprintf("docker config %s is larger than %d bytes", path, DOCKERCONFIG_MAX_BYTES);
        goto out;
    }
    if (rc < 0)
        goto fail;
    goto out;

fail:
    if (err != NULL)
        *err = xasprintf("cannot read docker config %s: %s", path, strerror(-rc));
out:
    if (close(fd) < 0 && rc == 0) {
        rc = -errno;
        if (err != NULL)
            *err = xasprintf("cannot read docker config %s: %s", path, strerror(-rc));
    }
    return rc;
}

/* The host part of an "auths" key: no scheme, no path. */
static void dockerconfig_key_host(const char *key, const char **host, size_t *len)
{
    if (strncasecmp(key, "https://", 8) == 0)
        key += 8;
    else if (strncasecmp(key, "http://", 7) == 0)
        key += 7;
    *host = key;
    *len = strcspn(key, "/");
}

static bool dockerconfig_is_hub(const char *host, size_t len)
{
    static const char *const hub[] = {"docker.io", "index.docker.io", "registry-1.docker.io"};
    for (size_t i = 0; i < sizeof(hub) / sizeof(hub[0]); i++) {
        if (len == strlen(hub[i]) && strncasecmp(host, hub[i], len) == 0)
            return true;
    }
    return false;
}

static bool dockerconfig_key_matches(const char *key, const char *registry)
{
    const char *host;
    size_t len;
    dockerconfig_key_host(key, &host, &len);
    if (len == strlen(registry) && strncasecmp(host, registry, len) == 0)
        return true;
    return dockerconfig_is_hub(host, len) && dockerconfig_is_hub(registry, strlen(registry));
}

/*
 * Credentials from one "auths" entry. Returns 0 with both set, 1 when the
 * entry holds none, FERRY_EPARSE when it is malformed.
 */
static int dockerconfig_entry(const cJSON *entry, char **username, char **password)
{
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(entry, "auth");
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(entry, "username");
    const cJSON *pass = cJSON_GetObjectItemCaseSensitive(entry, "password");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(entry, "identitytoken");

    if (!cJSON_IsObject(entry))
        return FERRY_EPARSE;
    if ((auth != NULL && !cJSON_IsString(auth) && !cJSON_IsNull(auth)) ||
        (user != NULL && !cJSON_IsString(user) && !cJSON_IsNull(user)) ||
        (pass != NULL && !cJSON_IsString(pass) && !cJSON_IsNull(pass)) ||
        (token != NULL && !cJSON_IsString(token) && !cJSON_IsNull(token)))
        return FERRY_EPARSE;

    if (cJSON_IsString(auth) && auth->valuestring[0] != '\0') {
        char *decoded = base64_decode_text(auth->valuestring, strlen(auth->valuestring), false);
        if (decoded == NULL)
            return FERRY_EPARSE;
        char *colon = strchr(decoded, ':');
        if (colon == NULL) {
            secret_free(decoded);
            return FERRY_EPARSE;
        }
        *username = xstrndup(decoded, (size_t)(colon - decoded));
        *password = xstrdup(colon + 1);
        secret_free(decoded);
    } else if (cJSON_IsString(user) && cJSON_IsString(pass)) {
        *username = xstrdup(user->valuestring);
        *password = xstrdup(pass->valuestring);
    }
    if (*password != NULL && (*password)[0] != '\0')
        return 0;
    if (cJSON_IsString(token) && token->valuestring[0] != '\0') {
        secret_free(*username);
        secret_free(*password);
        *username = xstrdup(DOCKERCONFIG_TOKEN_USERNAME);
        *password = xstrdup(token->valuestring);
        return 0;
    }
    secret_free(*username);
    secret_free(*password);
    *username = NULL;
    *password = NULL;
    return 1;
}

/* A helper name Docker would turn into a program name, and nothing more. */
static bool dockerconfig_helper_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 64)
        return false;
    for (const char *c = name; *c != '\0'; c++) {
        bool ok = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.';
        if (!ok)
            return false;
    }
    return true;
}

/* credHelpers' entry for `registry` (exact key first), else credsStore; 0, 1 (none) or EPARSE. */
static int dockerconfig_helper(const cJSON *root, const char *registry, char **helper)
{
    const cJSON *helpers = cJSON_GetObjectItemCaseSensitive(root, "credHelpers");
    const cJSON *store = cJSON_GetObjectItemCaseSensitive(root, "credsStore");
    const cJSON *found = NULL;

    if ((helpers != NULL && !cJSON_IsObject(helpers) && !cJSON_IsNull(helpers)) ||
        (store != NULL && !cJSON_IsString(store) && !cJSON_IsNull(store)))
        return FERRY_EPARSE;
    for (int pass = 0; pass < 2 && found == NULL && cJSON_IsObject(helpers); pass++) {
        const cJSON *entry;
        cJSON_ArrayForEach(entry, helpers)
        {
            bool exact = strcmp(entry->string, registry) == 0;
            if (pass == 0 ? exact : !exact && dockerconfig_key_matches(entry->string, registry)) {
                found = entry;
                break;
            }
        }
    }
    if (found == NULL && cJSON_IsString(store) && store->valuestring[0] != '\0')
        found = store;
    if (found == NULL)
        return 1;
    if (!cJSON_IsString(found) || !dockerconfig_helper_valid(found->valuestring))
        return FERRY_EPARSE;
    *helper = xstrdup(found->valuestring);
    return 0;
}

/* The "auths" entry of `registry`: 0, FERRY_ENOTFOUND or FERRY_EPARSE (with *err). */
static int dockerconfig_auths(const cJSON *root, const char *path, const char *registry,
                              char **username, char **password, char **err)
{
    const cJSON *auths = cJSON_GetObjectItemCaseSensitive(root, "auths");
    if (auths != NULL && !cJSON_IsObject(auths) && !cJSON_IsNull(auths)) {
        if (err != NULL)
            *err = xasprintf("cannot parse docker config %s: \"auths\" is not an object", path);
        return FERRY_EPARSE;
    }
    /* First pass: the exact key; second pass: every key that names the same host. */
    const cJSON *entries = cJSON_IsObject(auths) ? auths : NULL;
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *entry;
        cJSON_ArrayForEach(entry, entries)
        {
            bool exact = strcmp(entry->string, registry) == 0;
            bool wanted =
                pass == 0 ? exact : !exact && dockerconfig_key_matches(entry->string, registry);
            if (!wanted)
                continue;
            int rc = dockerconfig_entry(entry, username, password);
            if (rc == 0)
                return 0;
            if (rc < 0) {
                if (err != NULL)
                    *err = xasprintf("cannot parse docker config %s: the entry for %s is "
                                     "malformed (auth must be base64 of user:password)",
                                     path, registry);
                return rc;
            }
        }
    }
    return FERRY_ENOTFOUND;
}

/* Read and parse the file into *root; 0 or an error with *err. */
static int dockerconfig_parse(const char *path, cJSON **root, char **err)
{
    struct buf contents;
    buf_init(&contents, DOCKERCONFIG_MAX_BYTES);
    int rc = dockerconfig_read(path, &contents, err);
    if (rc == 0) {
        const char *end = NULL;
        rc = FERRY_EPARSE;
        if (contents.len > 0 && memchr(contents.data, '\0', contents.len) == NULL)
            *root = cJSON_ParseWithOpts(contents.data, &end, false);
        if (*root != NULL && end[strspn(end, " \t\r\n")] == '\0' && cJSON_IsObject(*root))
            rc = 0;
        else if (err != NULL)
            *err = xasprintf("cannot parse docker config %s: not a valid json object", path);
    }
    if (contents.data != NULL)
        secret_wipe(contents.data, contents.alloc);
    buf_release(&contents);
    return rc;
}

static void dockerconfig_free_json(cJSON *root)
{
    if (root != NULL) {
        dockerconfig_wipe_json(root);
        cJSON_Delete(root);
    }
}

const char *dockerconfig_server_url(const char *registry)
{
    return dockerconfig_is_hub(registry, strlen(registry)) ? "https://index.docker.io/v1/"
                                                           : registry;
}

void dockerconfig_creds_release(struct dockerconfig_creds *c)
{
    free(c->helper);
    secret_free(c->username);
    secret_free(c->password);
    memset(c, 0, sizeof(*c));
}

int dockerconfig_find(const char *path, const char *registry, struct dockerconfig_creds *out,
                      char **err)
{
    cJSON *root = NULL;
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (path == NULL || registry == NULL || out == NULL) {
        if (err != NULL)
            *err = xasprintf("docker config lookup needs a path, a registry and a result");
        return FERRY_EINVAL;
    }
    int rc = dockerconfig_parse(path, &root, err);
    if (rc == 0) {
        rc = dockerconfig_helper(root, registry, &out->helper);
        if (rc < 0 && err != NULL)
            *err = xasprintf("cannot parse docker config %s: \"credHelpers\" or \"credsStore\" "
                             "does not name a helper (1 to 64 of A-Z a-z 0-9 . _ -)",
                             path);
    }
    if (rc >= 0) {
        bool helper = rc == 0;
        rc = dockerconfig_auths(root, path, registry, &out->username, &out->password, err);
        if (rc == FERRY_ENOTFOUND && helper)
            rc = 0;
        else if (rc == FERRY_ENOTFOUND && err != NULL)
            *err = xasprintf("no credentials for %s in docker config %s", registry, path);
    }
    if (rc < 0)
        dockerconfig_creds_release(out);
    dockerconfig_free_json(root);
    return rc;
}

int dockerconfig_lookup(const char *path, const char *registry, char **username, char **password,
                        char **err)
{
    cJSON *root = NULL;

    if (username != NULL)
        *username = NULL;
    if (password != NULL)
        *password = NULL;
    if (path == NULL || registry == NULL || username == NULL || password == NULL) {
        if (err != NULL)
            *err = xasprintf("docker config lookup needs a path, a registry and two results");
        return FERRY_EINVAL;
    }
    int rc = dockerconfig_parse(path, &root, err);
    if (rc == 0) {
        rc = dockerconfig_auths(root, path, registry, username, password, err);
        if (rc == FERRY_ENOTFOUND && err != NULL)
            *err = xasprintf("no credentials for %s in docker config %s", registry, path);
    }
    dockerconfig_free_json(root);
    return rc;
}
