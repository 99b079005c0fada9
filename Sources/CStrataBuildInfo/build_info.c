#include "CStrataBuildInfo.h"

// A C string macro is the one value SwiftPM can pass into a build from its command line (-Xcc -D…).
#ifndef STRATA_GIT_COMMIT
#define STRATA_GIT_COMMIT "unknown"
#endif

const char *strata_build_commit(void) { return STRATA_GIT_COMMIT; }
