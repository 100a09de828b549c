/*
 * config_secret.c: the config's secrets. Passwords and tokens come from the
 * environment (taken out of it and kept for reloads), from the first line
 * of a file, or inline; the TLS private key from its PEM file, checked to
 * match the certificate. Every copy of a secret's bytes that the loader
 * makes on the way is wiped, and no secret reaches a message or a log line.
 */
#include "config/config_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/errors.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"

/*
 * The secrets deploy/k8s ships start with this. A deployment that kept one is
 * refused rather than run with a password anyone can read in the repository.
 */
#define CONFIG_PLACEHOLDER "change-me"

/* The same rule as for a config file holding an inline secret. */
static void config_warn_readable(const char *path, mode_t mode)
{
    if ((mode & (S_IRGRP | S_IROTH)) != 0)
        log_warn("secret file is readable by group or others; chmod 600 it path=%s", path);
}

int config_secret_read_file(const char *path, char **secret, char **err)
{
    mode_t mode = 0;
    int rc = fs_read_secret_line(path, CONFIG_MAX_SECRET_BYTES, secret, &mode, err);
    if (mode != 0)
        config_warn_readable(path, mode);
    return rc;
}

/*
 * Secrets taken out of the environment, by variable name, kept for the life
 * of the process: a reload (SIGHUP) reads the config again after the
 * variables are gone. Only the thread that loads configs touches it.
 */
struct config_env_secret {
    char *name;
    char *value;
};
static struct config_env_secret *config_env_secrets;
static size_t config_n_env_secrets;

char *config_secret_take_env(const char *name)
{
    struct config_env_secret *kept = NULL;
    for (size_t i = 0; i < config_n_env_secrets; i++) {
        if (strcmp(config_env_secrets[i].name, name) == 0)
            kept = &config_env_secrets[i];
    }
    char *value = getenv(name);
    if (value == NULL)
        return kept != NULL ? xstrdup(kept->value) : NULL;
    if (kept == NULL) {
        config_env_secrets =
            xrealloc(config_env_secrets, (config_n_env_secrets + 1) * sizeof(*config_env_secrets));
        kept = &config_env_secrets[config_n_env_secrets++];
        kept->name = xstrdup(name);
    } else {
        secret_free(kept->value);
    }
    kept->value = xstrdup(value);
    /*
     * unsetenv() only drops the pointer: the bytes stay in the block the
     * kernel shows as /proc/PID/environ, so they are overwritten first.
     * The string is "NAME=value" in that block or in setenv()'s copy; both
     * are ours to write, and what is left reads as an empty value.
     */
    secret_wipe_str(value);
    if (unsetenv(name) < 0)
        log_warn("config cannot unset an environment variable name=%s: %s", name, strerror(errno));
    return xstrdup(kept->value);
}

int config_secret_check_placeholder(struct config_parser *p, const yaml_node_t *node,
                                    const char *key, const char *what, const char *secret)
{
    if (secret == NULL || strncmp(secret, CONFIG_PLACEHOLDER, strlen(CONFIG_PLACEHOLDER)) != 0)
        return 0;
    return config_fail(p, node, key, "%s is the shipped placeholder; set a real secret", what);
}

int config_secret_from_file(struct config_parser *p, const yaml_node_t *node, const char *key,
                            const char *path, char **secret)
{
    char *why = NULL;
    int rc = config_secret_read_file(path, secret, &why);
    if (rc < 0) {
        rc = config_fail(p, node, key, "%s", why);
        free(why);
        return rc;
    }
    return config_secret_check_placeholder(p, node, key, path, *secret);
}

int config_secret_from_env(struct config_parser *p, const yaml_node_t *node, const char *key,
                           const char *name, char **secret)
{
    char *value = config_secret_take_env(name);
    if (value == NULL)
        return config_fail(p, node, key, "%s is not set", name);
    if (value[0] == '\0') {
        free(value);
        return config_fail(p, node, key, "%s is empty", name);
    }
    *secret = value;
    return config_secret_check_placeholder(p, node, key, name, *secret);
}

int config_secret_resolve(struct config_parser *p, const yaml_node_t *mapping, const char *key,
                          bool inline_ok, const char *env, const char *file, char **secret)
{
    char *env_key = xasprintf("%s_env", key);
    char *file_key = xasprintf("%s_file", key);
    int rc = 0;

    if (!inline_ok && env != NULL && file != NULL)
        rc = config_fail(p, config_place(p, mapping, file_key), file_key, "%s and %s are exclusive",
                         env_key, file_key);
    else if ((env != NULL) + (file != NULL) + (*secret != NULL) > 1)
        rc = config_fail(p, config_place(p, mapping, key), key, "%s, %s and %s are exclusive", key,
                         env_key, file_key);
    else if (env != NULL)
        rc = config_secret_from_env(p, config_place(p, mapping, env_key), env_key, env, secret);
    else if (file != NULL)
        rc = config_secret_from_file(p, config_place(p, mapping, file_key), file_key, file, secret);
    else if (*secret != NULL && (*secret)[0] == '\0')
        rc = config_fail(p, config_place(p, mapping, key), key, "empty token");
    else if (*secret != NULL)
        rc = config_secret_check_placeholder(p, config_place(p, mapping, key), key, "the token",
                                             *secret);
    if (env == NULL && file == NULL && *secret != NULL)
        p->inline_password = true;
    free(env_key);
    free(file_key);
    return rc;
}

