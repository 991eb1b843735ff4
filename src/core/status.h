/*
 * status.h - error reporting: a thread-local message plus the returned fia_status.
 *
 * Every failing path calls fia_error(status, fmt, ...) exactly once; it formats the message
 * (which names the tensor, the dimension and both values) and returns the status, so that
 * validation reads: if (bad) return fia_error(FIA_STATUS_INVALID_ARGUMENT, "...", ...);
 */
#ifndef FIA_CORE_STATUS_H
#define FIA_CORE_STATUS_H

#include "fia.h"

#if defined(__GNUC__)
#define FIA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FIA_PRINTF(a, b)
#endif

/* Sets the calling thread's last-error message and returns status. */
fia_status fia_error(fia_status status, const char *fmt, ...) FIA_PRINTF(2, 3);

/* Clears the calling thread's message (start of each public call). */
void fia_error_clear(void);

/* Returns the status of expr from the enclosing function when it is not SUCCESS. */
#define FIA_TRY(expr)                                                                             \
    do {                                                                                          \
        fia_status fia_try_status_ = (expr);                                                      \
        if (fia_try_status_ != FIA_STATUS_SUCCESS) return fia_try_status_;                        \
    } while (0)

#define FIA_INVALID(...) fia_error(FIA_STATUS_INVALID_ARGUMENT, __VA_ARGS__)
#define FIA_UNSUPPORTED(...) fia_error(FIA_STATUS_UNSUPPORTED, __VA_ARGS__)

#endif /* FIA_CORE_STATUS_H */
