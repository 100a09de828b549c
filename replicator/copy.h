/*
 * copy: one whole image from a source registry to a destination, as
 * `ferry copy` does it. The image's closure (an index, its children, their
 * configs and layers, and its referrers) is resolved by digest from the
 * source; blobs move in parallel, each streamed from its download to its
 * upload through a bounded ring, so memory stays flat whatever the size; manifests go up
 * after their blobs, children before their index, referrers after their
 * subject, and the tag last. Nothing already at the destination is sent again.
 */
#ifndef FERRY_COPY_H
#define FERRY_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "registry.h"

struct copy_options {
    const char *src;      /* HOST[:PORT]/REPO(:TAG|@DIGEST) */
    const char *dst;      /* HOST[:PORT]/REPO[:TAG] */
    int jobs;             /* blobs in flight at once (0: 8) */
    const char *platform; /* os/arch[/variant] to pick from an index, or NULL for all */
    bool no_referrers;
    const char *mount_from; /* a destination repository to try mounting blobs from */
    struct registry_options src_registry;
    struct registry_options dst_registry;
    struct http_client_options http;
    struct registry_upload_options upload;
    const char *cache_dir; /* presence cache directory (NULL: default; "" disables) */
    bool progress;         /* draw progress bars on stderr */
};

struct copy_summary {
    char digest[80]; /* the manifest the destination tag now names */
    uint64_t blobs_copied;
    uint64_t bytes_copied;
    uint64_t blobs_mounted;
    uint64_t blobs_skipped;
    uint64_t manifests_pushed;
    uint64_t manifests_skipped;
    uint64_t referrers;
    uint64_t requests;
    uint64_t requests_by_method[6]; /* GET HEAD PUT POST PATCH DELETE */
    uint64_t retries;
    double seconds;
};

/**
 * Copy the image on a loop of its own and return when it is done: 0 when the
 * destination holds the whole image under its tag, or a negative code with
 * *error set to one line (caller frees) naming what failed. The tag is never
 * pushed when any part failed. *summary is filled in either case.
 */
int copy_run(const struct copy_options *opts, struct copy_summary *summary, char **error);

#endif
