#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/manifest.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"

#define LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_CONFIG "application/vnd.oci.image.config.v1+json"

static const char oci_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_MANIFEST "\","
    "\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1 "\",\"size\":7023},"
    "\"layers\":[{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":32654},"
    "{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D3 "\",\"size\":0,"
    "\"annotations\":{\"a\":\"b\"},\"urls\":[\"https://x\"]}],"
    "\"annotations\":{\"com.example.key\":\"value\"}}";

static void assert_zeroed(const struct manifest *m)
{
    assert_null(m->media_type);
    assert_null(m->layers);
    assert_null(m->manifests);
    assert_null(m->config.digest);
    assert_null(m->subject.digest);
    assert_int_equal(m->n_layers, 0);
    assert_int_equal(m->n_manifests, 0);
    assert_false(m->has_subject);
    assert_int_equal(m->kind, 0);
}

static int parse(const char *json, const char *content_type, struct manifest *m)
{
    char *err = NULL;
    memset(m, 0xa5, sizeof(*m));
    int rc = manifest_parse(m, json, strlen(json), content_type, &err);
    if (rc == 0) {
        if (err != NULL)
            fail_msg("message on success: %s", err);
    } else {
        assert_message(err);
        assert_zeroed(m);
        free(err);
    }
    return rc;
}

/* Parse and expect failure `want_rc` with exactly `want_message` (when not NULL). */
static void assert_rejected(const char *json, const char *content_type, int want_rc,
                            const char *want_message)
{
    struct manifest m;
    char *err = NULL;
    memset(&m, 0xa5, sizeof(m));
    int rc = manifest_parse(&m, json, strlen(json), content_type, &err);
    if (rc != want_rc)
        fail_msg("got %d (%s), want %d for %s", rc, err ? err : "-", want_rc, json);
    assert_zeroed(&m);
    assert_message(err);
    if (want_message != NULL && strcmp(err, want_message) != 0)
        fail_msg("message \"%s\", want \"%s\"", err, want_message);
    free(err);
}

static void test_oci_manifest(void **state)
{
    (void)state;
    struct manifest m;
    assert_int_equal(parse(oci_manifest, MEDIA_OCI_MANIFEST, &m), 0);
    assert_int_equal(m.kind, MANIFEST_IMAGE);
    assert_string_equal(m.media_type, MEDIA_OCI_MANIFEST);
    assert_null(m.artifact_type);
    assert_string_equal(m.config.media_type, OCI_CONFIG);
    assert_string_equal(m.config.digest, D1);
    assert_int_equal(m.config.size, 7023);
    assert_int_equal(m.n_layers, 2);
    assert_string_equal(m.layers[0].media_type, LAYER_GZIP);
    assert_string_equal(m.layers[0].digest, D2);
    assert_int_equal(m.layers[0].size, 32654);
    assert_string_equal(m.layers[1].digest, D3);
    assert_int_equal(m.layers[1].size, 0);
    assert_null(m.layers[1].platform_os);
    assert_null(m.manifests);
    assert_int_equal(m.n_manifests, 0);
    assert_false(m.has_subject);
    manifest_release(&m);
    assert_zeroed(&m);

    /* Parameters and case in the content type do not matter. */
    assert_int_equal(
        parse(oci_manifest, " Application/VND.OCI.image.manifest.v1+json ; charset=utf-8", &m), 0);
    assert_string_equal(m.media_type, MEDIA_OCI_MANIFEST);
    manifest_release(&m);
    /* Content types that say nothing fall back on the mediaType field. */
    const char *vague[] = {
        NULL, "", "application/json", "text/plain; charset=utf-8", "application/octet-stream",
        "  "};
    for (size_t i = 0; i < sizeof(vague) / sizeof(vague[0]); i++) {
        assert_int_equal(parse(oci_manifest, vague[i], &m), 0);
        assert_string_equal(m.media_type, MEDIA_OCI_MANIFEST);
        manifest_release(&m);
    }

    /* The bytes need not be NUL-terminated. */
    char *copy = malloc(sizeof(oci_manifest) + 10);
    memcpy(copy, oci_manifest, sizeof(oci_manifest) - 1);
    memcpy(copy + sizeof(oci_manifest) - 1, "}}garbage!", 10);
    assert_int_equal(manifest_parse(&m, copy, sizeof(oci_manifest) - 1, NULL, NULL), 0);
    assert_int_equal(m.n_layers, 2);
    manifest_release(&m);
    free(copy);
}

