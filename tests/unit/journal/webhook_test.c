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
#include "journal/webhook.h"
#include "common/xalloc.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"

#define CT_V1 "application/vnd.docker.distribution.events.v1+json"
#define CT_V2 "application/vnd.docker.distribution.events.v2+json"

#define LAYER_GZIP  "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define LAYER_OCI   "application/vnd.oci.image.layer.v1.tar+gzip"
#define SCHEMA1     "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define SOURCE_NAME "hub"

/* 2024-05-01T10:00:00Z */
#define T0    "2024-05-01T10:00:00Z"
#define T0_MS 1714557600000LL

/*
 * Payloads are written with single quotes to keep them readable; json()
 * turns them into double quotes. No payload here needs a literal quote.
 */
static char *json(const char *text)
{
    char *s = xstrdup(text);
    for (char *c = s; *c != '\0'; c++) {
        if (*c == '\'')
            *c = '"';
    }
    return s;
}

/* The parts of a Distribution event that do not matter to Ferry, as the registry sends them. */
#define DIST_REQUEST                                                                               \
    "'request':{'id':'6df24a34-0959-4923-81ca-14f09767db19','addr':'192.168.64.11:42961',"         \
    "'host':'registry.example:5000','method':'PUT','useragent':'docker/24.0.7 go/go1.20.10'},"     \
    "'actor':{'name':'ci'},'source':{'addr':'registry-0:5000','instanceID':"                       \
    "'a53db899-3b4b-4a62-a067-8dd013beaca4'}"

/* One Distribution event as the registry writes it; the caller frees it. */
static char *dist_event(const char *id, const char *action, const char *target)
{
    return xasprintf("{'id':'%s','timestamp':'" T0 "','action':'%s','target':{%s}," DIST_REQUEST
                     "}",
                     id, action, target);
}

/*
 * {"events":[...]} around the events given, each a string this function
 * frees, up to a NULL. The caller frees the result.
 */
static char *envelope(char *event, ...)
{
    va_list ap;
    char *text = xstrdup("{'events':[");
    va_start(ap, event);
    for (char *e = event; e != NULL; e = va_arg(ap, char *)) {
        char *joined = xasprintf("%s%s%s", text, e == event ? "" : ",", e);
        free(text);
        free(e);
        text = joined;
    }
    va_end(ap);
    char *done = xasprintf("%s]}", text);
    free(text);
    return done;
}

static void assert_zeroed(const struct webhook_result *r)
{
    assert_null(r->events);
    assert_int_equal(r->n, 0);
    assert_int_equal(r->ignored, 0);
}

/* Parse `text` (single-quoted JSON) and expect success. */
static void parse_ok(const char *content_type, const char *text, struct webhook_result *r)
{
    char *body = json(text);
    char *err = NULL;
    memset(r, 0xa5, sizeof(*r));
    int rc = webhook_parse(SOURCE_NAME, content_type, body, strlen(body), r, &err);
    if (rc != 0)
        fail_msg("rc %d (%s) for %s", rc, err ? err : "-", body);
    if (err != NULL)
        fail_msg("message on success: %s", err);
    free(body);
}

/* Parse raw bytes and expect failure `want_rc` with exactly `want_message` (when not NULL). */
static void assert_rejected_raw(const char *content_type, const char *body, size_t len, int want_rc,
                                const char *want_message)
{
    struct webhook_result r;
    char *err = NULL;
    memset(&r, 0xa5, sizeof(r));
    int rc = webhook_parse(SOURCE_NAME, content_type, body, len, &r, &err);
    if (rc != want_rc)
        fail_msg("got %d (%s), want %d for %.200s", rc, err ? err : "-", want_rc, body);
    assert_zeroed(&r);
    assert_message(err);
    /* Short enough that no more than 64 bytes of input can be in it. */
    assert_true(strlen(err) < 160);
    if (want_message != NULL && strcmp(err, want_message) != 0)
        fail_msg("message \"%s\", want \"%s\"", err, want_message);
    free(err);
}

static void assert_rejected(const char *content_type, const char *text, int want_rc,
                            const char *want_message)
{
    char *body = json(text);
    assert_rejected_raw(content_type, body, strlen(body), want_rc, want_message);
    free(body);
}

static void assert_string(const char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else
        assert_string_equal(got, want);
}

static void assert_event(const struct journal_event *e, enum journal_action action,
                         const char *repository, const char *digest, const char *tag,
                         const char *media_type, const char *event_id, int64_t event_unix_ms)
{
    assert_int_equal(e->action, action);
    assert_string_equal(e->source, SOURCE_NAME);
    assert_string(e->repository, repository);
    assert_string(e->digest, digest);
    assert_string(e->tag, tag);
    assert_string(e->media_type, media_type);
    assert_string(e->event_id, event_id);
    assert_int_equal(e->event_unix_ms, event_unix_ms);
}

