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
    t->samples++;
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
                   ps_vec_heap_bytes(&p->samples) + ps_vec_heap_bytes(&p->load);
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