static void test_oci_index(void **state)
{
    (void)state;
    struct manifest m;
    const char *json = "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_INDEX "\","
                       "\"manifests\":[{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\","
                       "\"digest\":\"" D1 "\",\"size\":1,\"platform\":{\"os\":\"linux\","
                       "\"architecture\":\"amd64\",\"os.features\":[\"x\"]}},"
                       "{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
                       "\"size\":2,\"artifactType\":\"application/vnd.example.sbom\"}]}";
    assert_int_equal(parse(json, NULL, &m), 0);
    assert_int_equal(m.kind, MANIFEST_INDEX);
    assert_string_equal(m.media_type, MEDIA_OCI_INDEX);
    assert_int_equal(m.n_manifests, 2);
    assert_string_equal(m.manifests[0].platform_os, "linux");
    assert_string_equal(m.manifests[0].platform_arch, "amd64");
    assert_null(m.manifests[0].platform_variant);
    assert_null(m.manifests[0].artifact_type);
    assert_string_equal(m.manifests[1].artifact_type, "application/vnd.example.sbom");
    assert_null(m.manifests[1].platform_os);
    assert_null(m.layers);
    assert_null(m.config.digest);
    manifest_release(&m);

    /* An empty index is an index. */
    assert_int_equal(parse("{\"schemaVersion\":2,\"manifests\":[]}", MEDIA_OCI_INDEX, &m), 0);
    assert_int_equal(m.kind, MANIFEST_INDEX);
    assert_int_equal(m.n_manifests, 0);
    manifest_release(&m);
}

static void test_docker_manifest(void **state)
{
    (void)state;
    struct manifest m;
    const char *json =
        "{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"" MEDIA_DOCKER_MANIFEST "\",\n"
        "   \"config\": {\n      \"mediaType\": \"application/vnd.docker.container.image.v1+json\","
        "\n      \"size\": 1469,\n      \"digest\": \"" D1 "\"\n   },\n"
        "   \"layers\": [\n      {\n         \"mediaType\": "
        "\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\n         \"size\": 3401613,\n"
        "         \"digest\": \"" D2 "\"\n      }\n   ]\n}\n";
    assert_int_equal(parse(json, MEDIA_DOCKER_MANIFEST, &m), 0);
    assert_int_equal(m.kind, MANIFEST_IMAGE);
    assert_string_equal(m.media_type, MEDIA_DOCKER_MANIFEST);
    assert_string_equal(m.config.media_type, "application/vnd.docker.container.image.v1+json");
    assert_int_equal(m.n_layers, 1);
    assert_int_equal(m.layers[0].size, 3401613);
    manifest_release(&m);
}

