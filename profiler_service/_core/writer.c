/* Placeholder until the streamed writer lands (issue 3): refuses to write. */
#include "ps_writer.h"

#include <string.h>

#include "ps_error.h"

int
ps_writer_write(const ps_period *period, const char *path,
                const ps_write_options *options, ps_write_error *err)
{
    (void)period;
    (void)path;
    (void)options;
    memset(err, 0, sizeof(*err));
    err->code = PS_ESTATE;
    strcpy(err->what, "not implemented");
    return PS_ESTATE;
}
