/*
 * params.h - versioned parameter structs.
 *
 * Every public params struct leads with `uint32_t struct_size`, which its _params_init sets to
 * the struct's size. A plan function never reads the caller's struct directly: it imports it
 * over a local copy that _params_init filled with the defaults, so that a caller compiled
 * against an older header (a shorter struct, a smaller struct_size) gets the defaults for the
 * fields it does not know, and a struct that was never initialised is refused with a message
 * instead of being read as garbage.
 */
#ifndef FIA_CORE_PARAMS_H
#define FIA_CORE_PARAMS_H

#include <stddef.h>

#include "fia.h"

/* Copies the first user->struct_size bytes of *user over *local (local_size bytes, already
 * holding the defaults). min_size is the size of the first published version of the struct.
 * Returns FIA_STATUS_INVALID_ARGUMENT when struct_size is below min_size or above local_size
 * (a struct from a newer header, or one not set by init_name, which the message names). */
fia_status fia_params_import(void *local, size_t local_size, const void *user, size_t min_size,
                             const char *init_name);

#endif /* FIA_CORE_PARAMS_H */
