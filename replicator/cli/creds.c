/*
 * creds: registry credentials from the command line, the environment or
 * the Docker config; see creds.h.
 */
#include "cli/creds.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "registry/credentials.h"
#include "registry/dockerconfig.h"

void creds_init(struct creds *c, const char *flag)
{
    memset(c, 0, sizeof(*c));
    c->flag = flag;
}

void creds_take(struct creds *c, enum creds_how how, char *arg)
{
    switch (how) {
    case CREDS_ARG:
        c->arg = arg;
        break;
    case CREDS_FILE:
        c->file = arg;
        break;
    case CREDS_STDIN:
        c->from_stdin = true;
        break;
    }
    c->given++;
}

/* Echo off on the terminal stdin is, so that a typed password stays unseen. */
static void creds_echo_off(const struct termios *saved, const char *prompt)
{
    struct termios quiet = *saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
        log_warn("cannot turn the terminal's echo off: %s", strerror(errno));
    fprintf(stderr, "%s: ", prompt);
}

static void creds_echo_restore(const struct termios *saved)
{
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, saved) < 0)
        log_warn("cannot turn the terminal's echo back on: %s", strerror(errno));
    fputc('\n', stderr);
}

/*
 * Read stdin into buf (CONFIG_MAX_SECRET_BYTES + 1 bytes) up to the end of
 * a line, a byte at a time, so that nothing past the line is consumed (a
 * second line may be the other registry's) and no copy lingers in a stdio
 * buffer. Returns 0 with *len set, FERRY_EINVAL when stdin ended before any
 * byte, FERRY_ETOOBIG for a line too long, or -errno.
 */
static int creds_read_bytes(char *buf, size_t *len)
{
    char ch = 0;
    int rc = 0;

    *len = 0;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0) {
            if (*len == 0)
                rc = FERRY_EINVAL;
            break;
        }
        if (ch == '\n')
            break;
        if (*len == CONFIG_MAX_SECRET_BYTES) {
            rc = FERRY_ETOOBIG;
            break;
        }
        buf[(*len)++] = ch;
    }
    secret_wipe(&ch, sizeof(ch));
    return rc;
}

/*
 * One line of stdin, without its line end and trailing blanks, into a fresh
 * *line; echo is off on a terminal. Returns as creds_read_bytes().
 */
static int creds_read_line(const char *prompt, char **line)
{
    char *buf = xmalloc(CONFIG_MAX_SECRET_BYTES + 1);
    size_t len = 0;
    struct termios saved;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;

    if (tty)
        creds_echo_off(&saved, prompt);
    int rc = creds_read_bytes(buf, &len);
    if (tty)
        creds_echo_restore(&saved);
    while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
        len--;
    buf[len] = '\0';
    if (rc == 0)
        *line = xstrdup(buf);
    secret_wipe(buf, CONFIG_MAX_SECRET_BYTES + 1);
    free(buf);
    return rc;
}

/*
 * Keep a copy of --X-creds and overwrite the password in argv, which
 * /proc/PID/cmdline (and so ps) shows to every user. It was there from exec
 * until now, hence the warning.
 */
static void creds_load_arg(struct creds *c)
{
    c->text = xstrdup(c->arg);
    char *colon = strchr(c->arg, ':');
    if (colon != NULL && colon[1] != '\0') {
        log_warn("%s puts the password in the process list; use %s-file FILE or %s-stdin", c->flag,
                 c->flag, c->flag);
        secret_wipe_str(colon + 1);
    }
}

static int creds_load_file(const char *cmd, struct creds *c)
{
    char *err = NULL;
    int rc = config_secret_read_file(c->file, &c->text, &err);
    if (rc < 0)
        fprintf(stderr, "ferry %s: %s-file: %s\n", cmd, c->flag, err);
    free(err);
    return rc;
}

static int creds_load_stdin(const char *cmd, struct creds *c)
{
    char prompt[64];
    snprintf(prompt, sizeof(prompt), "USER:PASSWORD (%s-stdin)", c->flag);
    int rc = creds_read_line(prompt, &c->text);
    if (rc < 0)
        fprintf(stderr, "ferry %s: %s-stdin: %s\n", cmd, c->flag,
                rc == FERRY_EINVAL    ? "no line on stdin"
                : rc == FERRY_ETOOBIG ? "the line is too long"
                                      : strerror(-rc));
    return rc;
}

