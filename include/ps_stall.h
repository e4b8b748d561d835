/* Reactor stalls as plain C data: one record per interval in which the
 * reactor thread stayed out of its poll for longer than the threshold, with
 * the wall-clock samples taken of it (and of the thread that was busy on the
 * CPU meanwhile) while the stall lasted. A period keeps a bounded list: the
 * longest stalls, the others counted. Stacks are node ids of the period's
 * stack tree, threads indexes of its thread table. */
#ifndef PS_STALL_H
#define PS_STALL_H

#include <stddef.h>
#include <stdint.h>

#define PS_STALL_NONE UINT32_MAX      /* no stack: walk failed or no thread */
#define PS_STALL_NO_THREAD UINT16_MAX
#define PS_MAX_STALLS 64              /* stalls kept per period */
#define PS_STALL_MAX_SAMPLES 1000     /* samples kept per stall (10 s at 100 Hz) */

/* One wall-clock sample taken during a stall. */
typedef struct {
    uint32_t t_ms;         /* ms since the stall's start */
    uint32_t main_node;    /* the reactor thread's leaf stack, or PS_STALL_NONE */
    uint32_t busy_node;    /* the busy thread's leaf stack, or PS_STALL_NONE */
    uint16_t main_thread;  /* thread indexes, or PS_STALL_NO_THREAD */
    uint16_t busy_thread;  /* another thread on the CPU for most of the
                              interval since the previous sample (with pure
                              Python code that means: it held the GIL) */
} ps_stall_sample;

typedef struct {
    int64_t start_mono_ns;    /* the reactor's poll returned */
    int64_t duration_ns;      /* until it entered its poll again */
    int64_t main_cpu_ns;      /* reactor thread CPU between the first and the
                                 last sample (0 with fewer than two) */
    int64_t sampled_ns;       /* wall time between them */
    ps_stall_sample *samples; /* Owned; n_samples of them */
    uint32_t n_samples;
    uint32_t cap_samples;
    uint32_t samples_dropped; /* past PS_STALL_MAX_SAMPLES or out of memory */
} ps_stall;

typedef struct {
    ps_stall items[PS_MAX_STALLS];
    size_t len;
    uint64_t dropped;      /* stalls not kept: the list held longer ones */
    int64_t threshold_ns;  /* what counted as a stall (0: none recorded) */
} ps_stall_list;

/* Empty the list (no allocation). */
void ps_stall_list_init(ps_stall_list *l);

/* Free every record's samples; the list is empty afterwards. */
void ps_stall_list_free(ps_stall_list *l);

/* Append one sample to a stall being recorded. Returns 0, PS_EFULL past
 * PS_STALL_MAX_SAMPLES or PS_ENOMEM (both counted in samples_dropped). */
int ps_stall_add_sample(ps_stall *s, const ps_stall_sample *sample);

/* Free a stall record's samples (the record itself is the caller's). */
void ps_stall_clear(ps_stall *s);

/* Move `s` into the list (it owns its samples from then on; `s` is left
 * empty). A full list keeps the longest stalls: `s` replaces the shortest
 * kept one if it is longer, else it is dropped; either way one stall is
 * counted in `dropped`. */
void ps_stall_list_take(ps_stall_list *l, ps_stall *s);

/* Bytes of heap the list's samples hold. */
size_t ps_stall_list_heap_bytes(const ps_stall_list *l);

#endif /* PS_STALL_H */