static void test_docker_list(void **state)
{
    (void)state;
    struct manifest m;
    const char *json =
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_DOCKER_LIST "\",\"manifests\":["
        "{\"mediaType\":\"" MEDIA_DOCKER_MANIFEST "\",\"size\":528,\"digest\":\"" D1 "\","
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
        "{\"mediaType\":\"" MEDIA_DOCKER_MANIFEST "\",\"size\":528,\"digest\":\"" D2 "\","
        "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
        "{\"mediaType\":\"" MEDIA_DOCKER_MANIFEST "\",\"size\":1125,\"digest\":\"" D3 "\","
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"windows\","
        "\"os.version\":\"10.0.17763.1879\"}}]}";
    assert_int_equal(parse(json, MEDIA_DOCKER_LIST, &m), 0);
    assert_int_equal(m.kind, MANIFEST_INDEX);
    assert_string_equal(m.media_type, MEDIA_DOCKER_LIST);
    assert_int_equal(m.n_manifests, 3);
    assert_string_equal(m.manifests[0].platform_arch, "amd64");
    assert_null(m.manifests[0].platform_variant);
    assert_string_equal(m.manifests[1].platform_arch, "arm64");
    assert_string_equal(m.manifests[1].platform_variant, "v8");
    assert_string_equal(m.manifests[2].platform_os, "windows");
    assert_string_equal(m.manifests[2].media_type, MEDIA_DOCKER_MANIFEST);
    assert_int_equal(m.manifests[2].size, 1125);
    manifest_release(&m);
}

static void test_artifact_with_subject(void **state)
{
    (void)state;
    struct manifest m;
    const char *json =
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_MANIFEST "\","
        "\"artifactType\":\"application/vnd.example.signature.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"" D1 "\","
        "\"size\":2,\"data\":\"e30=\"},"
        "\"layers\":[{\"mediaType\":\"application/vnd.example.signature.v1+json\","
        "\"digest\":\"" D2 "\",\"size\":123}],"
        "\"subject\":{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" D3 "\","
        "\"size\":1234},\"annotations\":{\"org.opencontainers.image.created\":\"2024\"}}";
    assert_int_equal(parse(json, MEDIA_OCI_MANIFEST, &m), 0);
    assert_int_equal(m.kind, MANIFEST_IMAGE);
    assert_string_equal(m.artifact_type, "application/vnd.example.signature.v1+json");
    assert_string_equal(m.config.media_type, "application/vnd.oci.empty.v1+json");
    assert_true(m.has_subject);
    assert_string_equal(m.subject.media_type, MEDIA_OCI_MANIFEST);
    assert_string_equal(m.subject.digest, D3);
    assert_int_equal(m.subject.size, 1234);
    manifest_release(&m);

    /* An index may have a subject too; a null subject is no subject. */
    const char *index = "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_INDEX "\","
                        "\"manifests\":[],\"subject\":{\"mediaType\":\"" MEDIA_OCI_INDEX "\","
                        "\"digest\":\"" D4 "\",\"size\":9}}";
    assert_int_equal(parse(index, NULL, &m), 0);
    assert_true(m.has_subject);
    assert_string_equal(m.subject.digest, D4);
    manifest_release(&m);
    assert_int_equal(parse("{\"manifests\":[],\"subject\":null}", NULL, &m), 0);
    assert_false(m.has_subject);
    manifest_release(&m);
}

static void test_inferred(void **state)
{
    (void)state;
    struct manifest m;
    assert_int_equal(
        parse("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MEDIA_OCI_MANIFEST
              "\",\"digest\":\"" D1 "\",\"size\":5}]}",
              "application/json", &m),
        0);
    assert_string_equal(m.media_type, MEDIA_OCI_INDEX);
    assert_int_equal(m.kind, MANIFEST_INDEX);
    manifest_release(&m);

    assert_int_equal(parse("{\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1 "\","
                           "\"size\":5},\"layers\":[]}",
                           NULL, &m),
                     0);
    assert_string_equal(m.media_type, MEDIA_OCI_MANIFEST);
    assert_int_equal(m.kind, MANIFEST_IMAGE);
    assert_int_equal(m.n_layers, 0);
    manifest_release(&m);

    assert_rejected("{\"schemaVersion\":2}", NULL, FERRY_EPARSE, NULL);
    assert_rejected("{\"schemaVersion\":2,\"layers\":[]}", NULL, FERRY_EPARSE, NULL);
}

