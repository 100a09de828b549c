/*
 * Fuzz target for webhook_parse() (journal/webhook.h): Distribution v1 and
 * v2 notifications, Harbor webhooks and Ferry's generic form.
 *
 * Input: a payload as a registry POSTs it, optionally preceded by one line
 * "Content-Type: VALUE\n" (without it the parser sees NULL and goes by the
 * payload's shape). Every event the parser returns must pass
 * journal_event_validate(): one it accepts that the journal then refuses
 * would make ingest answer 500 and the registry redeliver it forever.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "journal/journal.h"
#include "journal/webhook.h"
#include "common/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body;
    size_t len;
    char *content_type = fuzz_content_type(data, size, &body, &len);

    struct webhook_result r;
    char *err = NULL;
    memset(&r, 0xa5, sizeof(r));
    int rc = webhook_parse("fuzz", content_type, body, len, &r, &err);
    if (rc == 0) {
        if (err != NULL || r.n > WEBHOOK_MAX_EVENTS || (r.n > 0 && r.events == NULL))
            abort();
        for (size_t i = 0; i < r.n; i++) {
            char *why = NULL;
            if (journal_event_validate(&r.events[i], &why) != 0)
                abort();
            free(why);
        }
        webhook_result_release(&r);
    } else {
        fuzz_check_message(err);
        if (r.events != NULL || r.n != 0)
            abort();
    }
    free(err);
    free(content_type);
    return 0;
}
