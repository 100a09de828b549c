#include "journal/webhook.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/manifest.h"
#include "common/reference.h"
#include "common/xalloc.h"

#define WEBHOOK_DISTRIBUTION_V1 "application/vnd.docker.distribution.events.v1+json"
#define WEBHOOK_DISTRIBUTION_V2 "application/vnd.docker.distribution.events.v2+json"

#define WEBHOOK_UNKNOWN_MESSAGE "payload is not a Distribution, Harbor or generic event document"

/* Longest string taken from a payload, and longest event id. */
#define WEBHOOK_MAX_STRING   4096
#define WEBHOOK_MAX_EVENT_ID 512

/* Room for a field path such as "event_data.resources[9999].digest". */
#define WEBHOOK_PATH_MAX 96

/* 9999-12-31T23:59:59Z: the last second RFC 3339 can write. */
#define WEBHOOK_MAX_UNIX_SECONDS 253402300799.0

enum webhook_format {
    WEBHOOK_UNKNOWN,
    WEBHOOK_DISTRIBUTION,
    WEBHOOK_GENERIC,
    WEBHOOK_HARBOR,
};

/* The events of one payload while it is being read. */
struct webhook_builder {
    const char *source;
    struct journal_event *events;
    size_t n;
    size_t cap;
    size_t ignored;
};

/* "where.name", or "name" at the top level; cut short (still one line) if it would not fit. */
static void webhook_path(char out[WEBHOOK_PATH_MAX], const char *where, const char *name)
{
    size_t n = 0;
    for (const char *p = where; *p != '\0' && n < WEBHOOK_PATH_MAX - 1; p++)
        out[n++] = *p;
    if (where[0] != '\0' && n < WEBHOOK_PATH_MAX - 1)
        out[n++] = '.';
    for (const char *p = name; *p != '\0' && n < WEBHOOK_PATH_MAX - 1; p++)
        out[n++] = *p;
    out[n] = '\0';
}

/*
 * Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF.
 * Event ids and media types end up in protobuf string fields, which other
 * readers of the journal decode as UTF-8.
 */