/* Distribution's notifications documentation, nearly as printed, plus the layer pushes. */
static void test_distribution_manifest_push_with_tag(void **state)
{
    (void)state;
    struct webhook_result r;
    char *text = envelope(
        xstrdup("\n    {\n      'id': '320678d8-ca14-430f-8bb6-4ca139cd83f7',\n"
                "      'timestamp': '2016-03-09T14:44:26.402973972-08:00',\n"
                "      'action': 'push',\n      'target': {\n"
                "        'mediaType': '" MEDIA_DOCKER_MANIFEST "',\n        'size': 708,\n"
                "        'digest': '" D1 "',\n        'length': 708,\n"
                "        'repository': 'hello-world',\n"
                "        'url': 'http://192.168.100.227:5000/v2/hello-world/manifests/" D1 "',\n"
                "        'tag': 'latest'\n      },\n"
                "      'request': {\n        'id': '6df24a34-0959-4923-81ca-14f09767db19',\n"
                "        'addr': '192.168.64.11:42961',\n        'host': '192.168.100.227:5000',\n"
                "        'method': 'PUT',\n        'useragent': 'curl/7.38.0'\n      },\n"
                "      'actor': {},\n      'source': {\n        'addr': 'xtal.local:5000',\n"
                "        'instanceID': 'a53db899-3b4b-4a62-a067-8dd013beaca4'\n      }\n    }"),
        dist_event("layer-1", "push",
                   "'mediaType':'" LAYER_GZIP "','size':2,'digest':'" D2 "','length':2,"
                   "'repository':'hello-world','url':'http://x/v2/hello-world/blobs/" D2 "'"),
        dist_event("layer-2", "push",
                   "'mediaType':'" LAYER_OCI "','size':3,'digest':'" D3 "','length':3,"
                   "'repository':'hello-world'"),
        NULL);
    parse_ok(CT_V1, text, &r);
    free(text);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ignored, 2);
    assert_event(&r.events[0], JOURNAL_PUSH, "hello-world", D1, "latest", MEDIA_DOCKER_MANIFEST,
                 "320678d8-ca14-430f-8bb6-4ca139cd83f7", 1457563466402LL);
    webhook_result_release(&r);
    assert_zeroed(&r);
}

/* The children of an index are pushed by digest: no tag. */
static void test_distribution_push_by_digest(void **state)
{
    (void)state;
    struct webhook_result r;
    char *text = envelope(dist_event("child-amd64", "push",
                                     "'mediaType':'" MEDIA_OCI_MANIFEST "','size':1,'digest':'" D1
                                     "','repository':'team/app'"),
                          dist_event("child-arm64", "push",
                                     "'mediaType':'" MEDIA_OCI_MANIFEST "','size':1,'digest':'" D2
                                     "','repository':'team/app'"),
                          dist_event("index", "push",
                                     "'mediaType':'" MEDIA_OCI_INDEX "','size':1,'digest':'" D3
                                     "','repository':'team/app','tag':'v1.2.3'"),
                          NULL);
    parse_ok(CT_V1, text, &r);
    free(text);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.ignored, 0);
    assert_event(&r.events[0], JOURNAL_PUSH, "team/app", D1, NULL, MEDIA_OCI_MANIFEST,
                 "child-amd64", T0_MS);
    assert_event(&r.events[1], JOURNAL_PUSH, "team/app", D2, NULL, MEDIA_OCI_MANIFEST,
                 "child-arm64", T0_MS);
    assert_event(&r.events[2], JOURNAL_PUSH, "team/app", D3, "v1.2.3", MEDIA_OCI_INDEX, "index",
                 T0_MS);
    webhook_result_release(&r);
}

static void test_distribution_blob_pushes_ignored(void **state)
{
    (void)state;
    struct webhook_result r;
    char *text = envelope(
        dist_event("b1", "push",
                   "'mediaType':'application/octet-stream','size':10,'digest':'" D1
                   "','repository':'team/app'"),
        dist_event("b2", "push",
                   "'mediaType':'application/vnd.oci.image.config.v1+json','size':10,'digest':'" D2
                   "','repository':'team/app'"),
        dist_event("b3", "push",
                   "'mediaType':'application/x-unknown','digest':'" D3 "','repository':'team/app'"),
        /* Even a blob event with a digest Ferry cannot check is merely ignored. */
        dist_event("b4", "push", "'digest':'sha512:abc','repository':'team/app'"), NULL);
    parse_ok(CT_V1, text, &r);
    free(text);
    assert_int_equal(r.n, 0);
    assert_null(r.events);
    assert_int_equal(r.ignored, 4);
    webhook_result_release(&r);
}

/* A manifest of a type Ferry does not know still counts when it was pushed by tag. */
static void test_distribution_tagged_push_unknown_type(void **state)
{
    (void)state;
    struct webhook_result r;
    char *text = envelope(dist_event("s1", "push",
                                     "'mediaType':'" SCHEMA1 "','digest':'" D1
                                     "','repository':'old/app','tag':'legacy'"),
                          NULL);
    parse_ok(CT_V1, text, &r);
    free(text);
    assert_int_equal(r.n, 1);
    assert_event(&r.events[0], JOURNAL_PUSH, "old/app", D1, "legacy", SCHEMA1, "s1", T0_MS);
    webhook_result_release(&r);
}

static void test_distribution_pull_and_mount_ignored(void **state)
{
    (void)state;
    struct webhook_result r;
    char *text = envelope(dist_event("p1", "pull",
                                     "'mediaType':'" MEDIA_DOCKER_MANIFEST "','digest':'" D1
                                     "','repository':'team/app','tag':'latest'"),
                          dist_event("p2", "pull",
                                     "'mediaType':'" LAYER_GZIP "','digest':'" D2
                                     "','repository':'team/app'"),
                          dist_event("m1", "mount",
                                     "'mediaType':'" LAYER_GZIP "','digest':'" D3
                                     "','repository':'team/app','fromRepository':'team/base'"),
                          dist_event("x1", "frobnicate", "'repository':'team/app'"), NULL);
    parse_ok(CT_V1, text, &r);
    free(text);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.ignored, 4);
    webhook_result_release(&r);
}

