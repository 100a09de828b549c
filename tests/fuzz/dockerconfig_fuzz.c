/*
 * Fuzz target for dockerconfig_lookup() (replicator/dockerconfig.h).
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

#include "dockerconfig.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *config_dir;
static char *config_path;

static void remove_dir(void)
{
    unlink(config_path);
    rmdir(config_dir);
    free(config_path);
    free(config_dir);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    config_dir = xasprintf("%s/ferry-fuzz-docker.XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(config_dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    config_path = xasprintf("%s/config.json", config_dir);
    atexit(remove_dir);
}

static void write_input(const uint8_t *data, size_t size)
{
    int fd = open(config_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("open");
        abort();
    }
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n <= 0) {
            perror("write");
            abort();
        }
        data += n;
        size -= (size_t)n;
    }
    close(fd);
}

static void check_message(const char *err)
{
    if (err == NULL || err[0] == '\0')
        abort();
    for (const char *c = err; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const registries[] = {
        "docker.io", "registry-1.docker.io", "registry.example:5000",
        "ghcr.io",   "[::1]:5000",           "localhost:5000",
    };

    if (config_dir == NULL)
        setup();
    if (size > DOCKERCONFIG_MAX_BYTES + 1)
        return 0;
    write_input(data, size);

    for (size_t i = 0; i < sizeof(registries) / sizeof(registries[0]); i++) {
        char *username = (char *)1;
        char *password = (char *)1;
        char *err = NULL;
        int rc = dockerconfig_lookup(config_path, registries[i], &username, &password, &err);
        if (rc == 0) {
            if (username == NULL || password == NULL || password[0] == '\0' || err != NULL)
                abort();
        } else {
            if (username != NULL || password != NULL)
                abort();
            check_message(err);
        }
        free(username);
        free(password);
        free(err);
    }
    return 0;
}
