/*
 * Fuzz target for reference_parse() and its companions
 * (common/reference.h).
 *
 * Input: an image reference as a user types it. A parsed reference is
 * checked field by field, formatted, and parsed again: the second parse must
 * give the same fields (formatting is how references reach logs, job keys
 * and the other side of a copy).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "common/digest.h"
#include "common/reference.h"
#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void check_reference(const struct reference *ref)
{
    if (ref->registry == NULL || ref->registry[0] == '\0')
        abort();
    if (!reference_repository_valid(ref->repository))
        abort();
    if (strlen(ref->registry) + 1 + strlen(ref->repository) > REFERENCE_MAX_NAME)
        abort();
    if (ref->tag != NULL && !reference_tag_valid(ref->tag))
        abort();
    if (ref->digest != NULL && !digest_valid(ref->digest))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = xstrndup((const char *)data, size);
    struct reference ref;
    char *err = NULL;

    /* The validators on their own, with whatever the input is. */
    reference_repository_valid(text);
    reference_tag_valid(text);

    memset(&ref, 0xa5, sizeof(ref));
    int rc = reference_parse(&ref, text, &err);
    if (rc == 0) {
        if (err != NULL)
            abort();
        check_reference(&ref);
        char *formatted = reference_format(&ref);
        if (formatted == NULL)
            abort();
        struct reference again;
        if (reference_parse(&again, formatted, NULL) != 0)
            abort();
        if (!same(ref.registry, again.registry) || !same(ref.repository, again.repository) ||
            !same(ref.tag, again.tag) || !same(ref.digest, again.digest))
            abort();
        reference_release(&again);
        free(formatted);
        reference_release(&ref);
    } else {
        fuzz_check_message(err);
        if (ref.registry != NULL || ref.repository != NULL || ref.tag != NULL || ref.digest != NULL)
            abort();
    }
    reference_release(&ref);
    free(err);
    free(text);
    return 0;
}
