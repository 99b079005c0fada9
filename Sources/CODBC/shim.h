#ifndef STRATA_CODBC_SHIM_H
#define STRATA_CODBC_SHIM_H
/* The system unixODBC driver manager (Debian: unixodbc-dev). */
#include <sql.h>
#include <sqlext.h>
#endif
