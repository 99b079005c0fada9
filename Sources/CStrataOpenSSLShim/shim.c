// All wrappers are static inline in the header; this file only gives SwiftPM a compilation unit.
#include "CStrataOpenSSLShim.h"
