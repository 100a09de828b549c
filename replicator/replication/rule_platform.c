#include "replication/rule_platform.h"

#include <stddef.h>

const char *rule_platform_pick(const struct config_rule *rule)
{
    return rule->n_platforms == 1 ? rule->platforms[0] : NULL;
}