int creds_load(const char *cmd, struct creds *c)
{
    int rc = 0;
    if (c->given > 1) {
        fprintf(stderr, "ferry %s: give one of %s, %s-file and %s-stdin\n", cmd, c->flag, c->flag,
                c->flag);
        return -1;
    }
    if (c->arg != NULL)
        creds_load_arg(c);
    else if (c->file != NULL)
        rc = creds_load_file(cmd, c);
    else if (c->from_stdin)
        rc = creds_load_stdin(cmd, c);
    return rc < 0 ? -1 : 0;
}

/* Split "user:password"; a missing password comes from nowhere else. */
static int creds_split(struct creds *c)
{
    const char *colon = strchr(c->text, ':');
    if (colon == NULL || colon == c->text) {
        fprintf(stderr, "ferry: credentials must be USER:PASSWORD\n");
        return FERRY_EINVAL;
    }
    c->username = xstrndup(c->text, (size_t)(colon - c->text));
    c->password = xstrdup(colon + 1);
    return 0;
}

/* PREFIX_USERNAME and PREFIX_PASSWORD, both set and the name not empty: 1; else 0. */
static int creds_from_env(struct creds *c, const char *env_prefix)
{
    char name[64];
    snprintf(name, sizeof(name), "%s_USERNAME", env_prefix);
    const char *user = getenv(name);
    snprintf(name, sizeof(name), "%s_PASSWORD", env_prefix);
    if (user == NULL || *user == '\0' || getenv(name) == NULL)
        return 0;
    c->username = xstrdup(user);
    c->password = config_secret_take_env(name);
    return 1;
}

/*
 * The Docker config at `authfile` (NULL: Docker's own), read now so that a
 * broken file is said at once; its helpers run when the registry is asked.
 */
static int creds_from_dockerconfig(struct creds *c, const char *registry, const char *authfile)
{
    char *path = authfile != NULL ? xstrdup(authfile) : dockerconfig_default_path();
    struct dockerconfig_creds found;
    char *err = NULL;
    int rc = path != NULL ? dockerconfig_find(path, registry, &found, &err) : FERRY_ENOTFOUND;
    if (rc == FERRY_ENOTFOUND)
        rc = 0;
    else if (rc < 0)
        fprintf(stderr, "ferry: %s\n", err ? err : ferry_strerror(rc));
    else
        dockerconfig_creds_release(&found);
    if (rc == 0) {
        struct credentials_spec spec = {
            .kind = CREDENTIALS_DOCKER_CONFIG, .host = registry, .path = path};
        c->credentials = credentials_new(&spec);
    }
    free(err);
    free(path);
    return rc;
}

int creds_resolve(struct creds *c, const char *env_prefix, const char *registry,
                  const char *authfile)
{
    int rc;
    char *label = NULL;
    if (c->text != NULL) {
        rc = creds_split(c);
        label = xasprintf("%s%s", c->flag,
                          c->file != NULL ? "-file"
                          : c->from_stdin ? "-stdin"
                                          : "");
    } else if (creds_from_env(c, env_prefix)) {
        rc = 0;
        label = xasprintf("environment %s_USERNAME/%s_PASSWORD", env_prefix, env_prefix);
    } else {
        rc = creds_from_dockerconfig(c, registry, authfile);
    }
    if (rc == 0 && label != NULL) {
        struct credentials_spec spec = {.kind = CREDENTIALS_STATIC,
                                        .host = registry,
                                        .username = c->username,
                                        .password = c->password,
                                        .label = label};
        c->credentials = credentials_new(&spec);
    }
    free(label);
    secret_free(c->text);
    c->text = NULL;
    return rc;
}

void creds_release(struct creds *c)
{
    secret_free(c->text);
    c->text = NULL;
    free(c->username);
    c->username = NULL;
    secret_free(c->password);
    c->password = NULL;
    credentials_unref(c->credentials);
    c->credentials = NULL;
}
