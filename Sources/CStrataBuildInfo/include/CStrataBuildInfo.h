#ifndef CSTRATA_BUILD_INFO_H
#define CSTRATA_BUILD_INFO_H

/// The git commit the binary was built from: set by Deploy/install.sh with
/// -Xcc -DSTRATA_GIT_COMMIT=\"<sha>\"; "unknown" for a plain `swift build`.
const char *strata_build_commit(void);

#endif
