/*
 * Fuzz target for config_load() (replicator/config/config.h).
 *
 * Input: a config file. config_load() reads a path, so each input is
 * written to ferry.yml in a temporary directory this process makes once
 * (under $TMPDIR, else /tmp) and removes at exit; relative paths in the
 * config (password_file, ca_file...) resolve inside that directory, and
 * config_load() only reads what they name. A loaded config is then queried
 * the way the engine queries it (rules, destinations, registries).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>

#include "fuzz.h"
#include "config/config.h"
#include "common/log.h"
#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void setup(void)
{
    fuzz_file_setup("config", "ferry.yml");
    /* The inline-password warning would fill the fuzzer's output. */
    log_threshold = FERRY_LOG_ERROR;
    /* For password_env and webhook_token_env to find. */
    setenv("FERRY_FUZZ_PASSWORD", "secret", 1);
}

static void query(const struct config *c)
{
    static const char *const repositories[] = {"library/alpine", "team/app", "a", "x/y/z"};
    static const char *const tags[] = {"latest", "v1.2.3", "sha256-abc.sig"};

    for (size_t i = 0; i < c->n_rules; i++) {
        const struct config_rule *rule = &c->rules[i];
        if (config_registry_find(c, rule->source) == NULL || rule->n_destinations == 0)
            abort();
        for (size_t k = 0; k < rule->n_destinations; k++) {
            if (config_registry_find(c, rule->destinations[k].registry) == NULL)
                abort();
            for (size_t r = 0; r < sizeof(repositories) / sizeof(repositories[0]); r++)
                free(config_destination_repository(&rule->destinations[k], repositories[r]));
        }
        for (size_t r = 0; r < sizeof(repositories) / sizeof(repositories[0]); r++) {
            config_repository_selected(c, rule->source, repositories[r]);
            for (size_t t = 0; t < sizeof(tags) / sizeof(tags[0]); t++)
                config_tag_selected(c, rule->source, repositories[r], tags[t]);
        }
    }
    for (size_t i = 0; i < c->n_registries; i++) {
        const struct config_registry *reg = &c->registries[i];
        if (reg->name == NULL || reg->url == NULL || reg->host == NULL)
            abort();
        if ((reg->username == NULL) != (reg->password == NULL))
            abort();
        if ((reg->cert_file == NULL) != (reg->key_file == NULL))
            abort();
    }
    char *host = NULL;
    int port = 0;
    if (config_split_listen(c->listen, &host, &port) != 0)
        abort();
    free(host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_file_path == NULL)
        setup();
    if (size > CONFIG_MAX_BYTES + 1)
        return 0;
    fuzz_file_write(data, size);

    struct config *c = (struct config *)1;
    char *err = NULL;
    int rc = config_load(fuzz_file_path, &c, &err);
    if (rc == 0) {
        if (c == NULL || err != NULL)
            abort();
        query(c);
        config_free(c);
    } else {
        if (c != NULL)
            abort();
        fuzz_check_message(err);
    }
    free(err);
    return 0;
}
