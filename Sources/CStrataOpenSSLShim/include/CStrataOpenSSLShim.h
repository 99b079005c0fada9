#ifndef C_STRATA_OPENSSL_SHIM_H
#define C_STRATA_OPENSSL_SHIM_H
// Wrappers for OpenSSL 3 function-like macros and flag constants that Swift cannot import.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/bn.h>

// ---- SSL_CTX ----------------------------------------------------------------
static inline int strata_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
static inline int strata_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}
static inline long strata_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline long strata_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}
static inline int strata_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return (int)SSL_CTX_set1_groups_list(ctx, list);
}
static inline long strata_SSL_SESS_CACHE_OFF(void) { return SSL_SESS_CACHE_OFF; }

// SSL_OP_* flags are built with SSL_OP_BIT(n) and do not import.
static inline uint64_t strata_SSL_OP_NO_TICKET(void) { return SSL_OP_NO_TICKET; }
static inline uint64_t strata_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
static inline uint64_t strata_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t strata_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }

// ---- SSL ----------------------------------------------------------------------
static inline int strata_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
static inline const char *strata_SSL_get_cipher(const SSL *ssl) { return SSL_get_cipher(ssl); }
static inline X509 *strata_SSL_get_peer_certificate(const SSL *ssl) { return SSL_get1_peer_certificate(ssl); }

// ---- BIO ----------------------------------------------------------------------
static inline size_t strata_BIO_pending(BIO *bio) { return (size_t)BIO_pending(bio); }
static inline size_t strata_BIO_wpending(BIO *bio) { return (size_t)BIO_wpending(bio); }
static inline int strata_BIO_set_mem_eof_return(BIO *bio, int v) { return (int)BIO_set_mem_eof_return(bio, v); }
static inline void strata_BIO_clear_retry_flags(BIO *bio) { BIO_clear_retry_flags(bio); }
static inline void strata_BIO_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }

// ---- memory, stacks, names -----------------------------------------------------
static inline void strata_OPENSSL_free(void *p) { OPENSSL_free(p); }
static inline int strata_sk_X509_num(const STACK_OF(X509) *sk) { return sk_X509_num(sk); }
static inline unsigned long strata_XN_FLAG_RFC2253(void) { return XN_FLAG_RFC2253; }
static inline unsigned long strata_XN_FLAG_ONELINE(void) { return XN_FLAG_ONELINE; }

// ---- verification callback helpers --------------------------------------------
/// The leaf certificate being checked by a verify callback (depth 0), or NULL.
static inline X509 *strata_X509_STORE_CTX_leaf(X509_STORE_CTX *ctx) {
    if (X509_STORE_CTX_get_error_depth(ctx) != 0) return NULL;
    return X509_STORE_CTX_get_current_cert(ctx);
}

// ---- ex_data, verify stores, names ------------------------------------------------
/// A new index for SSL_get_ex_data/SSL_set_ex_data (no callbacks: the data is not owned by the SSL).
static inline int strata_SSL_get_ex_new_index(void) {
    return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}
/// The SSL a verify callback runs for (OpenSSL stores it in the X509_STORE_CTX), or NULL.
static inline SSL *strata_X509_STORE_CTX_get_ssl(X509_STORE_CTX *ctx) {
    return (SSL *)X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
}
/// Verifies this connection's peer against `store` (with its CRLs) instead of the SSL_CTX's store; takes a reference.
static inline int strata_SSL_set1_verify_cert_store(SSL *ssl, X509_STORE *store) {
    return (int)SSL_set1_verify_cert_store(ssl, store);
}
static inline unsigned long strata_X509_V_FLAG_CRL_CHECK(void) { return X509_V_FLAG_CRL_CHECK; }

#endif
