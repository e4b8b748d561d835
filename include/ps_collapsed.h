/* Brendan Gregg's collapsed stacks from a period: one line per distinct
 * (thread, stack), frames root first joined by ';', the thread name as the
 * root frame, each frame "qualname (file:line)", a space and the sample count.
 * Pure C. */
#ifndef PS_COLLAPSED_H
#define PS_COLLAPSED_H

#include <stddef.h>

#include "ps_period.h"

/* Render the lines for thread index `thread`, or for every thread when
 * `thread` < 0, into a malloc'ed NUL-terminated buffer stored in *out (its
 * length in *out_len). Lines are sorted by thread index, then stack id. The
 * number ending a line is the sample count, or with `weighted` the sum of the
 * samples' weights in microseconds. Returns 0 or PS_ENOMEM. The caller frees
 * *out. */
int ps_collapsed_render(const ps_period *p, int thread, int weighted,
                        char **out, size_t *out_len);

#endif /* PS_COLLAPSED_H */
