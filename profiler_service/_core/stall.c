/* A period's bounded list of reactor stalls (see ps_stall.h). Pure C: the
 * detector (stalldetect.c) fills it with the GIL held, the writer reads a
 * finished period's list with the GIL released. */
#include "ps_stall.h"

#include <stdlib.h>
#include <string.h>

#include "ps_error.h"

void
ps_stall_list_init(ps_stall_list *l)
{
    memset(l, 0, sizeof(*l));
}

void
ps_stall_clear(ps_stall *s)
{
    free(s->samples);
    memset(s, 0, sizeof(*s));
}

void
ps_stall_list_free(ps_stall_list *l)
{
    for (size_t i = 0; i < l->len; i++) {
        ps_stall_clear(&l->items[i]);
    }
    l->len = 0;
}

int
ps_stall_add_sample(ps_stall *s, const ps_stall_sample *sample)
{
    if (s->n_samples >= PS_STALL_MAX_SAMPLES) {
        s->samples_dropped++;
        return PS_EFULL;
    }
    if (s->n_samples == s->cap_samples) {
        uint32_t cap = s->cap_samples ? s->cap_samples * 2 : 32;
        if (cap > PS_STALL_MAX_SAMPLES) {
            cap = PS_STALL_MAX_SAMPLES;
        }
        ps_stall_sample *grown = realloc(s->samples, cap * sizeof(*grown));
        if (grown == NULL) {
            s->samples_dropped++;
            return PS_ENOMEM;
        }
        s->samples = grown;
        s->cap_samples = cap;
    }
    s->samples[s->n_samples++] = *sample;
    return PS_OK;
}

void
ps_stall_list_take(ps_stall_list *l, ps_stall *s)
{
    if (l->len < PS_MAX_STALLS) {
        l->items[l->len++] = *s;
        memset(s, 0, sizeof(*s));
        return;
    }
    size_t shortest = 0;
    for (size_t i = 1; i < l->len; i++) {
        if (l->items[i].duration_ns < l->items[shortest].duration_ns) {
            shortest = i;
        }
    }
    l->dropped++;
    if (s->duration_ns > l->items[shortest].duration_ns) {
        ps_stall_clear(&l->items[shortest]);
        l->items[shortest] = *s;
        memset(s, 0, sizeof(*s));
    }
    else {
        ps_stall_clear(s);
    }
}

size_t
ps_stall_list_heap_bytes(const ps_stall_list *l)
{
    size_t bytes = 0;
    for (size_t i = 0; i < l->len; i++) {
        bytes += l->items[i].cap_samples * sizeof(ps_stall_sample);
    }
    return bytes;
}
