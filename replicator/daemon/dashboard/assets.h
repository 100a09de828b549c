/*
 * dashboard/assets: the dashboard's static files, compiled into the binary.
 *
 * The table is generated at build time by cmake/embed.cmake from
 * replicator/daemon/dashboard/ (index.html, app.js, style.css) and uPlot's files in
 * replicator/daemon/dashboard/node_modules (installed by ./build.sh with npm ci), so
 * the page works offline and needs nothing but the ferry binary.
 */
#ifndef FERRY_DASHBOARD_ASSETS_H
#define FERRY_DASHBOARD_ASSETS_H

#include <stddef.h>

struct dashboard_asset {
    const char *path;         /* URL path: "/", "/app.js", "/style.css", ... */
    const char *content_type; /* e.g. "text/javascript; charset=utf-8" */
    const unsigned char *data;
    size_t len;
};

/**
 * Every asset, ending with an entry whose path is NULL. The data is static
 * and read-only; serve it as is (it is not NUL-terminated).
 */
extern const struct dashboard_asset dashboard_assets[];

#endif
