/*
 * cmd_copy: `ferry copy SRC DST`, one image from one registry to another on a
 * loop of its own, like `skopeo copy`. cmd_copy.c reads the command line and
 * reports; copy_run.c runs the copy.
 */
#ifndef FERRY_CMD_COPY_H
#define FERRY_CMD_COPY_H

#include "common/errors.h"

#include <stdbool.h>

#include "registry/http.h"
#include "registry/registry.h"
#include "replication/copy.h"

struct copy_options {
    const char *src;      /* HOST[:PORT]/REPO(:TAG|@DIGEST) */
    const char *dst;      /* HOST[:PORT]/REPO[:TAG] */
    int jobs;             /* blobs in flight at once (0: 8) */
    const char *platform; /* os/arch[/variant] to pick from an index, or NULL for all */
    bool no_referrers;
    bool foreign_layers;    /* copy non-distributable layers too (default: skip them) */
    const char *mount_from; /* a destination repository to try mounting blobs from */
    struct registry_options src_registry;
    struct registry_options dst_registry;
    struct http_client_options http;
    struct registry_upload_options upload;
    const char *cache_dir; /* presence cache directory (NULL: default; "" disables) */
    bool progress;         /* draw progress bars on stderr */
};

/**
 * Copy the image on a loop of its own and return when it is done: 0 when the
 * destination holds the whole image under its tag, or a negative code with
 * *error set to one line (caller frees) naming what failed. The tag is never
 * pushed when any part failed. *summary is filled in either case.
 */
FERRY_MUST_CHECK int copy_run(const struct copy_options *opts, struct copy_summary *summary,
                              char **error);

#endif
