#ifndef C_STRATA_OPENSSL_SHIM_H
#define C_STRATA_OPENSSL_SHIM_H
#include <openssl/ssl.h>
#endif