static void test_distribution_deletes(void **state)
{
    (void)state;
    struct webhook_result r;
    char *text = envelope(
        /* Distribution 2.8: a manifest delete carries the digest and repository only. */
        dist_event("d1", "delete", "'digest':'" D1 "','repository':'team/app'"),
        dist_event("d2", "delete", "'repository':'team/app','tag':'old'"),
        dist_event("d3", "delete",
                   "'mediaType':'application/octet-stream','digest':'" D2
                   "','repository':'team/app'"),
        /* A repository delete. */
        dist_event("d4", "delete", "'repository':'team/app'"),
        dist_event("d5", "delete",
                   "'mediaType':'" MEDIA_OCI_INDEX "','digest':'" D3 "','repository':'team/app'"),
        NULL);
    parse_ok(CT_V1, text, &r);
    free(text);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.ignored, 2);
    assert_event(&r.events[0], JOURNAL_DELETE, "team/app", D1, NULL, NULL, "d1", T0_MS);
    assert_event(&r.events[1], JOURNAL_DELETE, "team/app", NULL, "old", NULL, "d2", T0_MS);
    assert_event(&r.events[2], JOURNAL_DELETE, "team/app", D3, NULL, MEDIA_OCI_INDEX, "d5", T0_MS);
    webhook_result_release(&r);
}

/* Distribution 3: the v2 content type, parameters, and empty strings for absent fields. */
static void test_distribution_v2(void **state)
{
    (void)state;
    struct webhook_result r;
    char *text = envelope(dist_event("v2-push", "push",
                                     "'mediaType':'" MEDIA_DOCKER_LIST "','digest':'" D1
                                     "','size':512,'repository':'library/nginx','tag':'1.27'"),
                          dist_event("v2-tag-delete", "delete",
                                     "'mediaType':'','digest':'','size':0,"
                                     "'repository':'library/nginx','tag':'1.26'"),
                          NULL);
    parse_ok(" Application/VND.docker.distribution.events.v2+json ; charset=utf-8", text, &r);
    free(text);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ignored, 0);
    assert_event(&r.events[0], JOURNAL_PUSH, "library/nginx", D1, "1.27", MEDIA_DOCKER_LIST,
                 "v2-push", T0_MS);
    assert_event(&r.events[1], JOURNAL_DELETE, "library/nginx", NULL, "1.26", NULL, "v2-tag-delete",
                 T0_MS);
    webhook_result_release(&r);
}

/* Without the content type the shape decides. */
static void test_distribution_by_shape(void **state)
{
    (void)state;
    const char *types[] = {NULL, "application/json", "text/plain"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct webhook_result r;
        char *text = envelope(dist_event("e1", "push",
                                         "'mediaType':'" MEDIA_OCI_MANIFEST "','digest':'" D1
                                         "','repository':'a/b','tag':'t'"),
                              NULL);
        parse_ok(types[i], text, &r);
        free(text);
        assert_int_equal(r.n, 1);
        assert_event(&r.events[0], JOURNAL_PUSH, "a/b", D1, "t", MEDIA_OCI_MANIFEST, "e1", T0_MS);
        webhook_result_release(&r);
    }
}

static void test_empty_envelope(void **state)
{
    (void)state;
    struct webhook_result r;
    parse_ok(NULL, "{'events':[]}", &r);
    assert_zeroed(&r);
    webhook_result_release(&r);
    parse_ok(CT_V1, "{'events':[]}", &r);
    assert_zeroed(&r);
    webhook_result_release(&r);
}

static int64_t timestamp_of(const char *timestamp)
{
    char text[512];
    struct webhook_result r;
    snprintf(text, sizeof(text),
             "{'events':[{'id':'t','timestamp':'%s','action':'push','target':{'mediaType':"
             "'" MEDIA_OCI_MANIFEST "','digest':'" D1 "','repository':'a'}}]}",
             timestamp);
    parse_ok(CT_V1, text, &r);
    assert_int_equal(r.n, 1);
    int64_t ms = r.events[0].event_unix_ms;
    webhook_result_release(&r);
    return ms;
}

