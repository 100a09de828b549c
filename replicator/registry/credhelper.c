#include "registry/credhelper.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/secret.h"
#include "common/xalloc.h"
#include "registry/spawn.h"

#define CREDHELPER_PREFIX   "docker-credential-"
#define CREDHELPER_NAME_MAX 64
/* What helpers print when they have nothing for that server. */
#define CREDHELPER_NOT_FOUND "credentials not found"

struct credhelper_call {
    uv_timer_t refusal; /* only to refuse a bad name from the loop */
    char *program;      /* docker-credential-NAME */
    char *error;        /* for the refusal */
    uint64_t timeout_ms;
    credhelper_cb cb;
    void *arg;
};

/* 1 to 64 of [A-Za-z0-9._-]: nothing that makes a path, nothing a shell would read. */
static bool credhelper_name_valid(const char *name)
{
    size_t n = 0;
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n == CREDHELPER_NAME_MAX)
            return false;
    }
    return n > 0;
}

static void credhelper_call_free(struct credhelper_call *call)
{
    free(call->program);
    free(call->error);
    free(call);
}

/* True when `text` says, in any case, that the helper has no credentials. */
static bool credhelper_says_not_found(const char *text, size_t len)
{
    size_t n = strlen(CREDHELPER_NOT_FOUND);
    for (size_t i = 0; i + n <= len; i++) {
        if (strncasecmp(text + i, CREDHELPER_NOT_FOUND, n) == 0)
            return true;
    }
    return false;
}

/* Wipe every string of a parsed document (keys too): it was a helper's stdout. */
static void credhelper_json_wipe(cJSON *item)
{
    for (; item != NULL; item = item->next) {
        secret_wipe_str(item->valuestring);
        secret_wipe_str(item->string);
        credhelper_json_wipe(item->child);
    }
}

/*
 * The program ran to an exit status of 0: hand its credentials to the
 * caller, or return why there are none (caller frees). No part of `out` ever
 * reaches the message.
 */
static char *credhelper_answer(struct credhelper_call *call, const struct spawn_result *res)
{
    char *error = NULL;
    cJSON *json = cJSON_ParseWithLength(res->out, res->out_len);
    const cJSON *username = cJSON_GetObjectItemCaseSensitive(json, "Username");
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(json, "Secret");
    if (!cJSON_IsObject(json))
        error = xasprintf("%s: its output is not JSON", call->program);
    else if (!cJSON_IsString(username) || !cJSON_IsString(secret))
        error = xasprintf("%s: its output has no Username and Secret strings", call->program);
    else if (username->valuestring[0] == '\0')
        error = xasprintf("%s: it returned an empty Username", call->program);
    else if (secret->valuestring[0] == '\0')
        error = xasprintf("%s: it returned an empty Secret", call->program);
    else
        call->cb(0, NULL, username->valuestring, secret->valuestring, call->arg);
    /* The parsed document holds the secret too. */
    if (json != NULL)
        credhelper_json_wipe(json);
    cJSON_Delete(json);
    return error;
}

static void credhelper_ran(int rc, const struct spawn_result *res, void *arg)
{
    struct credhelper_call *call = arg;
    char *error = NULL;
    int code = FERRY_EAUTH;

    if (rc == 0 && !res->timed_out && !res->canceled && res->term_signal == 0 &&
        res->exit_status == 0 && !res->out_truncated) {
        error = credhelper_answer(call, res);
        if (error == NULL)
            goto out;
    }
    if (rc == 0 && res->canceled) {
        code = FERRY_ECANCELED;
    } else if (rc == 0 && res->timed_out) {
        code = FERRY_ETIMEOUT;
    } else if (rc == 0 && (credhelper_says_not_found(res->out, res->out_len) ||
                           credhelper_says_not_found(res->err, res->err_len))) {
        code = FERRY_ENOTFOUND;
        free(error);
        error = xasprintf("%s: credentials not found", call->program);
    } else if (rc == 0 && res->exit_status == 0 && res->out_truncated) {
        error =
            xasprintf("%s: it printed more than %d bytes", call->program, CREDHELPER_OUTPUT_MAX);
    }
    if (error == NULL) {
        char *why = spawn_error_text(rc, res, call->timeout_ms);
        error = xasprintf("%s: %s", call->program, why);
        free(why);
    }
    call->cb(code, error, NULL, NULL, call->arg);
out:
    free(error);
    credhelper_call_free(call);
}

static void credhelper_refused(uv_handle_t *handle)
{
    struct credhelper_call *call = handle->data;
    call->cb(FERRY_EINVAL, call->error, NULL, NULL, call->arg);
    credhelper_call_free(call);
}

void credhelper_get(uv_loop_t *loop, const char *name, const char *server_url, uint64_t timeout_ms,
                    credhelper_cb cb, void *arg)
{
    struct credhelper_call *call = xcalloc(1, sizeof(*call));
    call->cb = cb;
    call->arg = arg;
    call->timeout_ms = timeout_ms;

    if (name == NULL || !credhelper_name_valid(name) || server_url == NULL) {
        char printable[FERRY_PRINTABLE_MAX];
        if (name == NULL || !credhelper_name_valid(name))
            call->error = xasprintf(
                "credential helper name \"%s\" is not 1 to %d of A-Z a-z 0-9 . _ -",
                ferry_printable(name != NULL ? name : "", printable), CREDHELPER_NAME_MAX);
        else
            call->error = xasprintf(CREDHELPER_PREFIX "%s: no server URL to ask for", name);
        /* A handle closed at once: its close callback is the next loop turn. */
        (void)uv_timer_init(loop, &call->refusal); /* cannot fail on Unix */
        call->refusal.data = call;
        uv_close((uv_handle_t *)&call->refusal, credhelper_refused);
        return;
    }

    call->program = xasprintf(CREDHELPER_PREFIX "%s", name);
    const char *argv[] = {call->program, "get", NULL};
    /* Docker writes the server URL without a newline; helpers read to end of file. */
    struct spawn_options opts = {
        .argv = argv,
        .input = server_url,
        .input_len = strlen(server_url),
        .timeout_ms = timeout_ms,
        .output_max = CREDHELPER_OUTPUT_MAX,
    };
    spawn_run(loop, &opts, credhelper_ran, call);
}
