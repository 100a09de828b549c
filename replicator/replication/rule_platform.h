/*
 * rule_platform: what a rule's `platforms` makes Ferry put at a destination,
 * decided in one place for the engine (what its jobs copy) and for `ferry
 * verify` (what a destination must hold). One platform: an index at the
 * source gives way to that platform's own manifest, which is what goes up
 * and what the tag names (resolve_spec.platform; resolve.c picks it, for the
 * copy and verify alike). No platform, or several: the whole index, since
 * Ferry never rewrites an index. A source tag that names an image manifest
 * is copied as it is either way.
 */
#ifndef FERRY_RULE_PLATFORM_H
#define FERRY_RULE_PLATFORM_H

#include "config/config.h"

/**
 * The platform ("os/arch[/variant]") `rule` copies out of an index, to pass
 * as resolve_spec.platform; NULL when it copies whole indexes. The string is
 * the rule's: it lives as long as the config.
 */
const char *rule_platform_pick(const struct config_rule *rule);

#endif
