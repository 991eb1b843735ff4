/*
 * layout.c - the names of the public fia_layout values (fia/core.h) and their parser, shared by
 * every operator's messages and by the clients.
 */
#include <string.h>

#include "core/status.h"
#include "fia.h"

static const char *const fia_layout_names[] = {"BSH", "BSND", "BNSD", "TND", "BNSD_BSND",
                                               "NTD", "TND_NTD", "PA_BSND", "PA_NZ", "NTD_TND"};

fia_status fia_layout_parse(const char *name, fia_layout *layout) {
    fia_error_clear();
    if (!name || !layout) return FIA_INVALID("fia_layout_parse: NULL argument");
    for (size_t i = 0; i < sizeof fia_layout_names / sizeof *fia_layout_names; i++)
        if (!strcmp(name, fia_layout_names[i])) {
            *layout = (fia_layout)i;
            return FIA_STATUS_SUCCESS;
        }
    return FIA_INVALID("input_layout '%s' is unknown (BSH, BSND, BNSD, TND, BNSD_BSND, NTD, "
                       "TND_NTD, NTD_TND, PA_BSND, PA_NZ)", name);
}

const char *fia_layout_name(fia_layout layout) {
    if ((unsigned)layout < sizeof fia_layout_names / sizeof *fia_layout_names)
        return fia_layout_names[layout];
    return "unknown";
}
