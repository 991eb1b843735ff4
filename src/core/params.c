/* params.c - import of versioned parameter structs (see params.h). */
#include <stdint.h>
#include <string.h>

#include "core/params.h"
#include "core/status.h"

fia_status fia_params_import(void *local, size_t local_size, const void *user, size_t min_size,
                             const char *init_name) {
    uint32_t size;
    memcpy(&size, user, sizeof size);
    if (size < min_size || size > local_size)
        return FIA_INVALID("params struct_size is %u, this library takes %zu..%zu: set the "
                           "struct with %s() first", (unsigned)size, min_size, local_size,
                           init_name);
    memcpy(local, user, size);
    return FIA_STATUS_SUCCESS;
}
