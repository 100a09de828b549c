/*
 * Fuzz target for manifest_parse() (common/manifest.h).
 *
 * Input: the bytes of a manifest or index as a registry answers them,
 * optionally preceded by one line "Content-Type: VALUE\n" that stands for the
 * answer's Content-Type (without it the parser sees NULL and goes by the
 * document alone). Beyond "no crash, no leak", the target checks what the
 * header promises: on success every descriptor is complete and checked, and
 * the bytes parse the same when read back with the media type found; on
 * failure the manifest is zeroed and the message is one printable line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "common/digest.h"
#include "common/manifest.h"
#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a finding) unless `err` is a one-line message of printable bytes. */
static void check_descriptor(const struct descriptor *d)
{
    if (d->media_type == NULL || !digest_valid(d->digest))
        abort();
    if (d->size < 0 || d->size > ((int64_t)1 << 53) - 1)
        abort();
}

static bool is_zero(const void *p, size_t len)
{
    const unsigned char *bytes = p;
    for (size_t i = 0; i < len; i++) {
        if (bytes[i] != 0)
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body;
    size_t len;
    char *content_type = fuzz_content_type(data, size, &body, &len);

    struct manifest m;
    char *err = NULL;
    memset(&m, 0xa5, sizeof(m));
    int rc = manifest_parse(&m, body, len, content_type, &err);
    if (rc == 0) {
        if (err != NULL || !manifest_media_type_known(m.media_type))
            abort();
        if (m.kind == MANIFEST_IMAGE) {
            check_descriptor(&m.config);
            if (m.n_manifests != 0)
                abort();
        } else if (m.kind == MANIFEST_INDEX) {
            if (m.n_layers != 0)
                abort();
        } else {
            abort();
        }
        if (m.n_layers > MANIFEST_MAX_ENTRIES || m.n_manifests > MANIFEST_MAX_ENTRIES)
            abort();
        for (size_t i = 0; i < m.n_layers; i++)
            check_descriptor(&m.layers[i]);
        for (size_t i = 0; i < m.n_manifests; i++)
            check_descriptor(&m.manifests[i]);
        if (m.has_subject)
            check_descriptor(&m.subject);
        bool index_type = strcmp(m.media_type, MEDIA_OCI_INDEX) == 0 ||
                          strcmp(m.media_type, MEDIA_DOCKER_LIST) == 0;
        if (index_type != (m.kind == MANIFEST_INDEX))
            abort();
        /*
         * Ferry pushes the bytes with Content-Type set to the media type it
         * found; read back that way, they must mean the same thing.
         */
        struct manifest again;
        if (manifest_parse(&again, body, len, m.media_type, NULL) != 0)
            abort();
        if (again.kind != m.kind || strcmp(again.media_type, m.media_type) != 0 ||
            again.n_layers != m.n_layers || again.n_manifests != m.n_manifests ||
            again.has_subject != m.has_subject)
            abort();
        manifest_release(&again);
        manifest_release(&m);
        if (!is_zero(&m, sizeof(m)))
            abort();
        manifest_release(&m);
    } else {
        fuzz_check_message(err);
        if (!is_zero(&m, sizeof(m)))
            abort();
    }
    free(err);
    free(content_type);
    return 0;
}
