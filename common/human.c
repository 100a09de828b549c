#include "common/human.h"

#include <stdio.h>

void human_bytes(char *out, size_t len, double bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, len, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
}