static void test_timestamps(void **state)
{
    (void)state;
    assert_int_equal(timestamp_of("2024-05-01T10:00:00Z"), T0_MS);
    assert_int_equal(timestamp_of("2024-05-01t10:00:00z"), T0_MS);
    assert_int_equal(timestamp_of("2024-05-01T12:00:00+02:00"), T0_MS);
    assert_int_equal(timestamp_of("2024-05-01T04:30:00-05:30"), T0_MS);
    assert_int_equal(timestamp_of("2024-05-01T10:00:00.5Z"), T0_MS + 500);
    assert_int_equal(timestamp_of("2024-05-01T10:00:00.123456789Z"), T0_MS + 123);
    assert_int_equal(timestamp_of("2024-02-29T23:59:59.999Z"), 1709251199999LL);
    assert_int_equal(timestamp_of("2024-02-29T23:59:59.999+05:30"), 1709231399999LL);
    assert_int_equal(timestamp_of("1970-01-01T00:00:00Z"), 0);
    /* Go's zero time means "unknown". */
    assert_int_equal(timestamp_of("0001-01-01T00:00:00Z"), 0);

    /* Absent or null: unknown. */
    struct webhook_result r;
    parse_ok(CT_V1,
             "{'events':[{'id':'t','action':'push','target':{'mediaType':'" MEDIA_OCI_MANIFEST
             "','digest':'" D1 "','repository':'a'}},{'id':'u','timestamp':null,'action':'push',"
             "'target':{'mediaType':'" MEDIA_OCI_MANIFEST "','digest':'" D1
             "','repository':'a'}}]}",
             &r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.events[0].event_unix_ms, 0);
    assert_int_equal(r.events[1].event_unix_ms, 0);
    webhook_result_release(&r);

    const char *bad[] = {
        "",
        "2024-05-01",
        "2024-05-01T10:00:00",
        "2024-05-01 10:00:00Z",
        "2024-13-01T10:00:00Z",
        "2024-00-01T10:00:00Z",
        "2023-02-29T10:00:00Z",
        "2024-04-31T10:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T10:60:00Z",
        "2024-05-01T10:00:61Z",
        "2024-05-01T10:00:00.Z",
        "2024-05-01T10:00:00+0200",
        "2024-05-01T10:00:00+24:00",
        "2024-05-01T10:00:00Zjunk",
        "24-05-01T10:00:00Z",
        "2024-5-01T10:00:00Z",
        "yesterday",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{'events':[{'id':'t','timestamp':'%s','action':'pull','target':{}}]}", bad[i]);
        assert_rejected(CT_V1, text, FERRY_EPARSE, "events[0].timestamp is not an RFC 3339 time");
    }
    assert_rejected(CT_V1,
                    "{'events':[{'id':'t','timestamp':1714557600,'action':'pull','target':{}}]}",
                    FERRY_EPARSE, "events[0].timestamp is not a string");
}

#define HARBOR_REPOSITORY                                                                          \
    "'repository':{'date_created':1680501893,'name':'alpine','namespace':'library',"               \
    "'repo_full_name':'library/alpine','repo_type':'private'}"

static void test_harbor_push(void **state)
{
    (void)state;
    struct webhook_result r;
    parse_ok("application/json",
             "{'type':'PUSH_ARTIFACT','occur_at':1680501893,'operator':'admin','event_data':{"
             "'resources':[{'digest':'" D1 "','tag':'3.18','resource_url':"
             "'harbor.example/library/alpine:3.18'},{'digest':'" D2 "','tag':'" D2 "',"
             "'resource_url':'harbor.example/library/alpine@" D2 "'}]," HARBOR_REPOSITORY "}}",
             &r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ignored, 0);
    assert_event(&r.events[0], JOURNAL_PUSH, "library/alpine", D1, "3.18", NULL,
                 "harbor:PUSH_ARTIFACT:library/alpine:" D1 ":3.18:1680501893", 1680501893000LL);
    /* Harbor writes the digest as the tag of an untagged artifact. */
    assert_event(&r.events[1], JOURNAL_PUSH, "library/alpine", D2, NULL, NULL,
                 "harbor:PUSH_ARTIFACT:library/alpine:" D2 "::1680501893", 1680501893000LL);
    webhook_result_release(&r);

    /* An empty tag is no tag; an older Harbor without repo_full_name. */
    parse_ok(NULL,
             "{'type':'PUSH_ARTIFACT','occur_at':1680501893,'operator':'admin','event_data':{"
             "'resources':[{'digest':'" D3 "','tag':''}],"
             "'repository':{'name':'app','namespace':'team'}}}",
             &r);
    assert_int_equal(r.n, 1);
    assert_event(&r.events[0], JOURNAL_PUSH, "team/app", D3, NULL, NULL,
                 "harbor:PUSH_ARTIFACT:team/app:" D3 "::1680501893", 1680501893000LL);
    webhook_result_release(&r);
}

static void test_harbor_delete(void **state)
{
    (void)state;
    struct webhook_result r;
    parse_ok(NULL,
             "{'type':'DELETE_ARTIFACT','occur_at':1680501900,'operator':'admin','event_data':{"
             "'resources':[{'digest':'" D1 "','tag':'3.18','resource_url':"
             "'harbor.example/library/alpine:3.18'}]," HARBOR_REPOSITORY "}}",
             &r);
    assert_int_equal(r.n, 1);
    assert_event(&r.events[0], JOURNAL_DELETE, "library/alpine", D1, NULL, NULL,
                 "harbor:DELETE_ARTIFACT:library/alpine:" D1 ":3.18:1680501900", 1680501900000LL);
    webhook_result_release(&r);
}

static void test_harbor_other_types_ignored(void **state)
{
    (void)state;
    struct webhook_result r;
    parse_ok(NULL,
             "{'type':'PULL_ARTIFACT','occur_at':1680501900,'operator':'admin','event_data':{"
             "'resources':[{'digest':'" D1 "','tag':'a'},{'digest':'" D2
             "','tag':'b'}]," HARBOR_REPOSITORY "}}",
             &r);
    assert_int_equal(r.n, 0);
    assert_null(r.events);
    assert_int_equal(r.ignored, 2);
    webhook_result_release(&r);

    parse_ok(NULL,
             "{'type':'QUOTA_EXCEED','occur_at':1680501900,'operator':'','event_data':{"
             "'custom_attributes':{'Details':'quota exceeded'}}}",
             &r);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.ignored, 1);
    webhook_result_release(&r);
}