/* ---- tls: ---- */

/* OpenSSL asks for the passphrase of an encrypted key here: there is none. */
static int config_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return -1;
}

/*
 * The whole of a PEM file into *out, at most CONFIG_MAX_PEM_BYTES. A private
 * key (`secret`) that group or others may read is warned about, as a secret
 * file is, and every copy of its bytes is wiped.
 */
static int config_read_pem(struct config_parser *p, const yaml_node_t *node, const char *key,
                           const char *path, bool secret, char **out)
{
    struct buf contents;
    struct stat st = {0};
    bool opened = false;

    buf_init(&contents, CONFIG_MAX_PEM_BYTES);
    int rc = config_file_read(path, false, &contents, &st, &opened);
    if (secret && opened)
        config_warn_readable(path, st.st_mode);
    if (rc == FERRY_ETOOBIG)
        rc = config_fail(p, node, key, "%s is larger than %d bytes", path, CONFIG_MAX_PEM_BYTES);
    else if (rc < 0)
        rc = config_fail(p, node, key, "cannot read %s: %s", path, strerror(-rc));
    else if (contents.len == 0 || memchr(contents.data, '\0', contents.len) != NULL)
        rc = config_fail(p, node, key, "%s is not a PEM file", path);
    else
        *out = xstrndup(contents.data, contents.len);
    if (contents.data != NULL && secret)
        secret_wipe(contents.data, contents.alloc);
    buf_release(&contents);
    return rc;
}

static const struct config_field config_tls_fields[] = {
    {.name = "cert_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, config.tls_cert_file),
     .required = true},
    {.name = "key_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, config.tls_key_file),
     .required = true},
};

/* The certificate and the key, parsed the way the listener's GnuTLS will, and matched. */
static int config_check_tls(struct config_parser *p, const struct config *c,
                            const yaml_node_t *cert_node, const char *cert_key,
                            const yaml_node_t *key_node, const char *key_key)
{
    X509 *cert = NULL;
    EVP_PKEY *pkey = NULL;
    int rc = 0;

    BIO *bio = BIO_new_mem_buf(c->tls_cert_pem, -1);
    cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, config_no_passphrase, NULL) : NULL;
    BIO_free_all(bio);
    if (cert == NULL) {
        rc = config_fail(p, cert_node, cert_key, "%s holds no PEM certificate", c->tls_cert_file);
        goto out;
    }
    bio = BIO_new_mem_buf(c->tls_key_pem, -1);
    pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, config_no_passphrase, NULL) : NULL;
    BIO_free_all(bio);
    if (pkey == NULL) {
        rc = config_fail(p, key_node, key_key,
                         "%s holds no PEM private key (an encrypted key is not supported)",
                         c->tls_key_file);
        goto out;
    }
    if (X509_check_private_key(cert, pkey) != 1) {
        rc = config_fail(p, key_node, key_key, "%s is not the key of %s", c->tls_key_file,
                         c->tls_cert_file);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
        log_warn("the tls certificate has expired path=%s", c->tls_cert_file);

out:
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(pkey);
    return rc;
}

/*
 * Both files are read and checked here, so that a bad certificate is a
 * config error, also for --check-config, rather than a listener that does
 * not start.
 */
int config_parse_tls(struct config_parser *p, const yaml_node_t *node, const char *key,
                     void *object)
{
    struct config *c = &((struct config_top *)object)->config;
    int rc = config_mapping(p, node, key, CONFIG_FIELDS(config_tls_fields), object);
    if (rc < 0)
        return rc;
    char *cert_key = config_key_join(key, "cert_file");
    char *key_key = config_key_join(key, "key_file");
    const yaml_node_t *cert_node = config_place(p, node, "cert_file");
    const yaml_node_t *key_node = config_place(p, node, "key_file");
    rc = config_read_pem(p, cert_node, cert_key, c->tls_cert_file, false, &c->tls_cert_pem);
    if (rc == 0)
        rc = config_read_pem(p, key_node, key_key, c->tls_key_file, true, &c->tls_key_pem);
    if (rc == 0)
        rc = config_check_tls(p, c, cert_node, cert_key, key_node, key_key);
    free(cert_key);
    free(key_key);
    return rc;
}
