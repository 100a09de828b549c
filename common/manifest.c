#include "common/manifest.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/xalloc.h"

#define MANIFEST_SCHEMA1         "application/vnd.docker.distribution.manifest.v1+json"
#define MANIFEST_SCHEMA1_SIGNED  "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define MANIFEST_SCHEMA1_MESSAGE "docker schema1 manifests are not supported"

/* Largest size a JSON number carries exactly: 2^53 - 1. */
#define MANIFEST_MAX_SIZE 9007199254740991.0

/* Room for a field path such as "manifests[9999].platform.architecture". */
#define MANIFEST_PATH_MAX 96

static const char *const manifest_known[] = {MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX,
                                             MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_LIST};

const char *manifest_accept(void)
{
    return MEDIA_OCI_MANIFEST ", " MEDIA_OCI_INDEX ", " MEDIA_DOCKER_MANIFEST
                              ", " MEDIA_DOCKER_LIST;
}

/* The MEDIA_* constant `media_type` names, or NULL. */
static const char *manifest_canonical(const char *media_type)
{
    if (media_type == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(manifest_known) / sizeof(manifest_known[0]); i++) {
        if (strcasecmp(media_type, manifest_known[i]) == 0)
            return manifest_known[i];
    }
    return NULL;
}

bool manifest_media_type_known(const char *media_type)
{
    return manifest_canonical(media_type) != NULL;
}

static bool manifest_is_schema1(const char *media_type)
{
    return strcasecmp(media_type, MANIFEST_SCHEMA1) == 0 ||
           strcasecmp(media_type, MANIFEST_SCHEMA1_SIGNED) == 0;
}

/* One half of a media type, per the OCI image-spec's descriptor schema. */
static bool manifest_restricted_name(const char *s, size_t len)
{
    if (len == 0 || len > 127)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || strchr("!#$&^_.+-", c) == NULL))
            return false;
    }
    return true;
}

/*
 * Media types end up in Accept and Content-Type headers of later requests,
 * so they must be plain type/subtype names and nothing else.
 */
static bool manifest_media_type_valid(const char *s)
{
    const char *slash = strchr(s, '/');
    return slash != NULL && manifest_restricted_name(s, (size_t)(slash - s)) &&
           manifest_restricted_name(slash + 1, strlen(slash + 1));
}

static void manifest_path(char out[MANIFEST_PATH_MAX], const char *where, const char *name)
{
    snprintf(out, MANIFEST_PATH_MAX, "%s%s%s", where, where[0] != '\0' ? "." : "", name);
}

/*
 * Find the member `name` of `obj`. Keys compare case-insensitively, as Go's
 * encoding/json (and so the registry) matches them, and a key that appears
 * twice is refused: two readers of one document must not see two manifests.
 */
static int manifest_field(const cJSON *obj, const char *where, const char *name, const cJSON **out,
                          char **err)
{
    const cJSON *child;
    *out = NULL;
    cJSON_ArrayForEach(child, obj)
    {
        if (child->string == NULL || strcasecmp(child->string, name) != 0)
            continue;
        if (*out != NULL) {
            char path[MANIFEST_PATH_MAX];
            manifest_path(path, where, name);
            return ferry_error_set(err, FERRY_EPARSE, "%s appears more than once", path);
        }
        *out = child;
    }
    return 0;
}

enum manifest_string_kind {
    MANIFEST_TEXT,       /* any text without control characters */
    MANIFEST_MEDIA_TYPE, /* type/subtype */
};

/*
 * Copy the string member `name` of `obj` into *value. A missing member (or a
 * JSON null) leaves *value NULL, which is an error only when `required`.
 */
static int manifest_string(const cJSON *obj, const char *where, const char *name, bool required,
                           enum manifest_string_kind kind, char **value, char **err)
{
    const cJSON *item;
    char path[MANIFEST_PATH_MAX];
    int rc = manifest_field(obj, where, name, &item, err);

