/*
 * sync: `ferry sync`, one reconcile of every rule: poll every source once
 * (backfill), replicate everything the journal holds that is not done yet,
 * and report. Returns when nothing is left to do.
 */
#ifndef FERRY_SYNC_H
#define FERRY_SYNC_H

#include <stdbool.h>

/**
 * Run one sync with the config at `config_path`. Returns 0 when every job
 * ended COMPLETE (or SUPERSEDED), 1 when some FAILED (each listed on stderr
 * with its reason), or a negative code after printing one line on stderr.
 * With `json`, prints a summary object on stdout.
 */
int sync_run(const char *config_path, bool json);

#endif