static bool webhook_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        unsigned char c = *p;
        size_t more;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= more; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((more == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (more == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        p += more + 1;
    }
    return true;
}

/*
 * Find the member `name` of `obj`. A key that appears twice is refused: a
 * document that says two things about one field is not one to act on.
 */
static int webhook_field(const cJSON *obj, const char *where, const char *name, const cJSON **out,
                         char **err)
{
    const cJSON *child;
    *out = NULL;
    cJSON_ArrayForEach(child, obj)
    {
        if (child->string == NULL || strcmp(child->string, name) != 0)
            continue;
        if (*out != NULL) {
            char path[WEBHOOK_PATH_MAX];
            webhook_path(path, where, name);
            return ferry_error_set(err, FERRY_EPARSE, "%s appears more than once", path);
        }
        *out = child;
    }
    return 0;
}

enum webhook_presence {
    WEBHOOK_OPTIONAL,       /* absent or null: NULL */
    WEBHOOK_OPTIONAL_EMPTY, /* absent, null or "": NULL (Go's omitempty and zero values) */
    WEBHOOK_REQUIRED,       /* absent or null: "is missing" */
};

/*
 * Point *value at the string member `name` of `obj` (owned by the document).
 * Every string taken from a payload is at most WEBHOOK_MAX_STRING bytes of
 * UTF-8 without control characters, whatever it is used for later.
 */
static int webhook_string(const cJSON *obj, const char *where, const char *name,
                          enum webhook_presence presence, const char **value, char **err)
{
    const cJSON *item;
    char path[WEBHOOK_PATH_MAX];
    int rc = webhook_field(obj, where, name, &item, err);

    *value = NULL;
    if (rc < 0)
        return rc;
    webhook_path(path, where, name);
    if (item == NULL || cJSON_IsNull(item)) {
        if (presence == WEBHOOK_REQUIRED)
            return ferry_error_set(err, FERRY_EPARSE, "%s is missing", path);
        return 0;
    }
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return ferry_error_set(err, FERRY_EPARSE, "%s is not a string", path);
    const char *s = item->valuestring;
    size_t len = strlen(s);
    if (len > WEBHOOK_MAX_STRING)
        return ferry_error_set(err, FERRY_EPARSE, "%s is too long", path);
    for (const char *c = s; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return ferry_error_set(err, FERRY_EPARSE, "%s has control characters", path);
    }
    if (!webhook_utf8_valid(s))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not valid UTF-8", path);
    if (len == 0 && presence == WEBHOOK_OPTIONAL_EMPTY)
        return 0;
    *value = s;
    return 0;
}

/* The member `name` of `obj` as an object (required) or an array (required). */
static int webhook_child(const cJSON *obj, const char *where, const char *name, bool want_array,
                         const cJSON **out, char **err)
{
    char path[WEBHOOK_PATH_MAX];
    int rc = webhook_field(obj, where, name, out, err);
    if (rc < 0)
        return rc;
    webhook_path(path, where, name);
    if (*out == NULL || cJSON_IsNull(*out))
        return ferry_error_set(err, FERRY_EPARSE, "%s is missing", path);
    if (want_array && !cJSON_IsArray(*out))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not an array", path);
    if (!want_array && !cJSON_IsObject(*out))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not an object", path);
    return 0;
}

/* The optional "timestamp" member of an event, as Unix milliseconds (0 when absent). */
static int webhook_timestamp(const cJSON *event, const char *where, int64_t *unix_ms, char **err)
{
    const char *text;
    int rc = webhook_string(event, where, "timestamp", WEBHOOK_OPTIONAL, &text, err);
    *unix_ms = 0;
    if (rc < 0 || text == NULL)
        return rc;
    if (!clock_parse_rfc3339(text, unix_ms))
        return ferry_error_set(err, FERRY_EPARSE, "%s.timestamp is not an RFC 3339 time", where);
    return 0;
}

/* The required "id" member of an event: 1 to WEBHOOK_MAX_EVENT_ID bytes. */
static int webhook_event_id(const cJSON *event, const char *where, const char **id, char **err)
{
    int rc = webhook_string(event, where, "id", WEBHOOK_REQUIRED, id, err);
    if (rc < 0)
        return rc;
    if ((*id)[0] == '\0')
        return ferry_error_set(err, FERRY_EPARSE, "%s.id is empty", where);
    if (strlen(*id) > WEBHOOK_MAX_EVENT_ID)
        return ferry_error_set(err, FERRY_EPARSE, "%s.id is longer than %d bytes", where,
                               WEBHOOK_MAX_EVENT_ID);
    return 0;
}

static int webhook_check_repository(const char *repository, const char *where, const char *name,
                                    char **err)
{
    char path[WEBHOOK_PATH_MAX];
    webhook_path(path, where, name);
    if (repository == NULL)
        return ferry_error_set(err, FERRY_EPARSE, "%s is missing", path);
    if (!reference_repository_valid(repository))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not a valid repository name", path);
    return 0;
}

static int webhook_check_digest(const char *digest, const char *where, const char *name, char **err)
{
    char path[WEBHOOK_PATH_MAX];
    webhook_path(path, where, name);
    if (digest == NULL)
        return ferry_error_set(err, FERRY_EPARSE, "%s is missing", path);
    if (!digest_valid(digest))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not a valid digest", path);
    return 0;
}

/* A tag is always optional; when present it must pass the tag grammar. */
static int webhook_check_tag(const char *tag, const char *where, const char *name, char **err)
{
    char path[WEBHOOK_PATH_MAX];
    webhook_path(path, where, name);
    if (tag != NULL && !reference_tag_valid(tag))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not a valid tag", path);
    return 0;
}

static void webhook_builder_init(struct webhook_builder *b, const char *source)
{
    memset(b, 0, sizeof(*b));
    b->source = source;
}

/* Free `n` events that own their strings, and the array. */
static void webhook_events_free(struct journal_event *events, size_t n)
{
    for (size_t i = 0; i < n; i++)
        journal_event_release(&events[i]);
    free(events);
}

static void webhook_builder_release(struct webhook_builder *b)
{
    webhook_events_free(b->events, b->n);
    b->events = NULL;
    b->n = b->cap = 0;
}

/*
 * Append one event. The strings are copied, except `event_id`, which the
 * builder takes over.
 */
static void webhook_builder_add(struct webhook_builder *b, enum journal_action action,
                                const char *repository, const char *digest, const char *tag,
                                const char *media_type, char *event_id, int64_t event_unix_ms)
{
    if (b->n == b->cap) {
        b->cap = b->cap == 0 ? 8 : b->cap * 2;
        b->events = xrealloc(b->events, b->cap * sizeof(*b->events));
    }
    /* Every field set, the rest zero: a webhook's event is no observation. */
    b->events[b->n++] = (struct journal_event){
        .action = action,
        .source = xstrdup(b->source),
        .repository = xstrdup(repository),
        .digest = xstrdup(digest),
        .tag = xstrdup(tag),
        .media_type = xstrdup(media_type),
        .event_id = event_id,
        .event_unix_ms = event_unix_ms,
    };
}

/* The top-level "events" array, capped before any of its events is read. */
static int webhook_events_array(const cJSON *root, const cJSON **events, char **err)
{
    int rc = webhook_child(root, "", "events", true, events, err);
    if (rc < 0)
        return rc;
    if (cJSON_GetArraySize(*events) > WEBHOOK_MAX_EVENTS)
        return ferry_error_set(err, FERRY_ETOOBIG, "payload has more than %d events",
                               WEBHOOK_MAX_EVENTS);
    return 0;
}

/*
 * The start of every event of an "events" array, whatever the form: its
 * path ("events[3]") into `where`, and its required id and action.
 */
static int webhook_event_start(const cJSON *event, size_t index, char where[WEBHOOK_PATH_MAX],
                               const char **id, const char **action, char **err)
{
    int rc;
    snprintf(where, WEBHOOK_PATH_MAX, "events[%zu]", index);
    if (!cJSON_IsObject(event))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not an object", where);
    if ((rc = webhook_event_id(event, where, id, err)) < 0 ||
        (rc = webhook_string(event, where, "action", WEBHOOK_REQUIRED, action, err)) < 0)
        return rc;
    return 0;
}

/* Reads one event of an "events" array into the builder. */
typedef int (*webhook_event_fn)(const cJSON *event, size_t index, struct webhook_builder *b,
                                char **err);

/* Every event of the top-level "events" array, in order; the first bad one ends it. */
static int webhook_parse_events(const cJSON *root, webhook_event_fn parse_event,
                                struct webhook_builder *b, char **err)
{
    const cJSON *events, *event;
    size_t index = 0;
    int rc = webhook_events_array(root, &events, err);
    if (rc < 0)
        return rc;
    cJSON_ArrayForEach(event, events)
    {
        if ((rc = parse_event(event, index++, b, err)) < 0)
            return rc;
    }
    return 0;
}

/*
 * One event of a Distribution envelope. Every event must be well formed (an
 * id, an action, a target object, a valid timestamp, strings where strings
 * belong); only manifest pushes and manifest or tag deletes must also name a
 * valid repository, digest and tag, since only they become journal events.
 *
 * Descriptor fields may arrive as Go's zero values ("digest": "" on a tag
 * delete) rather than be left out, so "" counts as absent throughout.
 */
static int webhook_distribution_event(const cJSON *event, size_t index, struct webhook_builder *b,
                                      char **err)
{
    char where[WEBHOOK_PATH_MAX], target_where[WEBHOOK_PATH_MAX];
    const char *id, *action, *media_type, *digest, *tag, *repository;
    const cJSON *target;
    int64_t unix_ms;
    int rc;

    if ((rc = webhook_event_start(event, index, where, &id, &action, err)) < 0 ||
        (rc = webhook_timestamp(event, where, &unix_ms, err)) < 0 ||
        (rc = webhook_child(event, where, "target", false, &target, err)) < 0)
        return rc;

    webhook_path(target_where, where, "target");
    if ((rc = webhook_string(target, target_where, "mediaType", WEBHOOK_OPTIONAL_EMPTY, &media_type,
                             err)) < 0 ||
        (rc = webhook_string(target, target_where, "digest", WEBHOOK_OPTIONAL_EMPTY, &digest,
                             err)) < 0 ||
        (rc = webhook_string(target, target_where, "tag", WEBHOOK_OPTIONAL_EMPTY, &tag, err)) < 0 ||
        (rc = webhook_string(target, target_where, "repository", WEBHOOK_OPTIONAL_EMPTY,
                             &repository, err)) < 0)
        return rc;

    bool manifest_type = manifest_media_type_known(media_type);
    if (strcmp(action, "push") == 0) {
        /*
         * Blobs are pushed with their own media type or none; a manifest
         * carries a manifest media type, and only a manifest push names a
         * tag. OCI artifacts are manifests of the same media types.
         */
        if (!manifest_type && tag == NULL) {
            b->ignored++;
            return 0;
        }
        if ((rc = webhook_check_repository(repository, target_where, "repository", err)) < 0 ||
            (rc = webhook_check_digest(digest, target_where, "digest", err)) < 0 ||
            (rc = webhook_check_tag(tag, target_where, "tag", err)) < 0)
            return rc;
        webhook_builder_add(b, JOURNAL_PUSH, repository, digest, tag, media_type, xstrdup(id),
                            unix_ms);
        return 0;
    }
    if (strcmp(action, "delete") == 0) {
        /*
         * A repository delete names neither digest nor tag. A blob delete
         * looks like a manifest delete (digest and repository) unless it
         * carries a blob media type, so only a typed one can be told apart.
         */
        if ((digest == NULL && tag == NULL) ||
            (media_type != NULL && !manifest_type && tag == NULL)) {
            b->ignored++;
            return 0;
        }
        if ((rc = webhook_check_repository(repository, target_where, "repository", err)) < 0)
            return rc;
        if (digest != NULL) {
            /* Deleting a manifest removes every tag on it: the tag adds nothing. */
            if ((rc = webhook_check_digest(digest, target_where, "digest", err)) < 0)
                return rc;
            tag = NULL;
        } else if ((rc = webhook_check_tag(tag, target_where, "tag", err)) < 0) {
            return rc;
        }
        webhook_builder_add(b, JOURNAL_DELETE, repository, digest, tag, media_type, xstrdup(id),
                            unix_ms);
        return 0;
    }
    /* Pulls, mounts and actions newer than this code. */
    b->ignored++;
    return 0;
}

/*
 * One event of Ferry's own generic form. Whoever sends it wrote it for Ferry,
 * so nothing is guessed: an unknown action, an empty string or a delete that
 * names both a digest and a tag is an error.
 */
static int webhook_generic_event(const cJSON *event, size_t index, struct webhook_builder *b,
                                 char **err)
{
    char where[WEBHOOK_PATH_MAX], shown[FERRY_PRINTABLE_MAX];
    const char *id, *action, *repository, *digest, *tag, *media_type;
    int64_t unix_ms;
    int rc;

    if ((rc = webhook_event_start(event, index, where, &id, &action, err)) < 0 ||
        (rc = webhook_string(event, where, "repository", WEBHOOK_REQUIRED, &repository, err)) < 0 ||
        (rc = webhook_string(event, where, "digest", WEBHOOK_OPTIONAL, &digest, err)) < 0 ||
        (rc = webhook_string(event, where, "tag", WEBHOOK_OPTIONAL, &tag, err)) < 0 ||
        (rc = webhook_string(event, where, "mediaType", WEBHOOK_OPTIONAL_EMPTY, &media_type, err)) <
            0 ||
        (rc = webhook_timestamp(event, where, &unix_ms, err)) < 0)
        return rc;

    enum journal_action kind;
    if (strcmp(action, "push") == 0) {
        kind = JOURNAL_PUSH;
    } else if (strcmp(action, "delete") == 0) {
        kind = JOURNAL_DELETE;
    } else {
        return ferry_error_set(err, FERRY_EPARSE, "%s.action \"%s\" is not push or delete", where,
                               ferry_printable(action, shown));
    }
    if ((rc = webhook_check_repository(repository, where, "repository", err)) < 0)
        return rc;
    if (kind == JOURNAL_PUSH || digest != NULL) {
        if ((rc = webhook_check_digest(digest, where, "digest", err)) < 0)
            return rc;
    }
    if ((rc = webhook_check_tag(tag, where, "tag", err)) < 0)
        return rc;
    if (kind == JOURNAL_DELETE && digest == NULL && tag == NULL)
        return ferry_error_set(err, FERRY_EPARSE, "%s is a delete with neither digest nor tag",
                               where);
    if (kind == JOURNAL_DELETE && digest != NULL && tag != NULL)
        return ferry_error_set(err, FERRY_EPARSE,
                               "%s is a delete with both digest and tag (send one)", where);
    webhook_builder_add(b, kind, repository, digest, tag, media_type, xstrdup(id), unix_ms);
    return 0;
}

/*
 * Harbor's repository: "repo_full_name" ("project/name"), or "namespace" and
 * "name" joined when an older Harbor leaves the full name out. *owned gets
 * the joined string, which the caller frees.
 */
static int webhook_harbor_repository(const cJSON *event_data, const char **repository, char **owned,
                                     char **err)
{
    const char *where = "event_data.repository";
    const char *full_name, *namespace, *name;
    const cJSON *repo;
    int rc;

    *repository = NULL;
    *owned = NULL;
    if ((rc = webhook_child(event_data, "event_data", "repository", false, &repo, err)) < 0 ||
        (rc = webhook_string(repo, where, "repo_full_name", WEBHOOK_OPTIONAL_EMPTY, &full_name,
                             err)) < 0)
        return rc;
    if (full_name != NULL) {
        *repository = full_name;
        return webhook_check_repository(full_name, where, "repo_full_name", err);
    }
    if ((rc = webhook_string(repo, where, "namespace", WEBHOOK_REQUIRED, &namespace, err)) < 0 ||
        (rc = webhook_string(repo, where, "name", WEBHOOK_REQUIRED, &name, err)) < 0)
        return rc;
    *owned = xasprintf("%s/%s", namespace, name);
    *repository = *owned;
    return webhook_check_repository(*owned, where, "name", err);
}

/* Harbor's "occur_at": whole Unix seconds, within what RFC 3339 can write. */
static int webhook_harbor_occur_at(const cJSON *root, int64_t *seconds, char **err)
{
    const cJSON *occur_at;
    int rc = webhook_field(root, "", "occur_at", &occur_at, err);
    if (rc < 0)
        return rc;
    if (occur_at == NULL || cJSON_IsNull(occur_at))
        return ferry_error_set(err, FERRY_EPARSE, "occur_at is missing");
    /* The range check comes first so that the conversion below is defined. */
    if (!cJSON_IsNumber(occur_at) || !(occur_at->valuedouble >= 0.0) ||
        occur_at->valuedouble > WEBHOOK_MAX_UNIX_SECONDS ||
        (double)(int64_t)occur_at->valuedouble != occur_at->valuedouble)
        return ferry_error_set(err, FERRY_EPARSE, "occur_at is not a unix time in seconds");
    *seconds = (int64_t)occur_at->valuedouble;
    return 0;
}

/* What one Harbor artifact event says of all its resources. */
struct webhook_harbor_event {
    const char *type; /* PUSH_ARTIFACT or DELETE_ARTIFACT */
    enum journal_action action;
    const char *repository;
    int64_t occur_seconds;
};

/* One resource (artifact) of a Harbor event into the builder. */
static int webhook_harbor_resource(const cJSON *resource, size_t index,
                                   const struct webhook_harbor_event *h, struct webhook_builder *b,
                                   char **err)
{
    char where[WEBHOOK_PATH_MAX];
    const char *digest, *tag;
    int rc;

    snprintf(where, sizeof(where), "event_data.resources[%zu]", index);
    if (!cJSON_IsObject(resource))
        return ferry_error_set(err, FERRY_EPARSE, "%s is not an object", where);
    if ((rc = webhook_string(resource, where, "digest", WEBHOOK_OPTIONAL_EMPTY, &digest, err)) <
            0 ||
        (rc = webhook_string(resource, where, "tag", WEBHOOK_OPTIONAL_EMPTY, &tag, err)) < 0)
        return rc;
    if (tag != NULL && digest != NULL && strcmp(tag, digest) == 0)
        tag = NULL;
    if ((rc = webhook_check_tag(tag, where, "tag", err)) < 0)
        return rc;
    if (h->action == JOURNAL_PUSH || digest != NULL) {
        if ((rc = webhook_check_digest(digest, where, "digest", err)) < 0)
            return rc;
    } else if (tag == NULL) {
        return ferry_error_set(err, FERRY_EPARSE, "%s has neither digest nor tag", where);
    }

    char *event_id =
        xasprintf("harbor:%s:%s:%s:%s:%" PRId64, h->type, h->repository,
                  digest != NULL ? digest : "", tag != NULL ? tag : "", h->occur_seconds);
    /* Deleting an artifact deletes its manifest and so every tag on it. */
    const char *event_tag = h->action == JOURNAL_DELETE && digest != NULL ? NULL : tag;
    webhook_builder_add(b, h->action, h->repository, digest, event_tag, NULL, event_id,
                        h->occur_seconds * 1000);
    return 0;
}

/*
 * A Harbor webhook: one artifact event with one resource per artifact. Harbor
 * puts the digest in "tag" when the artifact has no tag, so a tag equal to
 * the digest (or empty) means none.
 */
static int webhook_parse_harbor(const cJSON *root, struct webhook_builder *b, char **err)
{
    struct webhook_harbor_event h = {0};
    const cJSON *event_data, *resources, *resource;
    char *owned_repository = NULL;
    size_t index = 0;
    int rc;

    if ((rc = webhook_string(root, "", "type", WEBHOOK_REQUIRED, &h.type, err)) < 0 ||
        (rc = webhook_child(root, "", "event_data", false, &event_data, err)) < 0)
        return rc;
    if (strcmp(h.type, "PUSH_ARTIFACT") == 0) {
        h.action = JOURNAL_PUSH;
    } else if (strcmp(h.type, "DELETE_ARTIFACT") == 0) {
        h.action = JOURNAL_DELETE;
    } else {
        /* Pulls, scans, quotas, replications: one ignored event per resource. */
        if ((rc = webhook_field(event_data, "event_data", "resources", &resources, err)) < 0)
            return rc;
        int count = cJSON_IsArray(resources) ? cJSON_GetArraySize(resources) : 0;
        b->ignored = count > 0 ? (size_t)count : 1;
        return 0;
    }

    if ((rc = webhook_harbor_occur_at(root, &h.occur_seconds, err)) < 0 ||
        (rc = webhook_harbor_repository(event_data, &h.repository, &owned_repository, err)) < 0 ||
        (rc = webhook_child(event_data, "event_data", "resources", true, &resources, err)) < 0)
        goto out;
    if (cJSON_GetArraySize(resources) > WEBHOOK_MAX_EVENTS) {
        rc = ferry_error_set(err, FERRY_ETOOBIG, "payload has more than %d resources",
                             WEBHOOK_MAX_EVENTS);
        goto out;
    }
    cJSON_ArrayForEach(resource, resources)
    {
        if ((rc = webhook_harbor_resource(resource, index++, &h, b, err)) < 0)
            goto out;
    }
out:
    free(owned_repository);
    return rc;
}

/* The media type of a Content-Type value without parameters names a Distribution envelope. */
static bool webhook_content_type_distribution(const char *content_type)
{
    if (content_type == NULL)
        return false;
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    size_t len = strcspn(content_type, ";");
    while (len > 0 && (content_type[len - 1] == ' ' || content_type[len - 1] == '\t'))
        len--;
    return (len == strlen(WEBHOOK_DISTRIBUTION_V1) &&
            strncasecmp(content_type, WEBHOOK_DISTRIBUTION_V1, len) == 0) ||
           (len == strlen(WEBHOOK_DISTRIBUTION_V2) &&
            strncasecmp(content_type, WEBHOOK_DISTRIBUTION_V2, len) == 0);
}

/*
 * Tell the three forms apart by shape: Distribution's events carry a
 * "target", the generic form's a top-level "repository", and Harbor's
 * document has "type" and "event_data". An empty "events" array is an empty
 * Distribution envelope.
 */
static int webhook_detect(const cJSON *root, enum webhook_format *format, char **err)
{
    const cJSON *events, *event, *type, *event_data;
    int rc;

    *format = WEBHOOK_UNKNOWN;
    if (!cJSON_IsObject(root))
        return ferry_error_set(err, FERRY_EPARSE, WEBHOOK_UNKNOWN_MESSAGE);
    if ((rc = webhook_field(root, "", "events", &events, err)) < 0)
        return rc;
    if (events != NULL) {
        if (!cJSON_IsArray(events))
            return ferry_error_set(err, FERRY_EPARSE, "events is not an array");
        if (events->child == NULL) {
            *format = WEBHOOK_DISTRIBUTION;
            return 0;
        }
        cJSON_ArrayForEach(event, events)
        {
            if (cJSON_IsObject(event) && cJSON_GetObjectItemCaseSensitive(event, "target")) {
                *format = WEBHOOK_DISTRIBUTION;
                return 0;
            }
        }
        cJSON_ArrayForEach(event, events)
        {
            if (cJSON_IsObject(event) && cJSON_GetObjectItemCaseSensitive(event, "repository")) {
                *format = WEBHOOK_GENERIC;
                return 0;
            }
        }
        return ferry_error_set(err, FERRY_EPARSE, WEBHOOK_UNKNOWN_MESSAGE);
    }
    if ((rc = webhook_field(root, "", "type", &type, err)) < 0 ||
        (rc = webhook_field(root, "", "event_data", &event_data, err)) < 0)
        return rc;
    if (type != NULL && event_data != NULL) {
        *format = WEBHOOK_HARBOR;
        return 0;
    }
    return ferry_error_set(err, FERRY_EPARSE, WEBHOOK_UNKNOWN_MESSAGE);
}

/*
 * Parse `len` bytes of `body` as one JSON document into *root (the caller
 * deletes it), or FERRY_EPARSE with *err naming the byte where it went wrong.
 */
static int webhook_json(const char *body, size_t len, cJSON **root, char **err)
{
    *root = NULL;
    if (len == 0)
        return ferry_error_set(err, FERRY_EPARSE, "payload is empty");
    /*
     * cJSON reads a NUL byte as the end of a string, so one inside the body
     * would cut a value short unseen. JSON has no place for one anyway.
     */
    const char *nul = memchr(body, '\0', len);
    if (nul != NULL)
        return ferry_error_set(err, FERRY_EPARSE, "malformed JSON at byte %zu",
                               (size_t)(nul - body));
    /*
     * A terminated copy keeps every read of cJSON inside the buffer, whatever
     * its length checks miss. The parse-end pointer stands in for
     * cJSON_GetErrorPtr(), which is one global shared by all threads.
     */
    char *copy = xmalloc(len + 1);
    memcpy(copy, body, len);
    copy[len] = '\0';
    const char *end = NULL;
    int rc = 0;
    *root = cJSON_ParseWithLengthOpts(copy, len, &end, false);
    if (*root == NULL) {
        if (end != NULL && end >= copy && end <= copy + len)
            rc = ferry_error_set(err, FERRY_EPARSE, "malformed JSON at byte %zu",
                                 (size_t)(end - copy));
        else
            rc = ferry_error_set(err, FERRY_EPARSE, "malformed JSON");
        goto out;
    }
    while (end != NULL && end < copy + len &&
           (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end != NULL && end < copy + len)
        rc = ferry_error_set(err, FERRY_EPARSE,
                             "malformed JSON at byte %zu: data after the document",
                             (size_t)(end - copy));
out:
    free(copy);
    return rc;
}

/* Read the events of `root`, in the form its Content-Type or its shape says, into `b`. */
static int webhook_parse_document(const cJSON *root, const char *content_type,
                                  struct webhook_builder *b, char **err)
{
    enum webhook_format format;
    int rc;

    if (webhook_content_type_distribution(content_type)) {
        format = WEBHOOK_DISTRIBUTION;
        if (!cJSON_IsObject(root))
            return ferry_error_set(err, FERRY_EPARSE, "payload is not an object");
    } else if ((rc = webhook_detect(root, &format, err)) < 0) {
        return rc;
    }
    switch (format) {
    case WEBHOOK_DISTRIBUTION:
        return webhook_parse_events(root, webhook_distribution_event, b, err);
    case WEBHOOK_GENERIC:
        return webhook_parse_events(root, webhook_generic_event, b, err);
    case WEBHOOK_HARBOR:
        return webhook_parse_harbor(root, b, err);
    default:
        return ferry_error_set(err, FERRY_EPARSE, WEBHOOK_UNKNOWN_MESSAGE);
    }
}

int webhook_parse(const char *source, const char *content_type, const char *body, size_t len,
                  struct webhook_result *out, char **err)
{
    struct webhook_builder b;
    cJSON *root = NULL;
    int rc;

    if (err != NULL)
        *err = NULL;
    webhook_builder_init(&b, source);
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (out == NULL || source == NULL || (body == NULL && len > 0))
        return ferry_error_set(err, FERRY_EINVAL, "invalid argument to webhook_parse");
    rc = webhook_json(body, len, &root, err);
    if (rc == 0)
        rc = webhook_parse_document(root, content_type, &b, err);
    if (rc < 0)
        goto out;

    if (b.n == 0) {
        free(b.events);
        b.events = NULL;
    }
    out->events = b.events;
    out->n = b.n;
    out->ignored = b.ignored;
    b.events = NULL;
    b.n = 0;

out:
    webhook_builder_release(&b);
    cJSON_Delete(root);
    return rc;
}

void webhook_result_release(struct webhook_result *r)
{
    if (r == NULL)
        return;
    webhook_events_free(r->events, r->n);
    memset(r, 0, sizeof(*r));
}