static void test_harbor_rejected(void **state)
{
    (void)state;
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','operator':'admin','event_data':{'resources':[{"
                    "'digest':'" D1 "','tag':'a'}]," HARBOR_REPOSITORY "}}",
                    FERRY_EPARSE, "occur_at is missing");
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','occur_at':'1680501893','event_data':{'resources':[{"
                    "'digest':'" D1 "','tag':'a'}]," HARBOR_REPOSITORY "}}",
                    FERRY_EPARSE, "occur_at is not a unix time in seconds");
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','occur_at':-5,'event_data':{'resources':[{"
                    "'digest':'" D1 "','tag':'a'}]," HARBOR_REPOSITORY "}}",
                    FERRY_EPARSE, "occur_at is not a unix time in seconds");
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','occur_at':1.5,'event_data':{'resources':[{"
                    "'digest':'" D1 "','tag':'a'}]," HARBOR_REPOSITORY "}}",
                    FERRY_EPARSE, "occur_at is not a unix time in seconds");
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','occur_at':1,'event_data':{'resources':[{"
                    "'digest':'" D1 "','tag':'a'},{'tag':'b'}]," HARBOR_REPOSITORY "}}",
                    FERRY_EPARSE, "event_data.resources[1].digest is missing");
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','occur_at':1,'event_data':{'resources':[{"
                    "'digest':'sha256:abc','tag':'a'}]," HARBOR_REPOSITORY "}}",
                    FERRY_EPARSE, "event_data.resources[0].digest is not a valid digest");
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','occur_at':1,'event_data':{'resources':[{"
                    "'digest':'" D1 "','tag':'a:b'}]," HARBOR_REPOSITORY "}}",
                    FERRY_EPARSE, "event_data.resources[0].tag is not a valid tag");
    assert_rejected(
        NULL,
        "{'type':'DELETE_ARTIFACT','occur_at':1,'event_data':{'resources':[{}]," HARBOR_REPOSITORY
        "}}",
        FERRY_EPARSE, "event_data.resources[0] has neither digest nor tag");
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','occur_at':1,'event_data':{'resources':[{'digest':'" D1
                    "'}],'repository':{'repo_full_name':'Library/Alpine'}}}",
                    FERRY_EPARSE,
                    "event_data.repository.repo_full_name is not a valid repository name");
    assert_rejected(NULL,
                    "{'type':'PUSH_ARTIFACT','occur_at':1,'event_data':{'resources':[{'digest':'" D1
                    "'}],'repository':{'name':'x'}}}",
                    FERRY_EPARSE, "event_data.repository.namespace is missing");
    assert_rejected(
        NULL,
        "{'type':'PUSH_ARTIFACT','occur_at':1,'event_data':{'resources':{}," HARBOR_REPOSITORY "}}",
        FERRY_EPARSE, "event_data.resources is not an array");
    assert_rejected(
        NULL,
        "{'type':'PUSH_ARTIFACT','occur_at':1,'event_data':{'resources':[5]," HARBOR_REPOSITORY
        "}}",
        FERRY_EPARSE, "event_data.resources[0] is not an object");
    assert_rejected(NULL, "{'type':7,'event_data':{}}", FERRY_EPARSE, "type is not a string");
    assert_rejected(NULL, "{'type':'PUSH_ARTIFACT','event_data':[]}", FERRY_EPARSE,
                    "event_data is not an object");
}

static void test_generic(void **state)
{
    (void)state;
    struct webhook_result r;
    parse_ok("application/json",
             "{'events':[{'id':'g1','action':'push','repository':'team/app','digest':'" D1
             "','tag':'v1','mediaType':'" MEDIA_OCI_MANIFEST "','timestamp':'" T0 "'},"
             "{'id':'g2','action':'push','repository':'team/app','digest':'" D2 "'},"
             "{'id':'g3','action':'delete','repository':'team/app','digest':'" D3 "'},"
             "{'id':'g4','action':'delete','repository':'team/app','tag':'v0'}]}",
             &r);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.ignored, 0);
    assert_event(&r.events[0], JOURNAL_PUSH, "team/app", D1, "v1", MEDIA_OCI_MANIFEST, "g1", T0_MS);
    assert_event(&r.events[1], JOURNAL_PUSH, "team/app", D2, NULL, NULL, "g2", 0);
    assert_event(&r.events[2], JOURNAL_DELETE, "team/app", D3, NULL, NULL, "g3", 0);
    assert_event(&r.events[3], JOURNAL_DELETE, "team/app", NULL, "v0", NULL, "g4", 0);
    webhook_result_release(&r);
}