    *value = NULL;
    if (rc < 0)
        return rc;
    manifest_path(path, where, name);
    if (item == NULL || (!required && cJSON_IsNull(item))) {
        if (required)
            return ferry_error_set(err, FERRY_EPARSE, "%s is missing", path);
        return 0;
    }
    if (!cJSON_IsString(item))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not a string", path);
    const char *s = item->valuestring;
    if (kind == MANIFEST_MEDIA_TYPE && !manifest_media_type_valid(s))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not a valid media type", path);
    for (const char *c = s; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return ferry_error_set(err, FERRY_EPARSE, "%s has control characters", path);
    }
    *value = xstrdup(s);
    return 0;
}

static void manifest_descriptor_release(struct descriptor *d)
{
    free(d->media_type);
    free(d->digest);
    free(d->artifact_type);
    free(d->platform_os);
    free(d->platform_arch);
    free(d->platform_variant);
    memset(d, 0, sizeof(*d));
}

static int manifest_descriptor(const cJSON *obj, const char *where, struct descriptor *d,
                               char **err)
{
    const cJSON *item;
    char path[MANIFEST_PATH_MAX];
    int rc;

    if (!cJSON_IsObject(obj))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not an object", where);
    rc = manifest_string(obj, where, "mediaType", true, MANIFEST_MEDIA_TYPE, &d->media_type, err);
    if (rc < 0)
        return rc;
    rc = manifest_string(obj, where, "digest", true, MANIFEST_TEXT, &d->digest, err);
    if (rc < 0)
        return rc;
    if (!digest_valid(d->digest))
        return ferry_error_set(err, FERRY_EPARSE, "%s.digest is not a valid digest", where);

    rc = manifest_field(obj, where, "size", &item, err);
    if (rc < 0)
        return rc;
    if (item == NULL)
        return ferry_error_set(err, FERRY_EPARSE, "%s.size is missing", where);
    /*
     * The range check comes first so that the conversion below is defined;
     * the round trip then rejects fractions.
     */
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0.0) ||
        item->valuedouble > MANIFEST_MAX_SIZE ||
        (double)(int64_t)item->valuedouble != item->valuedouble)
        return ferry_error_set(err, FERRY_EPARSE, "%s.size is not a valid size", where);
    d->size = (int64_t)item->valuedouble;

    rc = manifest_string(obj, where, "artifactType", false, MANIFEST_MEDIA_TYPE, &d->artifact_type,
                         err);
    if (rc < 0)
        return rc;

    rc = manifest_field(obj, where, "platform", &item, err);
    if (rc < 0 || item == NULL || cJSON_IsNull(item))
        return rc;
    manifest_path(path, where, "platform");
    if (!cJSON_IsObject(item))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not an object", path);
    rc = manifest_string(item, path, "os", false, MANIFEST_TEXT, &d->platform_os, err);
    if (rc == 0)
        rc = manifest_string(item, path, "architecture", false, MANIFEST_TEXT, &d->platform_arch,
                             err);
    if (rc == 0)
        rc =
            manifest_string(item, path, "variant", false, MANIFEST_TEXT, &d->platform_variant, err);
    return rc;
}

/* Parse the array member `name` of `root` into a fresh descriptor array. */
static int manifest_descriptors(const cJSON *root, const char *name, struct descriptor **out,
                                size_t *count, char **err)
{
    const cJSON *array, *item;
    int rc = manifest_field(root, "", name, &array, err);

    if (rc < 0)
        return rc;
    if (array == NULL)
        return ferry_error_set(err, FERRY_EPARSE, "%s is missing", name);
    if (!cJSON_IsArray(array))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not an array", name);
    int n = cJSON_GetArraySize(array);
    if (n > MANIFEST_MAX_ENTRIES)
        return ferry_error_set(err, FERRY_ETOOBIG, "%s has more than %d entries", name,
                               MANIFEST_MAX_ENTRIES);
    if (n == 0)
        return 0;
    /* Count first so that manifest_release() frees a half-filled array. */
    *out = xcalloc((size_t)n, sizeof(**out));
    *count = (size_t)n;
    size_t i = 0;
    cJSON_ArrayForEach(item, array)
    {
        char where[MANIFEST_PATH_MAX];
        snprintf(where, sizeof(where), "%s[%zu]", name, i);
        rc = manifest_descriptor(item, where, &(*out)[i], err);
        if (rc < 0)
            return rc;
        i++;
    }
    return 0;
}