static void test_schema1(void **state)
{
    (void)state;
    const char *want = "docker schema1 manifests are not supported";
    assert_rejected("{\"schemaVersion\":1,\"name\":\"x\",\"tag\":\"latest\",\"fsLayers\":[]}", NULL,
                    FERRY_EUNSUPPORTED, want);
    assert_rejected("{\"schemaVersion\":1}", "application/vnd.docker.distribution.manifest.v1+json",
                    FERRY_EUNSUPPORTED, want);
    assert_rejected("not even json",
                    "application/vnd.docker.distribution.manifest.v1+prettyjws; charset=x",
                    FERRY_EUNSUPPORTED, want);
    assert_rejected("{\"schemaVersion\":2,\"mediaType\":"
                    "\"application/vnd.docker.distribution.manifest.v1+json\"}",
                    NULL, FERRY_EUNSUPPORTED, want);
}

static void test_unknown_media_type(void **state)
{
    (void)state;
    assert_rejected(oci_manifest, "application/vnd.example+json", FERRY_EPARSE, NULL);
    assert_rejected("{\"schemaVersion\":2,\"manifests\":[]}", "application/vnd.example+json",
                    FERRY_EUNSUPPORTED, NULL);
    assert_rejected("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.example+json\"}", NULL,
                    FERRY_EUNSUPPORTED, NULL);
    assert_rejected("{\"schemaVersion\":2,\"mediaType\":\"text/html\",\"manifests\":[]}",
                    "text/html", FERRY_EUNSUPPORTED, NULL);
    /* A hostile content type is shown, but tamed, in the message. */
    struct manifest m;
    char *err = NULL;
    const char *json = "{\"manifests\":[]}";
    assert_int_equal(
        manifest_parse(&m, json, strlen(json), "application/x\x1b[2J\r\nInjected: 1", &err),
        FERRY_EUNSUPPORTED);
    assert_message(err);
    free(err);
}

static void test_contradiction(void **state)
{
    (void)state;
    assert_rejected(oci_manifest, MEDIA_OCI_INDEX, FERRY_EPARSE,
                    "content type " MEDIA_OCI_INDEX " contradicts mediaType " MEDIA_OCI_MANIFEST);
    assert_rejected(oci_manifest, MEDIA_DOCKER_MANIFEST, FERRY_EPARSE, NULL);
    /* A document that is both an image and an index is refused either way. */
    const char *both =
        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"" OCI_CONFIG
        "\",\"digest\":\"" D1 "\",\"size\":1},\"layers\":[],\"manifests\":[]}";
    char json[1024];
    snprintf(json, sizeof(json), both, MEDIA_OCI_MANIFEST);
    assert_rejected(json, NULL, FERRY_EPARSE, "an image manifest must not have manifests");
    snprintf(json, sizeof(json), both, MEDIA_OCI_INDEX);
    assert_rejected(json, NULL, FERRY_EPARSE, "an index must not have config or layers");
    assert_rejected("{\"layers\":[],\"manifests\":[]}", NULL, FERRY_EPARSE, NULL);
}

