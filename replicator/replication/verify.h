/*
 * verify: `ferry verify`, a read-only audit of what the config's rules
 * promise. For every rule, every repository of its source it selects (the
 * registry's `repositories` when the config lists them, else `_catalog`) and
 * every tag of those it selects (never the `sha256-<hex>` referrers fallback
 * tags), it resolves the tag's digest at the source and asks each of the
 * rule's destinations whether it holds the same image, whole:
 *
 *   missing     the destination has no such tag;
 *   differs     the tag there points at another digest;
 *   incomplete  the tag is right, but a child manifest of the index, or a
 *               config or layer blob of an image manifest, is not there;
 *   referrers   a referrer of the source digest (signature, SBOM) is not
 *               listed there (referrers API, or the `sha256-<hex>` fallback
 *               tag); only for rules with `referrers: true`.
 *
 * Each tag is judged by what the engine writes under its rule. With one
 * platform (rule_platform.h), an index at the source stands for that
 * platform's manifest, which the destination tag must name (the index is
 * not looked for); the source's referrers are those of that manifest. With
 * `overwrite: false`, a destination tag that names another digest was left
 * alone by the engine: it is reported as kept, not as drift, and what it
 * names is not checked; a missing tag is still drift.
 *
 * Every registry named by a rule is pinged first, so one that is down is
 * reported before any listing. Nothing is written anywhere (not even
 * data_dir): only GET and HEAD requests, at most the registry's
 * max_concurrency of them in flight per registry (Ferry's default when not
 * set), through the same clients as the engine's (clients.h): the
 * registries' credentials, TLS, stall timeouts and rate limits.
 */
#ifndef FERRY_VERIFY_H
#define FERRY_VERIFY_H

#include "common/errors.h"

#include <stdbool.h>

/* Source tags being verified at once (bounds the manifests held in memory). */
#define VERIFY_TAGS_IN_FLIGHT 16
/* Tags listed and waiting for a place at most: past this no repository is
 * listed, so memory follows this, not the number of tags in the catalog. */
#define VERIFY_TAGS_WAITING 1024
/* Tag listings under way at once. */
#define VERIFY_LISTINGS_IN_FLIGHT 4

/**
 * Verify every rule of the config at `config_path` on a loop of its own.
 *
 * Output: one line on stdout per drift, `drift DEST REPO:TAG KIND DETAIL`
 * (DEST the destination registry's name, REPO its repository, KIND one of
 * missing, differs, incomplete, referrers), and one per kept tag, `kept
 * DEST REPO:TAG source DIGEST destination DIGEST (overwrite: false)`, sorted
 * by DEST, REPO, TAG and KIND (kept last); then `verified N tags across M
 * destinations: K drift[, J kept (overwrite: false)]` on stderr (N source
 * tags checked, M destination registries, K drift lines, J kept lines, left
 * out when none), left out when a registry failed. DETAIL is "source DIGEST"
 * (missing), "source DIGEST destination DIGEST" (differs), "N missing:
 * layer|config DIGEST of MANIFEST" or "manifest DIGEST (PLATFORM)" with ",
 * and N more" (incomplete), "N of M referrers not listed: DIGEST[, and N
 * more]" (referrers); "source DIGEST" reads "source DIGEST (PLATFORM of
 * INDEX)" when the rule's platform was picked out of the source's index.
 * With `json`, one JSON object per line on stdout instead:
 * {"type":"drift"|"kept", "destination", "repository", "tag", "kind"
 * ("kept" for a kept tag), "detail", "rule", "source", "source_repository",
 * "digest" (what the destination tag must name), "platform" and
 * "source_index" (when a platform was picked out of an index), "reason"
 * ("overwrite: false", kept), and "destination_digest" (differs, kept) or
 * "missing" (incomplete, referrers: the digests)} per line, then
 * {"type":"summary", "ok", "tags", "destinations", "drift", "kept",
 * "seconds"[, "error"]}.
 *
 * Returns 0 when every destination holds everything (kept tags are not
 * drift), 1 when some drift was found, or a negative code after printing
 * one line on stderr
 * ("ferry verify: ..."):
 *  - FERRY_EINVAL when the config cannot be loaded (whatever the reason; the
 *    line says which) — a usage error for the command line;
 *  - when a registry cannot be read (unreachable, TLS, auth, a failing
 *    listing), that failure's code, never FERRY_EINVAL; the line names the
 *    registry as the config does. Drift found before the failure is printed.
 */
FERRY_MUST_CHECK int verify_run(const char *config_path, bool json);

#endif
