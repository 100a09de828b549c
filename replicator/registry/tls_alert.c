/*
 * tls_alert: see tls_alert.h. Everything here runs on the thread that
 * drives the request's curl multi handle, so the reference count is plain.
 */
#include "registry/tls_alert.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/xalloc.h"

struct tls_alert {
    int refs;
    char text[96];
};

static int tls_alert_index = -1;

static void tls_alert_unref(struct tls_alert *a)
{
    if (a != NULL && --a->refs == 0)
        free(a);
}

/* The SSL_CTX is freed (its connection closed): its reference goes. */
static void tls_alert_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                               void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    tls_alert_unref(ptr);
}

static void tls_alert_info(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_READ_ALERT) || (ret >> 8) != SSL3_AL_FATAL)
        return;
    struct tls_alert *a = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_alert_index);
    if (a != NULL && a->text[0] == '\0')
        snprintf(a->text, sizeof(a->text), "the server ended the session: %s",
                 SSL_alert_desc_string_long(ret));
}

/* Called by OpenSSL only when the server asks for a client certificate
 * and none is set: there is none to give, and a server that requires one
 * will end the session (with TLS 1.3, after the handshake, and its alert
 * can be lost to the reset of its closing socket). */
static int tls_alert_no_cert(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    (void)x509, (void)pkey;
    struct tls_alert *a = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_alert_index);
    if (a != NULL && a->text[0] == '\0')
        snprintf(a->text, sizeof(a->text),
                 "the server asked for a client certificate, and none is configured");
    return 0;
}

static CURLcode tls_alert_ctx(CURL *easy, void *ssl_ctx, void *arg)
{
    (void)easy;
    struct tls_alert **slot = arg;
    struct tls_alert *a = xcalloc(1, sizeof(*a));
    a->refs = 1;
    if (SSL_CTX_set_ex_data(ssl_ctx, tls_alert_index, a) != 1) {
        free(a);
        return CURLE_OK; /* no note: the error stays what libcurl says */
    }
    SSL_CTX_set_info_callback(ssl_ctx, tls_alert_info);
    SSL_CTX_set_client_cert_cb(ssl_ctx, tls_alert_no_cert);
    tls_alert_release(slot);
    a->refs++;
    *slot = a;
    return CURLE_OK;
}

CURLcode tls_alert_watch(CURL *easy, struct tls_alert **slot)
{
    if (tls_alert_index < 0)
        tls_alert_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_alert_ctx_free);
    if (tls_alert_index < 0)
        return CURLE_OUT_OF_MEMORY;
    CURLcode code = curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, tls_alert_ctx);
    if (code == CURLE_OK)
        code = curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, slot);
    return code;
}

const char *tls_alert_text(const struct tls_alert *a)
{
    return a != NULL && a->text[0] != '\0' ? a->text : NULL;
}

void tls_alert_release(struct tls_alert **slot)
{
    tls_alert_unref(*slot);
    *slot = NULL;
}
