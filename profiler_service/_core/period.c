/* A period's plain-C data: see ps_period.h. */
#define _GNU_SOURCE
#include "ps_period.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ps_error.h"

static int64_t
clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

ps_period *
ps_period_new(int mode, uint64_t frequency_mhz, uint32_t max_depth,
              uint32_t max_nodes)
{
    ps_period *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    if (ps_stacks_init(&p->stacks, max_nodes) < 0) {
        free(p);
        return NULL;
    }
    ps_vec_init(&p->threads, sizeof(ps_thread), 4096);
    ps_vec_init(&p->samples, sizeof(ps_sample), 65536);
    ps_vec_init(&p->load, sizeof(ps_load), 16384);
    p->mode = mode;
    p->frequency_mhz = frequency_mhz;
    p->max_depth = max_depth;
    p->pid = (int64_t)getpid();
    p->start_unix_ms = clock_ns(CLOCK_REALTIME) / 1000000;
    p->start_mono_ns = clock_ns(CLOCK_MONOTONIC);
    return p;
}

void
ps_period_free(ps_period *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->threads.len; i++) {
        free(((ps_thread *)ps_vec_at(&p->threads, i))->name);
    }
    ps_vec_free(&p->threads);
    ps_vec_free(&p->samples);
    ps_vec_free(&p->load);
    ps_stall_list_free(&p->stalls);
    ps_stacks_free(&p->stacks);
    free(p);
}

void
ps_period_finish(ps_period *p)
{
    if (p->end_unix_ms != 0) {
        return;
    }
    p->end_mono_ns = clock_ns(CLOCK_MONOTONIC);
    p->end_unix_ms = p->start_unix_ms +
                     (p->end_mono_ns - p->start_mono_ns) / 1000000;
}

void
ps_period_hand_over(ps_period *done, ps_period *next)
{
    int64_t now_mono = clock_ns(CLOCK_MONOTONIC);
    int64_t now_unix_ms = clock_ns(CLOCK_REALTIME) / 1000000;
    int64_t elapsed_ms = (now_mono - done->start_mono_ns) / 1000000;

    if (elapsed_ms < 0) {
        elapsed_ms = 0;
    }
    /* The boundary: the last whole millisecond of done's clock (up to 1 ms
     * ago), so its end in wall ms is exact and next's start is the same. */
    done->end_mono_ns = done->start_mono_ns + elapsed_ms * 1000000;
    done->end_unix_ms = done->start_unix_ms + elapsed_ms;
    next->start_mono_ns = done->end_mono_ns;
    next->start_unix_ms = done->end_unix_ms;
    int64_t step_ms = now_unix_ms - next->start_unix_ms;
    if (step_ms > 1000 || step_ms < -1000) {
        next->start_unix_ms = now_unix_ms;  /* the wall clock was set */
    }
}

int
ps_period_add_thread(ps_period *p, uint64_t ident, uint64_t native_id,
                     const char *name, size_t name_len, uint16_t *index)
{
    if (p->threads.len >= PS_MAX_THREADS) {
        return PS_EFULL;
    }
    char *copy = malloc(name_len + 1);
    if (copy == NULL) {
        return PS_ENOMEM;
    }
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    ps_thread *t = ps_vec_push(&p->threads);
    if (t == NULL) {
        free(copy);
        return PS_ENOMEM;
    }
    t->ident = ident;
    t->native_id = native_id;
    t->name = copy;
    *index = (uint16_t)(p->threads.len - 1);
    return PS_OK;
}

int
ps_period_rename_thread(ps_period *p, uint16_t index, const char *name,
                        size_t name_len)
{
    char *copy = malloc(name_len + 1);
    if (copy == NULL) {
        return PS_ENOMEM;
    }
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    ps_thread *t = ps_period_thread(p, index);
    free(t->name);
    t->name = copy;
    return PS_OK;
}