/*
 * The Content-Type of the answer without parameters, lowercased, or NULL when
 * it says nothing about the manifest.
 */
static char *manifest_content_type(const char *content_type)
{
    if (content_type == NULL)
        return NULL;
    size_t len = strcspn(content_type, ";");
    while (len > 0 && (content_type[len - 1] == ' ' || content_type[len - 1] == '\t'))
        len--;
    while (len > 0 && (*content_type == ' ' || *content_type == '\t')) {
        content_type++;
        len--;
    }
    char *type = xstrndup(content_type, len);
    for (char *c = type; *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    }
    if (type[0] == '\0' || strcmp(type, "application/json") == 0 ||
        strcmp(type, "text/plain") == 0 || strcmp(type, "application/octet-stream") == 0) {
        free(type);
        return NULL;
    }
    return type;
}

static cJSON *manifest_load(const char *bytes, size_t len)
{
    /* cJSON reads C strings; a NUL inside the document would hide what follows. */
    if (memchr(bytes, '\0', len) != NULL)
        return NULL;
    char *copy = xstrndup(bytes, len);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(copy, &end, false);
    if (root != NULL && end[strspn(end, " \t\r\n")] != '\0') {
        cJSON_Delete(root);
        root = NULL;
    }
    free(copy);
    return root;
}

static int manifest_parse_json(struct manifest *m, const cJSON *root, const char *content_type,
                               char **err)
{
    const cJSON *item;
    char *field_type = NULL;
    char *header_type = NULL;
    char shown[FERRY_PRINTABLE_MAX], shown2[FERRY_PRINTABLE_MAX];
    const char *media_type = NULL;
    int rc;

    if (!cJSON_IsObject(root))
        return ferry_error_set(err, FERRY_EPARSE, "manifest is not a json object");

    rc = manifest_field(root, "", "schemaVersion", &item, err);
    if (rc < 0)
        return rc;
    if (item != NULL) {
        if (cJSON_IsNumber(item) && item->valuedouble == 1.0)
            return ferry_error_set(err, FERRY_EUNSUPPORTED, MANIFEST_SCHEMA1_MESSAGE);
        if (!cJSON_IsNumber(item) || item->valuedouble != 2.0)
            return ferry_error_set(err, FERRY_EPARSE, "schemaVersion is not 2");
    }

    /* mediaType is read as plain text first so that schema1 gets its own message. */
    rc = manifest_string(root, "", "mediaType", false, MANIFEST_TEXT, &field_type, err);
    if (rc < 0)
        return rc;
    header_type = manifest_content_type(content_type);
    if ((field_type != NULL && manifest_is_schema1(field_type)) ||
        (header_type != NULL && manifest_is_schema1(header_type))) {
        rc = ferry_error_set(err, FERRY_EUNSUPPORTED, MANIFEST_SCHEMA1_MESSAGE);
        goto out;
    }
    if (header_type != NULL && field_type != NULL && strcasecmp(header_type, field_type) != 0) {
        rc = ferry_error_set(err, FERRY_EPARSE, "content type %s contradicts mediaType %s",
                             ferry_printable(header_type, shown),
                             ferry_printable(field_type, shown2));
        goto out;
    }

    const char *declared = header_type != NULL ? header_type : field_type;
    if (declared != NULL) {
        media_type = manifest_canonical(declared);
        if (media_type == NULL) {
            rc = ferry_error_set(err, FERRY_EUNSUPPORTED, "unsupported manifest media type %s",
                                 ferry_printable(declared, shown));
            goto out;
        }
    } else {
        const cJSON *manifests, *config, *layers;
        if ((rc = manifest_field(root, "", "manifests", &manifests, err)) < 0 ||
            (rc = manifest_field(root, "", "config", &config, err)) < 0 ||
            (rc = manifest_field(root, "", "layers", &layers, err)) < 0)
            goto out;
        if (manifests != NULL)
            media_type = MEDIA_OCI_INDEX;
        else if (config != NULL && layers != NULL)
            media_type = MEDIA_OCI_MANIFEST;
        else {
            rc = ferry_error_set(err, FERRY_EPARSE,
                                 "manifest has no mediaType and is neither an index nor an image");
            goto out;
        }
    }
    m->media_type = xstrdup(media_type);
    bool index =
        strcmp(media_type, MEDIA_OCI_INDEX) == 0 || strcmp(media_type, MEDIA_DOCKER_LIST) == 0;
    m->kind = index ? MANIFEST_INDEX : MANIFEST_IMAGE;

    if (index) {
        const cJSON *config, *layers;
        if ((rc = manifest_field(root, "", "config", &config, err)) < 0 ||
            (rc = manifest_field(root, "", "layers", &layers, err)) < 0)
            goto out;
        if (config != NULL || layers != NULL) {
            rc = ferry_error_set(err, FERRY_EPARSE, "an index must not have config or layers");
            goto out;
        }
        rc = manifest_descriptors(root, "manifests", &m->manifests, &m->n_manifests, err);
        if (rc < 0)
            goto out;
    } else {
        const cJSON *manifests;
        if ((rc = manifest_field(root, "", "manifests", &manifests, err)) < 0)
            goto out;
        if (manifests != NULL) {
            rc = ferry_error_set(err, FERRY_EPARSE, "an image manifest must not have manifests");
            goto out;
        }
        if ((rc = manifest_field(root, "", "config", &item, err)) < 0)
            goto out;
        if (item == NULL) {
            rc = ferry_error_set(err, FERRY_EPARSE, "config is missing");
            goto out;
        }
        rc = manifest_descriptor(item, "config", &m->config, err);
        if (rc < 0)
            goto out;
        rc = manifest_descriptors(root, "layers", &m->layers, &m->n_layers, err);
        if (rc < 0)
            goto out;
    }

    rc = manifest_string(root, "", "artifactType", false, MANIFEST_MEDIA_TYPE, &m->artifact_type,
                         err);
    if (rc < 0)
        goto out;
    if ((rc = manifest_field(root, "", "subject", &item, err)) < 0)
        goto out;
    if (item != NULL && !cJSON_IsNull(item)) {
        m->has_subject = true;
        rc = manifest_descriptor(item, "subject", &m->subject, err);
    }

out:
    free(field_type);
    free(header_type);
    return rc;
}

