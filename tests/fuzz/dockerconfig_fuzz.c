/*
 * Fuzz target for dockerconfig_lookup() (replicator/registry/dockerconfig.h).
 *
 * Input: a Docker config.json. dockerconfig_lookup() reads a path, so each
 * input is written to config.json in a temporary directory this process
 * makes once (under $TMPDIR, else /tmp) and removes at exit. The file is
 * then asked for the registries Ferry meets most: Docker Hub under its
 * names, a registry with a port, and an IPv6 literal.
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
#include "registry/dockerconfig.h"
#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void setup(void)
{
    fuzz_file_setup("docker", "config.json");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const registries[] = {
        "docker.io", "registry-1.docker.io", "registry.example:5000",
        "ghcr.io",   "[::1]:5000",           "localhost:5000",
    };

    if (fuzz_file_path == NULL)
        setup();
    if (size > DOCKERCONFIG_MAX_BYTES + 1)
        return 0;
    fuzz_file_write(data, size);

    for (size_t i = 0; i < sizeof(registries) / sizeof(registries[0]); i++) {
        char *username = (char *)1;
        char *password = (char *)1;
        char *err = NULL;
        int rc = dockerconfig_lookup(fuzz_file_path, registries[i], &username, &password, &err);
        if (rc == 0) {
            if (username == NULL || password == NULL || password[0] == '\0' || err != NULL)
                abort();
        } else {
            if (username != NULL || password != NULL)
                abort();
            fuzz_check_message(err);
        }
        free(username);
        free(password);
        free(err);
    }
    return 0;
}
