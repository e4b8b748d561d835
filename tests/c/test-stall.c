/* The stall list of a period (ps_stall.h): the longest kept, the rest
 * counted; samples capped per stall; stalls carried through concat with
 * their stacks and threads re-mapped. */
#include <stdint.h>
#include <string.h>

#include "ps_error.h"
#include "ps_period.h"
#include "ps_stall.h"
#include "ps_test.h"

#define MS 1000000LL

static ps_stall
stall_of(int64_t start_ms, int64_t duration_ms)
{
    ps_stall s = {.start_mono_ns = start_ms * MS, .duration_ns = duration_ms * MS};
    return s;
}

static void
test_the_longest_are_kept(void)
{
    ps_stall_list l;
    ps_stall_list_init(&l);
    for (int i = 0; i < PS_MAX_STALLS; i++) {
        ps_stall s = stall_of(i * 1000, 300 + i);
        ps_stall_sample sample = {.t_ms = 260, .main_node = 1};
        CHECK(ps_stall_add_sample(&s, &sample) == PS_OK);
        ps_stall_list_take(&l, &s);
        CHECK(s.samples == NULL);  /* the list owns them now */
    }
    CHECK(l.len == PS_MAX_STALLS && l.dropped == 0);
    ps_stall shorter = stall_of(99000, 299);
    ps_stall_list_take(&l, &shorter);  /* shorter than all: dropped */
    CHECK(l.len == PS_MAX_STALLS && l.dropped == 1);
    ps_stall longer = stall_of(99000, 5000);
    ps_stall_list_take(&l, &longer);  /* replaces the 300 ms one */
    CHECK(l.len == PS_MAX_STALLS && l.dropped == 2);
    int64_t shortest = INT64_MAX;
    int found = 0;
    for (size_t i = 0; i < l.len; i++) {
        if (l.items[i].duration_ns < shortest) {
            shortest = l.items[i].duration_ns;
        }
        found += l.items[i].duration_ns == 5000 * MS;
    }
    CHECK(shortest == 301 * MS && found == 1);
    CHECK(ps_stall_list_heap_bytes(&l) > 0);
    ps_stall_list_free(&l);
    CHECK(l.len == 0);
}

static void
test_samples_are_capped(void)
{
    ps_stall s = stall_of(0, 20000);
    ps_stall_sample sample = {.main_node = 3};
    int full = 0;
    for (uint32_t i = 0; i < PS_STALL_MAX_SAMPLES + 5; i++) {
        sample.t_ms = i * 10;
        full += ps_stall_add_sample(&s, &sample) == PS_EFULL;
    }
    CHECK(s.n_samples == PS_STALL_MAX_SAMPLES && full == 5 && s.samples_dropped == 5);
    CHECK(s.samples[PS_STALL_MAX_SAMPLES - 1].t_ms == (PS_STALL_MAX_SAMPLES - 1) * 10);
    ps_stall_clear(&s);
    CHECK(s.samples == NULL && s.n_samples == 0);
}

static void
test_concat_remaps_stalls(void)
{
    ps_period *a = ps_period_new(PS_MODE_VIRTUAL, 100000, 64, 1000);
    ps_period *b = ps_period_new(PS_MODE_VIRTUAL, 100000, 64, 1000);
    ps_period *joined = NULL;
    uint16_t ta, tb, tb2;
    uint32_t fa, fb, na, nb;
    CHECK(ps_period_add_thread(a, 1, 10, "MainThread", 10, &ta) == PS_OK);
    CHECK(ps_period_add_thread(b, 2, 20, "pool", 4, &tb2) == PS_OK);
    CHECK(ps_period_add_thread(b, 1, 10, "MainThread", 10, &tb) == PS_OK);
    CHECK(ps_stacks_frame(&a->stacks, "f", 1, "a.py", 4, 1, 0, &fa) == PS_OK);
    CHECK(ps_stacks_frame(&b->stacks, "g", 1, "b.py", 4, 1, 0, &fb) == PS_OK);
    CHECK(ps_stacks_insert(&a->stacks, &fa, 1, &na) == PS_OK);
    CHECK(ps_stacks_insert(&b->stacks, &fb, 1, &nb) == PS_OK);
    b->start_mono_ns = a->start_mono_ns + 1000 * MS;
    a->end_mono_ns = b->start_mono_ns;
    b->end_mono_ns = b->start_mono_ns + 1000 * MS;

    ps_stall sa = stall_of(0, 400), sb = stall_of(0, 600);
    sa.start_mono_ns = a->start_mono_ns + 10 * MS;
    sb.start_mono_ns = b->start_mono_ns + 10 * MS;
    ps_stall_sample in_a = {260, na, PS_STALL_NONE, ta, PS_STALL_NO_THREAD};
    ps_stall_sample in_b = {260, PS_STALL_NONE, nb, PS_STALL_NO_THREAD, tb2};
    CHECK(ps_stall_add_sample(&sa, &in_a) == PS_OK);
    CHECK(ps_stall_add_sample(&sb, &in_b) == PS_OK);
    ps_stall_list_take(&a->stalls, &sa);
    ps_stall_list_take(&b->stalls, &sb);
    a->stalls.threshold_ns = 250 * MS;
    b->stalls.dropped = 4;

    ps_period *both[] = {a, b};
    CHECK(ps_period_concat(both, 2, &joined) == PS_OK);
    if (joined != NULL) {
        CHECK(joined->stalls.len == 2 && joined->stalls.dropped == 4);
        CHECK(joined->stalls.threshold_ns == 250 * MS);
        const ps_stall *first = &joined->stalls.items[0];
        const ps_stall *second = &joined->stalls.items[1];
        CHECK(first->duration_ns == 400 * MS && second->duration_ns == 600 * MS);
        /* Nodes and threads name the same frames and threads in `joined`. */
        const ps_node *n0 = ps_stacks_node(&joined->stacks, first->samples[0].main_node);
        const ps_frame *f0 = ps_stacks_frame_at(&joined->stacks, n0->frame);
        CHECK(strcmp(ps_strtab_get(&joined->stacks.names, f0->name)->ptr, "f") == 0);
        const ps_node *n1 = ps_stacks_node(&joined->stacks, second->samples[0].busy_node);
        const ps_frame *f1 = ps_stacks_frame_at(&joined->stacks, n1->frame);
        CHECK(strcmp(ps_strtab_get(&joined->stacks.names, f1->name)->ptr, "g") == 0);
        CHECK(strcmp(ps_period_thread(joined, second->samples[0].busy_thread)->name, "pool") == 0);
        CHECK(second->samples[0].main_node == PS_STALL_NONE &&
              second->samples[0].main_thread == PS_STALL_NO_THREAD);
    }
    ps_period_free(joined);
    ps_period_free(a);
    ps_period_free(b);
}

int
main(void)
{
    RUN(test_the_longest_are_kept);
    RUN(test_samples_are_capped);
    RUN(test_concat_remaps_stalls);
    return ps_test_failures != 0;
}