int manifest_parse(struct manifest *m, const char *bytes, size_t len, const char *content_type,
                   char **err)
{
    if (m == NULL || bytes == NULL) {
        if (m != NULL)
            memset(m, 0, sizeof(*m));
        return ferry_error_set(err, FERRY_EINVAL, "no manifest to parse");
    }
    memset(m, 0, sizeof(*m));
    if (len > MANIFEST_MAX_BYTES)
        return ferry_error_set(err, FERRY_ETOOBIG, "manifest is larger than %d bytes",
                               MANIFEST_MAX_BYTES);
    if (len == 0)
        return ferry_error_set(err, FERRY_EPARSE, "manifest is empty");

    cJSON *root = manifest_load(bytes, len);
    if (root == NULL) {
        /* A schema1 content type over a body cJSON refuses is still schema1. */
        char *header_type = manifest_content_type(content_type);
        bool schema1 = header_type != NULL && manifest_is_schema1(header_type);
        free(header_type);
        if (schema1)
            return ferry_error_set(err, FERRY_EUNSUPPORTED, MANIFEST_SCHEMA1_MESSAGE);
        return ferry_error_set(err, FERRY_EPARSE, "manifest is not valid json");
    }
    int rc = manifest_parse_json(m, root, content_type, err);
    cJSON_Delete(root);
    if (rc < 0)
        manifest_release(m);
    return rc;
}

void manifest_release(struct manifest *m)
{
    if (m == NULL)
        return;
    free(m->media_type);
    free(m->artifact_type);
    manifest_descriptor_release(&m->config);
    for (size_t i = 0; i < m->n_layers; i++)
        manifest_descriptor_release(&m->layers[i]);
    free(m->layers);
    for (size_t i = 0; i < m->n_manifests; i++)
        manifest_descriptor_release(&m->manifests[i]);
    free(m->manifests);
    manifest_descriptor_release(&m->subject);
    memset(m, 0, sizeof(*m));
}