static void test_generic_rejected(void **state)
{
    (void)state;
    assert_rejected(NULL,
                    "{'events':[{'id':'g','action':'pull','repository':'a','digest':'" D1 "'}]}",
                    FERRY_EPARSE, "events[0].action \"pull\" is not push or delete");
    assert_rejected(NULL, "{'events':[{'id':'g','action':'push','repository':'a','tag':'v1'}]}",
                    FERRY_EPARSE, "events[0].digest is missing");
    assert_rejected(NULL, "{'events':[{'id':'g','action':'delete','repository':'a'}]}",
                    FERRY_EPARSE, "events[0] is a delete with neither digest nor tag");
    assert_rejected(NULL,
                    "{'events':[{'id':'g','action':'delete','repository':'a','digest':'" D1
                    "','tag':'v1'}]}",
                    FERRY_EPARSE, "events[0] is a delete with both digest and tag (send one)");
    assert_rejected(NULL, "{'events':[{'id':'g','action':'push','repository':'a','digest':''}]}",
                    FERRY_EPARSE, "events[0].digest is not a valid digest");
    assert_rejected(
        NULL, "{'events':[{'id':'g','action':'push','repository':'a','digest':'" D1 "','tag':''}]}",
        FERRY_EPARSE, "events[0].tag is not a valid tag");
    assert_rejected(NULL, "{'events':[{'action':'push','repository':'a','digest':'" D1 "'}]}",
                    FERRY_EPARSE, "events[0].id is missing");
    assert_rejected(NULL,
                    "{'events':[{'id':'g','action':'push','repository':'a','digest':'" D1
                    "','timestamp':'now'}]}",
                    FERRY_EPARSE, "events[0].timestamp is not an RFC 3339 time");

    /* An unknown action is shown, but never more than 64 bytes of it. */
    char action[1001];
    memset(action, 'x', sizeof(action) - 1);
    action[sizeof(action) - 1] = '\0';
    char *text = xasprintf("{'events':[{'id':'g','action':'%s','repository':'a'}]}", action);
    char *body = json(text);
    struct webhook_result r;
    char *err = NULL;
    assert_int_equal(webhook_parse(SOURCE_NAME, NULL, body, strlen(body), &r, &err), FERRY_EPARSE);
    assert_message(err);
    assert_null(strstr(err, action + sizeof(action) - 1 - 65));
    assert_non_null(strstr(err, "..."));
    free(err);
    free(body);
    free(text);
}

