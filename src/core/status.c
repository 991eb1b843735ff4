/* status.c - status names, the thread-local error message, version. */
#include <stdarg.h>
#include <stdio.h>

#include "core/status.h"

static _Thread_local char fia_last_error_buf[512];

fia_status fia_error(fia_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fia_last_error_buf, sizeof fia_last_error_buf, fmt, ap);
    va_end(ap);
    return status;
}

void fia_error_clear(void) { fia_last_error_buf[0] = '\0'; }

const char *fia_last_error(void) { return fia_last_error_buf; }

const char *fia_status_string(fia_status status) {
    switch (status) {
    case FIA_STATUS_SUCCESS: return "FIA_STATUS_SUCCESS";
    case FIA_STATUS_INVALID_ARGUMENT: return "FIA_STATUS_INVALID_ARGUMENT";
    case FIA_STATUS_UNSUPPORTED: return "FIA_STATUS_UNSUPPORTED";
    case FIA_STATUS_OUT_OF_MEMORY: return "FIA_STATUS_OUT_OF_MEMORY";
    case FIA_STATUS_WORKSPACE_TOO_SMALL: return "FIA_STATUS_WORKSPACE_TOO_SMALL";
    case FIA_STATUS_UNSUPPORTED_ISA: return "FIA_STATUS_UNSUPPORTED_ISA";
    case FIA_STATUS_INTERNAL: return "FIA_STATUS_INTERNAL";
    }
    return "FIA_STATUS_UNKNOWN";
}

#define FIA_STR2(x) #x
#define FIA_STR(x) FIA_STR2(x)

unsigned fia_version_number(void) { return FIA_VERSION_NUMBER; }

const char *fia_version_string(void) {
    return FIA_STR(FIA_VERSION_MAJOR) "." FIA_STR(FIA_VERSION_MINOR) "." FIA_STR(FIA_VERSION_PATCH);
}
