/*
 * Fuzz target for registry_list_page_parse() (replicator/registry/registry.h): one
 * page of a catalog or tag listing, as a hostile registry answers it.
 *
 * Input: the first byte picks the kind (even: repositories, odd: tags) and,
 * in its high bits, the cap (0 to 127 names); the rest is the body. Checks
 * the contract: 0, FERRY_EPROTO or FERRY_ETOOBIG; never more names than the
 * cap; every name kept passes the validator of its kind; every name dropped
 * went to the skip callback or was not a string.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/errors.h"
#include "fuzz.h"
#include "common/reference.h"
#include "registry/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count_skip(const char *value, void *arg)
{
    (void)value;
    (*(size_t *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool repositories = (data[0] & 1) == 0;
    size_t cap = data[0] >> 1;
    char **items = NULL;
    size_t n = 0, skipped = 0;
    int rc = registry_list_page_parse((const char *)data + 1, size - 1, repositories, cap, &items,
                                      &n, count_skip, &skipped);
    if (rc != 0 && rc != FERRY_EPROTO && rc != FERRY_ETOOBIG)
        abort();
    if (n > cap || (rc == FERRY_EPROTO && n != 0))
        abort();
    for (size_t i = 0; i < n; i++) {
        if (repositories ? !reference_repository_valid(items[i]) : !reference_tag_valid(items[i]))
            abort();
        free(items[i]);
    }
    free(items);
    return 0;
}