/* Distribution events that do not parse, each on its own and with the path it names. */
static void test_distribution_rejected(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        {"{'events':[{'action':'push','target':{}}]}", "events[0].id is missing"},
        {"{'events':[{'id':null,'action':'push','target':{}}]}", "events[0].id is missing"},
        {"{'events':[{'id':5,'action':'push','target':{}}]}", "events[0].id is not a string"},
        {"{'events':[{'id':'','action':'push','target':{}}]}", "events[0].id is empty"},
        {"{'events':[{'id':'a','target':{}}]}", "events[0].action is missing"},
        {"{'events':[{'id':'a','action':['push'],'target':{}}]}",
         "events[0].action is not a string"},
        {"{'events':[{'id':'a','action':'push'}]}", "events[0].target is missing"},
        {"{'events':[{'id':'a','action':'push','target':'x'}]}",
         "events[0].target is not an object"},
        {"{'events':[{'id':'a','action':'push','target':{'mediaType':'" MEDIA_OCI_MANIFEST
         "','digest':'" D1 "'}}]}",
         "events[0].target.repository is missing"},
        {"{'events':[{'id':'a','action':'push','target':{'mediaType':'" MEDIA_OCI_MANIFEST
         "','repository':'a'}}]}",
         "events[0].target.digest is missing"},
        {"{'events':[{'id':'a','action':'push','target':{'tag':'v1','digest':'" D1
         "','repository':'a','tag':'v2'}}]}",
         "events[0].target.tag appears more than once"},
        {"{'events':[{'id':'a','action':'push','target':{'tag':7,'repository':'a'}}]}",
         "events[0].target.tag is not a string"},
        {"{'events':[{'id':'a','action':'pull','target':{'digest':{}}}]}",
         "events[0].target.digest is not a string"},
        {"{'events':[{'id':'a','action':'push','target':{'mediaType':'" MEDIA_OCI_MANIFEST
         "','digest':'sha256:1234','repository':'a'}}]}",
         "events[0].target.digest is not a valid digest"},
        {"{'events':[{'id':'a','action':'push','target':{'mediaType':'" MEDIA_OCI_MANIFEST
         "','digest':'SHA256:1111111111111111111111111111111111111111111111111111111111111111',"
         "'repository':'a'}}]}",
         "events[0].target.digest is not a valid digest"},
        {"{'events':[{'id':'a','action':'push','target':{'mediaType':'" MEDIA_OCI_MANIFEST
         "','digest':'" D1 "','repository':'Team/App'}}]}",
         "events[0].target.repository is not a valid repository name"},
        {"{'events':[{'id':'a','action':'push','target':{'mediaType':'" MEDIA_OCI_MANIFEST
         "','digest':'" D1 "','repository':'../x'}}]}",
         "events[0].target.repository is not a valid repository name"},
        {"{'events':[{'id':'a','action':'delete','target':{'digest':'" D1
         "','repository':'a/../../etc'}}]}",
         "events[0].target.repository is not a valid repository name"},
        {"{'events':[{'id':'a','action':'push','target':{'digest':'" D1
         "','repository':'a','tag':'../x'}}]}",
         "events[0].target.tag is not a valid tag"},
        {"{'events':[{'id':'a','action':'push','target':{'digest':'" D1
         "','repository':'a','tag':'x\\ny'}}]}",
         "events[0].target.tag has control characters"},
        {"{'events':[{'id':'a','action':'delete','target':{'repository':'a','tag':'-x'}}]}",
         "events[0].target.tag is not a valid tag"},
        {"{'events':[{'id':'a','action':'delete','target':{'digest':'md5:abc','repository':'a'}}]}",
         "events[0].target.digest is not a valid digest"},
        {"{'events':[{'id':'a','action':'delete','target':{'digest':'" D1 "'}}]}",
         "events[0].target.repository is missing"},
        {"{'events':{}}", "events is not an array"},
        {"{'events':null}", "events is missing"},
        {"{'evts':[]}", "events is missing"},
        {"{'events':[1]}", "events[0] is not an object"},
        {"{'events':[{'id':'\xff','action':'pull','target':{}}]}",
         "events[0].id is not valid UTF-8"},
        {"[]", "payload is not an object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_rejected(CT_V1, cases[i].text, FERRY_EPARSE, cases[i].message);
}

static void test_length_caps(void **state)
{
    (void)state;
    /* A tag past the grammar's 128 bytes, and one past every string's 4096. */
    char tag[5001];
    memset(tag, 'a', sizeof(tag) - 1);
    tag[129] = '\0';
    char *text = xasprintf("{'events':[{'id':'a','action':'push','target':{'digest':'" D1
                           "','repository':'a','tag':'%s'}}]}",
                           tag);
    assert_rejected(CT_V1, text, FERRY_EPARSE, "events[0].target.tag is not a valid tag");
    free(text);
    tag[128] = '\0';
    text = xasprintf("{'events':[{'id':'a','action':'push','target':{'digest':'" D1
                     "','repository':'a','tag':'%s'}}]}",
                     tag);
    struct webhook_result r;
    parse_ok(CT_V1, text, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(strlen(r.events[0].tag), 128);
    webhook_result_release(&r);
    free(text);
    memset(tag, 'a', sizeof(tag) - 1);
    tag[sizeof(tag) - 1] = '\0';
    text = xasprintf("{'events':[{'id':'a','action':'pull','target':{'tag':'%s'}}]}", tag);
    assert_rejected(CT_V1, text, FERRY_EPARSE, "events[0].target.tag is too long");
    free(text);

    /* Event ids: 512 bytes at most. */
    char id[514];
    memset(id, 'i', sizeof(id) - 1);
    id[512] = '\0';
    text = xasprintf("{'events':[{'id':'%s','action':'pull','target':{}}]}", id);
    parse_ok(CT_V1, text, &r);
    assert_int_equal(r.ignored, 1);
    webhook_result_release(&r);
    free(text);
    id[512] = 'i';
    id[513] = '\0';
    text = xasprintf("{'events':[{'id':'%s','action':'pull','target':{}}]}", id);
    assert_rejected(CT_V1, text, FERRY_EPARSE, "events[0].id is longer than 512 bytes");
    free(text);

    /* A repository name longer than 255 bytes. */
    char repository[300];
    memset(repository, 'r', sizeof(repository) - 1);
    repository[sizeof(repository) - 1] = '\0';
    text = xasprintf("{'events':[{'id':'a','action':'delete','target':{'digest':'" D1
                     "','repository':'%s'}}]}",
                     repository);
    assert_rejected(CT_V1, text, FERRY_EPARSE,
                    "events[0].target.repository is not a valid repository name");
    free(text);
}

static char *many_events(size_t n)
{
    static const char event[] = "{'id':'x','action':'pull','target':{}},";
    size_t len = strlen("{'events':[]}") + n * strlen(event) + 1;
    char *s = xmalloc(len);
    char *p = s;
    p += sprintf(p, "{'events':[");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", event);
    if (n > 0)
        p--;
    sprintf(p, "]}");
    return s;
}

static void test_too_many_events(void **state)
{
    (void)state;
    struct webhook_result r;
    char *text = many_events(WEBHOOK_MAX_EVENTS);
    parse_ok(CT_V1, text, &r);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.ignored, WEBHOOK_MAX_EVENTS);
    webhook_result_release(&r);
    free(text);

    text = many_events(WEBHOOK_MAX_EVENTS + 1);
    assert_rejected(CT_V1, text, FERRY_ETOOBIG, "payload has more than 10000 events");
    assert_rejected(NULL, text, FERRY_ETOOBIG, "payload has more than 10000 events");
    free(text);
}

/* One bad event among good ones rejects the whole payload. */
static void test_one_bad_event_rejects_all(void **state)
{
    (void)state;
    char *text = envelope(
        dist_event("good-1", "push",
                   "'mediaType':'" MEDIA_OCI_MANIFEST "','digest':'" D1
                   "','repository':'a','tag':'v1'"),
        dist_event("good-2", "delete", "'digest':'" D2 "','repository':'a'"),
        dist_event("bad", "push",
                   "'mediaType':'" MEDIA_OCI_MANIFEST "','digest':'" D3 "','repository':'A'"),
        dist_event("good-3", "push",
                   "'mediaType':'" MEDIA_OCI_MANIFEST "','digest':'" D4 "','repository':'a'"),
        NULL);
    assert_rejected(CT_V1, text, FERRY_EPARSE,
                    "events[2].target.repository is not a valid repository name");
    free(text);
    text = envelope(dist_event("ok", "pull", "'repository':'a'"), xstrdup("[]"), NULL);
    assert_rejected(CT_V1, text, FERRY_EPARSE, "events[1] is not an object");
    assert_rejected(NULL, text, FERRY_EPARSE, "events[1] is not an object");
    free(text);
    assert_rejected(NULL,
                    "{'events':[{'id':'g1','action':'push','repository':'a','digest':'" D1 "'},"
                    "{'id':'g2','action':'push','repository':'a','digest':'" D2 "','tag':'@'}]}",
                    FERRY_EPARSE, "events[1].tag is not a valid tag");
}

static void test_not_json(void **state)
{
    (void)state;
    assert_rejected_raw(CT_V1, "", 0, FERRY_EPARSE, "payload is empty");
    assert_rejected_raw(NULL, NULL, 0, FERRY_EPARSE, "payload is empty");
    assert_rejected(CT_V1, "hello", FERRY_EPARSE, "malformed JSON at byte 0");
    assert_rejected(NULL, "<html><body>502 Bad Gateway</body></html>", FERRY_EPARSE,
                    "malformed JSON at byte 0");
    assert_rejected(CT_V1, "{'events':[{'id':'a','action':", FERRY_EPARSE,
                    "malformed JSON at byte 29");
    assert_rejected(CT_V1, "{'events':[]", FERRY_EPARSE, NULL);
    assert_rejected(CT_V1, "{'events':[]} {}", FERRY_EPARSE,
                    "malformed JSON at byte 14: data after the document");
    assert_rejected_raw(NULL, "{\"events\":[]}\0", 14, FERRY_EPARSE, "malformed JSON at byte 13");
    assert_rejected_raw(NULL, "{\"events\":[\"a\0b\"]}", 18, FERRY_EPARSE,
                        "malformed JSON at byte 13");

    /* Trailing whitespace is fine. */
    struct webhook_result r;
    parse_ok(CT_V1, "\n {'events':[]} \r\n\t", &r);
    webhook_result_release(&r);
}

static void test_not_an_event_document(void **state)
{
    (void)state;
    const char *message = "payload is not a Distribution, Harbor or generic event document";
    assert_rejected(NULL, "{}", FERRY_EPARSE, message);
    assert_rejected(NULL, "[]", FERRY_EPARSE, message);
    assert_rejected(NULL, "42", FERRY_EPARSE, message);
    assert_rejected(NULL, "'events'", FERRY_EPARSE, message);
    assert_rejected(NULL, "{'type':'PUSH_ARTIFACT'}", FERRY_EPARSE, message);
    assert_rejected(NULL, "{'events':[{'id':'a'}]}", FERRY_EPARSE, message);
    assert_rejected(NULL, "{'events':[1,2]}", FERRY_EPARSE, message);
    assert_rejected(NULL, "{'events':'x'}", FERRY_EPARSE, "events is not an array");
    assert_rejected(NULL, "{'events':[],'events':[]}", FERRY_EPARSE,
                    "events appears more than once");
    /* With Distribution's content type, a Harbor document is a bad envelope. */
    assert_rejected(CT_V2, "{'type':'PUSH_ARTIFACT','event_data':{}}", FERRY_EPARSE,
                    "events is missing");
}

/* The body is `len` bytes, not a C string, and the result owns copies of everything. */
static void test_body_not_terminated(void **state)
{
    (void)state;
    char *text = json("{'events':[{'id':'a','action':'delete','target':{'repository':'r',"
                      "'tag':'t'}}]}garbage that is not part of the body");
    size_t len = (size_t)(strstr(text, "garbage") - text);
    char *body = xmalloc(len);
    memcpy(body, text, len);
    struct webhook_result r;
    char *err = NULL;
    char *source = xstrdup("registry-a");
    assert_int_equal(webhook_parse(source, CT_V1, body, len, &r, &err), 0);
    assert_null(err);
    free(body);
    free(text);
    free(source);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.events[0].source, "registry-a");
    assert_string_equal(r.events[0].repository, "r");
    assert_string_equal(r.events[0].tag, "t");
    assert_string_equal(r.events[0].event_id, "a");
    webhook_result_release(&r);
    webhook_result_release(&r);
    webhook_result_release(NULL);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    struct webhook_result r;
    char *err = NULL;
    assert_int_equal(webhook_parse(SOURCE_NAME, NULL, "{}", 2, NULL, &err), FERRY_EINVAL);
    assert_message(err);
    free(err);
    err = NULL;
    assert_int_equal(webhook_parse(NULL, NULL, "{}", 2, &r, &err), FERRY_EINVAL);
    assert_zeroed(&r);
    assert_message(err);
    free(err);
    err = NULL;
    assert_int_equal(webhook_parse(SOURCE_NAME, NULL, NULL, 2, &r, &err), FERRY_EINVAL);
    free(err);
    /* err may be NULL. */
    assert_int_equal(webhook_parse(SOURCE_NAME, NULL, "x", 1, &r, NULL), FERRY_EPARSE);
    assert_zeroed(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distribution_manifest_push_with_tag),
        cmocka_unit_test(test_distribution_push_by_digest),
        cmocka_unit_test(test_distribution_blob_pushes_ignored),
        cmocka_unit_test(test_distribution_tagged_push_unknown_type),
        cmocka_unit_test(test_distribution_pull_and_mount_ignored),
        cmocka_unit_test(test_distribution_deletes),
        cmocka_unit_test(test_distribution_v2),
        cmocka_unit_test(test_distribution_by_shape),
        cmocka_unit_test(test_empty_envelope),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_harbor_push),
        cmocka_unit_test(test_harbor_delete),
        cmocka_unit_test(test_harbor_other_types_ignored),
        cmocka_unit_test(test_harbor_rejected),
        cmocka_unit_test(test_generic),
        cmocka_unit_test(test_generic_rejected),
        cmocka_unit_test(test_distribution_rejected),
        cmocka_unit_test(test_length_caps),
        cmocka_unit_test(test_too_many_events),
        cmocka_unit_test(test_one_bad_event_rejects_all),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_not_an_event_document),
        cmocka_unit_test(test_body_not_terminated),
        cmocka_unit_test(test_invalid_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