static void test_bad_descriptors(void **state)
{
    (void)state;
    char json[2048];
    struct {
        const char *layer;
        const char *message;
    } cases[] = {
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"sha256:abc\",\"size\":1}",
         "layers[1].digest is not a valid digest"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"sha256:"
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"size\":1}",
         "layers[1].digest is not a valid digest"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"sha512:abc\",\"size\":1}",
         "layers[1].digest is not a valid digest"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":42,\"size\":1}",
         "layers[1].digest is not a string"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"size\":1}", "layers[1].digest is missing"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":-1}",
         "layers[1].size is not a valid size"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":1.5}",
         "layers[1].size is not a valid size"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":\"1\"}",
         "layers[1].size is not a valid size"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":9007199254740992}",
         "layers[1].size is not a valid size"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":1e400}",
         "layers[1].size is not a valid size"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":null}",
         "layers[1].size is not a valid size"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\"}", "layers[1].size is missing"},
        {"{\"digest\":\"" D2 "\",\"size\":1}", "layers[1].mediaType is missing"},
        {"{\"mediaType\":null,\"digest\":\"" D2 "\",\"size\":1}",
         "layers[1].mediaType is not a string"},
        {"{\"mediaType\":\"gzip\",\"digest\":\"" D2 "\",\"size\":1}",
         "layers[1].mediaType is not a valid media type"},
        {"{\"mediaType\":\"a/b\\r\\nX-Injected: 1\",\"digest\":\"" D2 "\",\"size\":1}",
         "layers[1].mediaType is not a valid media type"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":1,"
         "\"artifactType\":\"no slash\"}",
         "layers[1].artifactType is not a valid media type"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":1,\"platform\":[]}",
         "layers[1].platform is not an object"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":1,"
         "\"platform\":{\"os\":7}}",
         "layers[1].platform.os is not a string"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":1,"
         "\"platform\":{\"architecture\":\"amd\\n64\"}}",
         "layers[1].platform.architecture has control characters"},
        {"{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":1,\"Digest\":\"" D3
         "\"}",
         "layers[1].digest appears more than once"},
        {"[]", "layers[1] is not an object"},
        {"\"" D2 "\"", "layers[1] is not an object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(json, sizeof(json),
                 "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CONFIG
                 "\",\"digest\":\"" D1 "\",\"size\":1},\"layers\":[{\"mediaType\":\"" LAYER_GZIP
                 "\",\"digest\":\"" D2 "\",\"size\":1},%s]}",
                 cases[i].layer);
        assert_rejected(json, MEDIA_OCI_MANIFEST, FERRY_EPARSE, cases[i].message);
    }

    /* The largest exact size passes. */
    struct manifest m;
    snprintf(json, sizeof(json),
             "{\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1 "\","
             "\"size\":9007199254740991},\"layers\":[]}");
    assert_int_equal(parse(json, NULL, &m), 0);
    assert_true(m.config.size == INT64_C(9007199254740991));
    manifest_release(&m);

    assert_rejected("{\"layers\":[]}", MEDIA_OCI_MANIFEST, FERRY_EPARSE, "config is missing");
    assert_rejected("{\"config\":null,\"layers\":[]}", MEDIA_OCI_MANIFEST, FERRY_EPARSE,
                    "config is not an object");
    assert_rejected("{\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":[]}",
                    MEDIA_OCI_MANIFEST, FERRY_EPARSE, "config.mediaType is missing");
    assert_rejected("{\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1
                    "\",\"size\":1}}",
                    MEDIA_OCI_MANIFEST, FERRY_EPARSE, "layers is missing");
    assert_rejected("{\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1
                    "\",\"size\":1},\"layers\":{}}",
                    MEDIA_OCI_MANIFEST, FERRY_EPARSE, "layers is not an array");
    assert_rejected("{\"manifests\":{}}", MEDIA_OCI_INDEX, FERRY_EPARSE,
                    "manifests is not an array");
    assert_rejected("{\"manifests\":[{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" D1
                    "\",\"size\":1},{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"size\":1}]}",
                    MEDIA_OCI_INDEX, FERRY_EPARSE, "manifests[1].digest is missing");
    assert_rejected("{\"manifests\":[],\"subject\":{\"mediaType\":\"" MEDIA_OCI_MANIFEST
                    "\",\"digest\":\"sha256:00\",\"size\":1}}",
                    NULL, FERRY_EPARSE, "subject.digest is not a valid digest");
    assert_rejected("{\"manifests\":[],\"subject\":\"" D1 "\"}", NULL, FERRY_EPARSE,
                    "subject is not an object");
    assert_rejected("{\"manifests\":[],\"artifactType\":7}", NULL, FERRY_EPARSE,
                    "artifactType is not a string");
}

