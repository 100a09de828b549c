/*
 * manifest: reading image manifests and indexes (OCI and Docker v2). The
 * exact bytes are never re-serialised: the caller keeps them, pushes them as
 * they came and digests them; this module only reads what they point at.
 */
#ifndef FERRY_MANIFEST_H
#define FERRY_MANIFEST_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_MAX_BYTES (4 * 1024 * 1024)
/* Most layers of an image, and most manifests of an index. */
#define MANIFEST_MAX_ENTRIES 10000

#define MEDIA_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define MEDIA_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MEDIA_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"

enum manifest_kind {
    MANIFEST_IMAGE = 1, /* OCI image manifest or Docker v2 manifest */
    MANIFEST_INDEX = 2, /* OCI index or Docker manifest list */
};

struct descriptor {
    char *media_type;       /* never NULL in a parsed manifest */
    char *digest;           /* "sha256:<hex>", checked with digest_valid() */
    int64_t size;           /* 0 .. 2^53 - 1 */
    char *artifact_type;    /* NULL when absent */
    char *platform_os;      /* NULL when absent */
    char *platform_arch;    /* NULL when absent */
    char *platform_variant; /* NULL when absent */
};

struct manifest {
    enum manifest_kind kind;
    char *media_type;         /* one of the four MEDIA_* strings above, exactly */
    char *artifact_type;      /* top-level "artifactType"; NULL when absent */
    struct descriptor config; /* image only */
    struct descriptor *layers;
    size_t n_layers;
    struct descriptor *manifests; /* index only */
    size_t n_manifests;
    bool has_subject;
    struct descriptor subject; /* zeroed unless has_subject */
};

/** The value of an Accept header that asks for the four media types above. Static. */
const char *manifest_accept(void);

/**
 * True when `media_type` is one of the four MEDIA_* types (compared
 * case-insensitively, without parameters). False for NULL.
 */
bool manifest_media_type_known(const char *media_type);

/**
 * Parse `len` bytes of a manifest or index (they need not be NUL-terminated)
 * into `m`, whose previous contents are overwritten without being freed.
 * `content_type` is the Content-Type of the answer, or NULL.
 *
 * The media type comes from `content_type` (parameters after ';' ignored;
 * NULL, "", "application/json", "text/plain" and "application/octet-stream"
 * say nothing), else from the "mediaType" field, else from the shape: a
 * "manifests" array makes an OCI index, "config" and "layers" an OCI
 * manifest. A content type that contradicts a "mediaType" field is an error,
 * as is an image with "manifests" or an index with "config" or "layers"
 * (such ambiguous documents can mean different things to different readers).
 * So is a key that appears twice, compared case-insensitively as Go's JSON
 * decoder (and so the registry) compares them.
 *
 * Every descriptor needs a "mediaType" matching the OCI media type grammar, a
 * "digest" that passes digest_valid() and a "size" that is an integral JSON
 * number from 0 to 2^53 - 1; "artifactType" and "platform" ({"os",
 * "architecture", "variant"}) are optional; "subject" is optional.
 *
 * Returns 0 (release `m` with manifest_release()) or:
 *  - FERRY_ETOOBIG when `len` is over MANIFEST_MAX_BYTES, or there are more
 *    than MANIFEST_MAX_ENTRIES layers or manifests;
 *  - FERRY_EUNSUPPORTED for Docker schema 1 ("docker schema1 manifests are
 *    not supported") and for any other media type than the four above;
 *  - FERRY_EPARSE for anything malformed, with a message naming the field
 *    ("layers[3].digest is not a valid digest");
 *  - FERRY_EINVAL when `m` or `bytes` is NULL.
 * On failure `m` is left zeroed and, when `err` is not NULL, *err receives a
 * one-line message the caller frees.
 */
FERRY_MUST_CHECK int manifest_parse(struct manifest *m, const char *bytes, size_t len,
                                    const char *content_type, char **err);

/** Free everything `m` holds and zero it; safe on a zeroed or released manifest. */
void manifest_release(struct manifest *m);

#endif
