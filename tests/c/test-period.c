/* ps_period and ps_vec: threads, samples, load, time offsets. */
#include <string.h>
#include <time.h>

#include "ps_error.h"
#include "ps_period.h"
#include "ps_procstat.h"
#include "ps_test.h"

static void
test_vec_chunks_do_not_move(void)
{
    ps_vec v;
    ps_vec_init(&v, sizeof(int), 64);
    int *first = ps_vec_push(&v);
    *first = 42;
    for (int i = 1; i < 10000; i++) {
        int *slot = ps_vec_push(&v);
        CHECK(slot != NULL);
        *slot = i;
    }
    CHECK(v.len == 10000);
    CHECK(*(int *)ps_vec_at(&v, 0) == 42 && first == ps_vec_at(&v, 0));
    CHECK(*(int *)ps_vec_at(&v, 9999) == 9999);
    ps_vec_free(&v);
    CHECK(v.len == 0);
}

static void
test_samples_and_threads(void)
{
    ps_period *p = ps_period_new(PS_MODE_VIRTUAL, 100000, 64, 1000);
    CHECK(p != NULL);
    uint16_t t0, t1;
    CHECK(ps_period_add_thread(p, 111, 11, "MainThread", 10, &t0) == PS_OK);
    CHECK(ps_period_add_thread(p, 222, 22, "worker", 6, &t1) == PS_OK);
    CHECK(t0 == 0 && t1 == 1);
    int64_t now = ps_mono_ns();
    CHECK(ps_period_add_sample(p, now + 5000000, t0, 2, 10000) == PS_OK);
    CHECK(ps_period_add_sample(p, now + 3000000, t1, 2, 500) == PS_OK);
    const ps_sample *a = ps_vec_at(&p->samples, 0);
    const ps_sample *b = ps_vec_at(&p->samples, 1);
    CHECK(a->t_ms >= 5 && b->t_ms == a->t_ms); /* kept non-decreasing */
    CHECK(ps_period_thread(p, t0)->samples == 1);
    CHECK(ps_period_thread(p, t1)->weight_us == 500);
    CHECK(strcmp(ps_period_thread(p, t1)->name, "worker") == 0);
    CHECK(p->stats.samples == 2);
    CHECK(ps_period_add_load(p, now + 1000000000, 250, 12345) == PS_OK);
    CHECK(((ps_load *)ps_vec_at(&p->load, 0))->t_ms >= 1000);
    CHECK(p->end_unix_ms == 0);
    ps_period_finish(p);
    CHECK(p->end_unix_ms >= p->start_unix_ms);
    int64_t end = p->end_unix_ms;
    ps_period_finish(p);
    CHECK(p->end_unix_ms == end);
    CHECK(ps_period_heap_bytes(p) > sizeof(*p));
    CHECK(strcmp(ps_mode_name(PS_MODE_REAL), "real") == 0);
    ps_period_free(p);
}

static void
test_hand_over_is_one_instant(void)
{
    ps_period *done = ps_period_new(PS_MODE_PROF, 100000, 64, 1000);
    CHECK(done != NULL);
    struct timespec pause = {0, 2345678};
    nanosleep(&pause, NULL);
    ps_period *next = ps_period_new(PS_MODE_PROF, 100000, 64, 1000);
    CHECK(next != NULL);
    nanosleep(&pause, NULL);  /* next was made well before the hand-over */
    ps_period_hand_over(done, next);
    CHECK(done->end_unix_ms == next->start_unix_ms);
    CHECK(done->end_mono_ns == next->start_mono_ns);
    CHECK(done->end_mono_ns <= ps_mono_ns());
    CHECK(done->end_unix_ms - done->start_unix_ms >= 4);
    /* The boundary is a whole millisecond of done's clock. */
    CHECK((done->end_mono_ns - done->start_mono_ns) % 1000000 == 0);
    CHECK(done->end_unix_ms - done->start_unix_ms == ps_period_duration_ms(done));
    ps_period_free(done);
    ps_period_free(next);
}

static void
test_procstat(void)
{
    CHECK(ps_rss_kb() > 0);
    CHECK(ps_ram_kb() > ps_rss_kb());
    int64_t before = ps_process_cpu_ns();
    volatile unsigned long spin = 0;
    for (unsigned long i = 0; i < 20000000ul; i++) {
        spin += i;
    }
    CHECK(ps_process_cpu_ns() > before);
    CHECK(ps_thread_cpu_ns(0) == -1);
    /* A TID that cannot exist (above pid_max's hard limit of 2^22). */
    CHECK(ps_thread_cpu_ns(1u << 23) == -1);
}

int
main(void)
{
    RUN(test_vec_chunks_do_not_move);
    RUN(test_samples_and_threads);
    RUN(test_hand_over_is_one_instant);
    RUN(test_procstat);
    return ps_test_failures != 0;
}