static void test_bad_documents(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "<html>502</html>",
        "[]",
        "null",
        "\"manifest\"",
        "{",
        "{\"manifests\":[]} trailing",
        "{\"manifests\":[]}{}",
        "{\"schemaVersion\":3,\"manifests\":[]}",
        "{\"schemaVersion\":\"2\",\"manifests\":[]}",
        "{\"schemaVersion\":2.5,\"manifests\":[]}",
        "{\"mediaType\":7,\"manifests\":[]}",
        "{\"manifests\":[],\"manifests\":[]}",
        "{\"manifests\":[],\"Manifests\":[]}",
        "{\"mediaType\":\"" MEDIA_OCI_INDEX "\",\"MediaType\":\"" MEDIA_OCI_MANIFEST "\","
        "\"manifests\":[]}",
        "{\"schemaVersion\":2,\"schemaversion\":1,\"manifests\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_rejected(bad[i], NULL, FERRY_EPARSE, NULL);

    struct manifest m;
    char *err = NULL;
    assert_int_equal(manifest_parse(&m, "", 0, NULL, &err), FERRY_EPARSE);
    assert_zeroed(&m);
    assert_message(err);
    free(err);
    err = NULL;

    /* A NUL byte must not hide the rest of the document. */
    const char with_nul[] = "{\"manifests\":[]}\0{\"garbage\"";
    assert_int_equal(manifest_parse(&m, with_nul, sizeof(with_nul) - 1, NULL, &err), FERRY_EPARSE);
    assert_message(err);
    free(err);
    err = NULL;

    assert_int_equal(manifest_parse(NULL, "{}", 2, NULL, &err), FERRY_EINVAL);
    assert_message(err);
    free(err);
    assert_int_equal(manifest_parse(&m, NULL, 2, NULL, NULL), FERRY_EINVAL);
    assert_zeroed(&m);
    manifest_release(NULL);
    manifest_release(&m);
}

static void test_deep_garbage(void **state)
{
    (void)state;
    /* Nested far past the JSON parser's limit, at the top and inside a field. */
    size_t depth = 200000;
    char *deep = malloc(depth * 2 + 64);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    assert_rejected(deep, MEDIA_OCI_INDEX, FERRY_EPARSE, "manifest is not valid json");

    int n = sprintf(deep, "{\"manifests\":[],\"annotations\":");
    memset(deep + n, '[', depth);
    memset(deep + n + depth, ']', depth);
    deep[n + depth * 2] = '}';
    deep[n + depth * 2 + 1] = '\0';
    assert_rejected(deep, NULL, FERRY_EPARSE, NULL);

    /* Deep objects, as in {"a":{"a":{...}}}. */
    size_t unit = 5, levels = 5000;
    char *objects = malloc(levels * (unit + 1) + 2);
    char *p = objects;
    for (size_t i = 0; i < levels; i++) {
        memcpy(p, "{\"a\":", unit);
        p += unit;
    }
    *p++ = '1';
    memset(p, '}', levels);
    p[levels] = '\0';
    assert_rejected(objects, NULL, FERRY_EPARSE, NULL);
    free(objects);
    free(deep);
}

static void test_size_caps(void **state)
{
    (void)state;
    struct manifest m;
    char *err = NULL;
    const char *json = "{\"schemaVersion\":2,\"manifests\":[]}";
    char *big = malloc(MANIFEST_MAX_BYTES + 1);

    /* Exactly the cap, padded with whitespace, parses. */
    memset(big, ' ', MANIFEST_MAX_BYTES + 1);
    memcpy(big, json, strlen(json));
    assert_int_equal(manifest_parse(&m, big, MANIFEST_MAX_BYTES, MEDIA_OCI_INDEX, &err), 0);
    manifest_release(&m);
    assert_int_equal(manifest_parse(&m, big, MANIFEST_MAX_BYTES + 1, MEDIA_OCI_INDEX, &err),
                     FERRY_ETOOBIG);
    assert_zeroed(&m);
    assert_message(err);
    free(err);
    err = NULL;
    free(big);
}

