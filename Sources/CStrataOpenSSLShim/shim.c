#include "CStrataOpenSSLShim.h"
