/*
 * tls_alert: the fatal TLS alert a server sent on a request's connection,
 * so that a handshake the server refused is reported as a TLS failure that
 * says why ("certificate required", "bad certificate") rather than as an
 * unreachable registry. With TLS 1.3 a server that wants a client
 * certificate refuses it only after the handshake, on the first read, and
 * libcurl then reports a receive error whose text may be unrelated.
 *
 * libcurl gives each new connection its own SSL_CTX and calls back with it
 * (CURLOPT_SSL_CTX_FUNCTION): the note is shared by that SSL_CTX and the
 * request that opened the connection, and freed by whichever lets go last.
 * A request that reuses a connection has no note (its handshake is done).
 */
#ifndef FERRY_TLS_ALERT_H
#define FERRY_TLS_ALERT_H

#include <curl/curl.h>

struct tls_alert;

/** Watch the connections `easy` opens; the note lands in *slot. */
CURLcode tls_alert_watch(CURL *easy, struct tls_alert **slot);

/** The fatal alert's description, or NULL when none was received. */
const char *tls_alert_text(const struct tls_alert *a);

/** Let go of *slot (NULL is fine) and clear it. */
void tls_alert_release(struct tls_alert **slot);

#endif