static char *many_layers(size_t count)
{
    const char *head = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CONFIG
                       "\",\"digest\":\"" D1 "\",\"size\":1},\"layers\":[";
    const char *layer = "{\"mediaType\":\"" LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":1}";
    size_t cap = strlen(head) + count * (strlen(layer) + 1) + 8;
    char *json = malloc(cap);
    char *p = json;
    p += sprintf(p, "%s", head);
    for (size_t i = 0; i < count; i++)
        p += sprintf(p, "%s%s", i ? "," : "", layer);
    sprintf(p, "]}");
    return json;
}

static void test_entry_caps(void **state)
{
    (void)state;
    struct manifest m;
    char *json = many_layers(MANIFEST_MAX_ENTRIES);
    assert_true(strlen(json) <= MANIFEST_MAX_BYTES);
    assert_int_equal(parse(json, MEDIA_OCI_MANIFEST, &m), 0);
    assert_int_equal(m.n_layers, MANIFEST_MAX_ENTRIES);
    assert_string_equal(m.layers[MANIFEST_MAX_ENTRIES - 1].digest, D2);
    manifest_release(&m);
    free(json);

    json = many_layers(MANIFEST_MAX_ENTRIES + 1);
    assert_rejected(json, MEDIA_OCI_MANIFEST, FERRY_ETOOBIG, NULL);
    free(json);

    /* The same cap holds for an index. */
    size_t count = MANIFEST_MAX_ENTRIES + 1;
    const char *entry =
        "{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1}";
    json = malloc(count * (strlen(entry) + 1) + 32);
    char *p = json + sprintf(json, "{\"manifests\":[");
    for (size_t i = 0; i < count; i++)
        p += sprintf(p, "%s%s", i ? "," : "", entry);
    sprintf(p, "]}");
    assert_rejected(json, NULL, FERRY_ETOOBIG, NULL);
    free(json);
}

static void test_accept_and_known(void **state)
{
    (void)state;
    const char *accept = manifest_accept();
    assert_non_null(strstr(accept, MEDIA_OCI_MANIFEST));
    assert_non_null(strstr(accept, MEDIA_OCI_INDEX));
    assert_non_null(strstr(accept, MEDIA_DOCKER_MANIFEST));
    assert_non_null(strstr(accept, MEDIA_DOCKER_LIST));
    assert_null(strchr(accept, '\n'));
    assert_string_equal(accept, MEDIA_OCI_MANIFEST ", " MEDIA_OCI_INDEX ", " MEDIA_DOCKER_MANIFEST
                                                   ", " MEDIA_DOCKER_LIST);

    assert_true(manifest_media_type_known(MEDIA_OCI_MANIFEST));
    assert_true(manifest_media_type_known(MEDIA_OCI_INDEX));
    assert_true(manifest_media_type_known(MEDIA_DOCKER_MANIFEST));
    assert_true(manifest_media_type_known(MEDIA_DOCKER_LIST));
    assert_true(manifest_media_type_known("Application/Vnd.Oci.Image.Index.V1+Json"));
    assert_false(manifest_media_type_known(NULL));
    assert_false(manifest_media_type_known(""));
    assert_false(manifest_media_type_known("application/json"));
    assert_false(manifest_media_type_known("application/vnd.docker.distribution.manifest.v1+json"));
    assert_false(manifest_media_type_known(MEDIA_OCI_MANIFEST "; charset=utf-8"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oci_manifest),
        cmocka_unit_test(test_oci_index),
        cmocka_unit_test(test_docker_manifest),
        cmocka_unit_test(test_docker_list),
        cmocka_unit_test(test_artifact_with_subject),
        cmocka_unit_test(test_inferred),
        cmocka_unit_test(test_schema1),
        cmocka_unit_test(test_unknown_media_type),
        cmocka_unit_test(test_contradiction),
        cmocka_unit_test(test_bad_descriptors),
        cmocka_unit_test(test_bad_documents),
        cmocka_unit_test(test_deep_garbage),
        cmocka_unit_test(test_size_caps),
        cmocka_unit_test(test_entry_caps),
        cmocka_unit_test(test_accept_and_known),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
