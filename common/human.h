/*
 * human: numbers as people read them on a terminal.
 */
#ifndef FERRY_HUMAN_H
#define FERRY_HUMAN_H

#include <stddef.h>

/** `bytes` in binary units into out[len]: "512 B", "1.5 KiB", ... up to TiB. */
void human_bytes(char *out, size_t len, double bytes);

#endif