static uint32_t
offset_ms(const ps_period *p, int64_t now_ns)
{
    int64_t ms = (now_ns - p->start_mono_ns) / 1000000;
    if (ms < 0) {
        return 0;
    }
    return ms > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

int
ps_period_add_sample(ps_period *p, int64_t now_ns, uint16_t thread,
                     uint32_t node, uint32_t weight_us)
{
    ps_sample *s = ps_vec_push(&p->samples);
    if (s == NULL) {
        return PS_ENOMEM;
    }
    s->t_ms = offset_ms(p, now_ns);
    /* Keep times monotonic even if the caller's clock reads raced. */
    if (p->samples.len > 1) {
        const ps_sample *prev = ps_vec_at(&p->samples, p->samples.len - 2);
        if (s->t_ms < prev->t_ms) {
            s->t_ms = prev->t_ms;
        }
    }
    s->node = node;
    s->weight_us = weight_us;
    s->thread = thread;
    ps_thread *t = ps_period_thread(p, thread);
    t->samples += ps_period_count_sample(&t->carry, weight_us, p->frequency_mhz);
    t->weight_us += weight_us;
    p->stats.samples++;
    return PS_OK;
}

int
ps_period_add_load(ps_period *p, int64_t now_ns, uint32_t cpu_permille,
                   uint64_t rss_kb)
{
    ps_load *l = ps_vec_push(&p->load);
    if (l == NULL) {
        return PS_ENOMEM;
    }
    l->t_ms = offset_ms(p, now_ns);
    l->cpu_permille = cpu_permille;
    l->rss_kb = rss_kb;
    return PS_OK;
}

int64_t
ps_period_duration_ms(const ps_period *p)
{
    int64_t end = p->end_mono_ns ? p->end_mono_ns : clock_ns(CLOCK_MONOTONIC);
    return (end - p->start_mono_ns) / 1000000;
}

size_t
ps_period_heap_bytes(const ps_period *p)
{
    size_t bytes = sizeof(*p) + ps_stacks_heap_bytes(&p->stacks) +
                   ps_vec_heap_bytes(&p->threads) +
                   ps_vec_heap_bytes(&p->samples) + ps_vec_heap_bytes(&p->load) +
                   ps_stall_list_heap_bytes(&p->stalls);
    for (size_t i = 0; i < p->threads.len; i++) {
        bytes += strlen(((ps_thread *)ps_vec_at(&p->threads, i))->name) + 1;
    }
    return bytes;
}

const char *
ps_mode_name(int mode)
{
    switch (mode) {
    case PS_MODE_PROF:
        return "prof";
    case PS_MODE_VIRTUAL:
        return "virtual";
    case PS_MODE_REAL:
        return "real";
    }
    return "unknown";
}

static uint32_t
map_node(const uint32_t *node_map, uint32_t node)
{
    return node == PS_STALL_NONE ? PS_STALL_NONE : node_map[node];
}

static uint16_t
map_thread(const uint32_t *thread_map, uint16_t thread)
{
    return thread == PS_STALL_NO_THREAD ? PS_STALL_NO_THREAD
                                        : (uint16_t)thread_map[thread];
}

/* Copy src's stalls into dst with their stacks and threads re-mapped. */
static int
append_stalls(ps_period *dst, const ps_period *src, const uint32_t *node_map,
              const uint32_t *thread_map)
{
    for (size_t i = 0; i < src->stalls.len; i++) {
        const ps_stall *from = &src->stalls.items[i];
        ps_stall copy = *from;
        copy.samples = NULL;
        copy.n_samples = copy.cap_samples = 0;
        for (uint32_t j = 0; j < from->n_samples; j++) {
            ps_stall_sample sample = from->samples[j];
            sample.main_node = map_node(node_map, sample.main_node);
            sample.busy_node = map_node(node_map, sample.busy_node);
            sample.main_thread = map_thread(thread_map, sample.main_thread);
            sample.busy_thread = map_thread(thread_map, sample.busy_thread);
            if (ps_stall_add_sample(&copy, &sample) == PS_ENOMEM) {
                ps_stall_clear(&copy);
                return PS_ENOMEM;
            }
        }
        ps_stall_list_take(&dst->stalls, &copy);
    }
    dst->stalls.dropped += src->stalls.dropped;
    if (dst->stalls.threshold_ns == 0) {
        dst->stalls.threshold_ns = src->stalls.threshold_ns;
    }
    return PS_OK;
}

/* Append `src` to `dst`: the body of ps_period_concat. `map` has room for
 * max(frames, nodes, threads) of src. */
static int
append_period(ps_period *dst, const ps_period *src, uint32_t *map)
{
    const ps_stacks *from = &src->stacks;
    ps_stacks *to = &dst->stacks;
    uint32_t *node_map = NULL;
    int rc = PS_OK;

    /* Frames: re-intern by content. */
    for (uint32_t i = 0; i < ps_stacks_frame_count(from); i++) {
        const ps_frame *f = ps_stacks_frame_at(from, i);
        const ps_str *name = ps_strtab_get(&from->names, f->name);
        const ps_str *file = ps_strtab_get(&from->files, f->file);
        if ((rc = ps_stacks_frame(to, name->ptr, name->len, file->ptr,
                                  file->len, f->line, f->flags, &map[i])) < 0) {
            return rc;
        }
    }
    /* Nodes: parents come before children, so one pass maps them all. */
    uint32_t n_nodes = ps_stacks_node_count(from);
    node_map = malloc((n_nodes ? n_nodes : 1) * sizeof(*node_map));
    if (node_map == NULL) {
        return PS_ENOMEM;
    }
    for (uint32_t i = 0; i < n_nodes; i++) {
        const ps_node *node = ps_stacks_node(from, i);
        uint32_t parent = node->parent == PS_NO_PARENT ? PS_NO_PARENT
                                                       : node_map[node->parent];
        if (i == from->overflow_node) {
            node_map[i] = to->overflow_node;
            continue;
        }
        if (parent == to->overflow_node) {
            node_map[i] = to->overflow_node;  /* below a full table */
            continue;
        }
        rc = ps_stacks_child(to, parent, map[node->frame], node->line, &node_map[i]);
        if (rc == PS_EFULL) {
            rc = PS_OK;  /* samples land on "[stack table full]" */
        }
        else if (rc < 0) {
            goto done;
        }
    }
    /* Threads. */
    for (size_t i = 0; i < src->threads.len; i++) {
        const ps_thread *t = ps_period_thread(src, (uint16_t)i);
        size_t j;
        for (j = 0; j < dst->threads.len; j++) {
            const ps_thread *d = ps_period_thread(dst, (uint16_t)j);
            if (d->ident == t->ident && d->native_id == t->native_id &&
                strcmp(d->name, t->name) == 0) {
                break;
            }
        }
        if (j < dst->threads.len) {
            map[i] = (uint32_t)j;
            continue;
        }
        uint16_t index;
        if ((rc = ps_period_add_thread(dst, t->ident, t->native_id, t->name,
                                       strlen(t->name), &index)) < 0) {
            goto done;
        }
        map[i] = index;
    }
    /* Samples and load, re-based on dst's start. */
    for (size_t i = 0; i < src->samples.len; i++) {
        const ps_sample *s = ps_vec_at(&src->samples, i);
        int64_t at = src->start_mono_ns + (int64_t)s->t_ms * 1000000;
        uint32_t node = node_map[s->node];
        if (node == to->overflow_node && s->node != from->overflow_node) {
            dst->stats.truncated++;
        }
        if ((rc = ps_period_add_sample(dst, at, (uint16_t)map[s->thread], node,
                                       s->weight_us)) < 0) {
            goto done;
        }
    }
    for (size_t i = 0; i < src->load.len; i++) {
        const ps_load *l = ps_vec_at(&src->load, i);
        int64_t at = src->start_mono_ns + (int64_t)l->t_ms * 1000000;
        if ((rc = ps_period_add_load(dst, at, l->cpu_permille, l->rss_kb)) < 0) {
            goto done;
        }
    }
    if ((rc = append_stalls(dst, src, node_map, map)) < 0) {
        goto done;
    }
    dst->stats.ticks += src->stats.ticks;
    dst->stats.missed += src->stats.missed;
    dst->stats.idle += src->stats.idle;
    dst->stats.truncated += src->stats.truncated;
    dst->stats.dropped += src->stats.dropped;
    dst->stats.sampling_ns += src->stats.sampling_ns;
    dst->stats.signal_lost |= src->stats.signal_lost;
    /* stats.samples was counted by ps_period_add_sample. */
done:
    free(node_map);
    return rc;
}

int
ps_period_concat(ps_period *const *periods, size_t n, ps_period **out)
{
    ps_period *dst = NULL;
    uint32_t *map = NULL;
    uint32_t max_nodes = 0;
    size_t map_len = 1;
    int rc = PS_EINVAL;

    *out = NULL;
    if (n == 0) {
        return PS_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const ps_period *p = periods[i];
        if (i > 0 && p->start_mono_ns < periods[i - 1]->start_mono_ns) {
            return PS_EINVAL;
        }
        if (p->stacks.max_nodes > max_nodes) {
            max_nodes = p->stacks.max_nodes;
        }
        size_t need = ps_stacks_frame_count(&p->stacks);
        if (p->threads.len > need) {
            need = p->threads.len;
        }
        if (need > map_len) {
            map_len = need;
        }
    }
    dst = ps_period_new(periods[0]->mode, periods[0]->frequency_mhz,
                        periods[0]->max_depth, max_nodes);
    map = malloc(map_len * sizeof(*map));
    if (dst == NULL || map == NULL) {
        rc = PS_ENOMEM;
        goto error;
    }
    dst->pid = periods[0]->pid;
    dst->start_unix_ms = periods[0]->start_unix_ms;
    dst->start_mono_ns = periods[0]->start_mono_ns;
    for (size_t i = 0; i < n; i++) {
        if ((rc = append_period(dst, periods[i], map)) < 0) {
            goto error;
        }
    }
    const ps_period *last = periods[n - 1];
    dst->end_mono_ns = last->end_mono_ns ? last->end_mono_ns : last->start_mono_ns;
    dst->end_unix_ms = dst->start_unix_ms +
                       (dst->end_mono_ns - dst->start_mono_ns) / 1000000;
    free(map);
    *out = dst;
    return PS_OK;
error:
    free(map);
    ps_period_free(dst);
    return rc;
}
