/* Brendan Gregg's collapsed stacks from a period: one line per distinct
 * (thread, stack), frames root first joined by ';', the thread name as the
 * root frame, each frame "qualname (file:line)", a space and the sample count
 * (sampling intervals: ps_period_count_sample). By function (the line is the
 * function's first: stacks that differ only in their lines are one), or by
 * line (the line each frame was on).
 * Pure C. */
#ifndef PS_COLLAPSED_H
#define PS_COLLAPSED_H

#include <stddef.h>

#include "ps_period.h"

/* Render the lines for thread index `thread`, or for every thread when
 * `thread` < 0, into a malloc'ed NUL-terminated buffer stored in *out (its
 * length in *out_len); by line with `by_line`, else by function. Lines are
 * sorted by thread index, then stack id. The
 * number ending a line is the number of sampling intervals its samples stand
 * for, or with `weighted` the sum of their weights in microseconds; a line
 * whose number would be 0 is left out. Returns 0 or PS_ENOMEM. The caller frees
 * *out. */
int ps_collapsed_render(const ps_period *p, int thread, int weighted,
                        int by_line, char **out, size_t *out_len);

#endif /* PS_COLLAPSED_H */
