/* ps_collapsed: the exact text of collapsed stacks for a hand-built period. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_collapsed.h"
#include "ps_error.h"
#include "ps_procstat.h"
#include "ps_test.h"

static uint32_t
frame(ps_period *p, const char *name, const char *file, uint32_t line)
{
    uint32_t id = 0;
    CHECK(ps_stacks_frame(&p->stacks, name, strlen(name), file, strlen(file),
                          line, 0, &id) == PS_OK);
    return id;
}

static void
test_render(void)
{
    ps_period *p = ps_period_new(PS_MODE_PROF, 100000, 64, 1000);
    uint16_t main_thread, worker;
    CHECK(ps_period_add_thread(p, 1, 10, "Main;Thread", 11, &main_thread) == PS_OK);
    CHECK(ps_period_add_thread(p, 2, 20, "worker", 6, &worker) == PS_OK);
    uint32_t run = frame(p, "run", "/app/main.py", 3);
    uint32_t hot = frame(p, "Hot.loop", "/app/hot.py", 40);
    uint32_t cold = frame(p, "cold", "/app/cold.py", 7);
    uint32_t deep[] = {run, hot}, shallow[] = {run, cold};
    uint32_t n_deep, n_shallow;
    CHECK(ps_stacks_insert(&p->stacks, deep, 2, &n_deep) == PS_OK);
    CHECK(ps_stacks_insert(&p->stacks, shallow, 2, &n_shallow) == PS_OK);
    int64_t now = ps_mono_ns();
    /* One sampling interval (10 ms at 100 Hz) each: one sample each. */
    for (int i = 0; i < 3; i++) {
        ps_period_add_sample(p, now, main_thread, n_deep, 10000);
    }
    ps_period_add_sample(p, now, main_thread, n_shallow, 10000);
    ps_period_add_sample(p, now, worker, n_deep, 10000);
    ps_period_add_sample(p, now, worker, p->stacks.overflow_node, 10000);

    char *text;
    size_t len;
    CHECK(ps_collapsed_render(p, -1, 0, 0, &text, &len) == PS_OK);
    const char *expected =
        "Main,Thread;run (/app/main.py:3);Hot.loop (/app/hot.py:40) 3\n"
        "Main,Thread;run (/app/main.py:3);cold (/app/cold.py:7) 1\n"
        "worker;[stack table full] 1\n"
        "worker;run (/app/main.py:3);Hot.loop (/app/hot.py:40) 1\n";
    CHECK(strcmp(text, expected) == 0);
    CHECK(len == strlen(expected));
    if (strcmp(text, expected) != 0) {
        fprintf(stderr, "got:\n%s", text);
    }
    free(text);

    CHECK(ps_collapsed_render(p, worker, 0, 0, &text, &len) == PS_OK);
    CHECK(strcmp(text, "worker;[stack table full] 1\n"
                       "worker;run (/app/main.py:3);Hot.loop (/app/hot.py:40) 1\n") == 0);
    free(text);

    CHECK(ps_collapsed_render(p, main_thread, 1, 0, &text, &len) == PS_OK);
    CHECK(strcmp(text,
                 "Main,Thread;run (/app/main.py:3);Hot.loop (/app/hot.py:40) 30000\n"
                 "Main,Thread;run (/app/main.py:3);cold (/app/cold.py:7) 10000\n") == 0);
    free(text);
    ps_period_free(p);
}

/* Counts are sampling intervals of weight, carried per thread in time order
 * (docs/FORMAT.md, "What a sample is, in each mode"). */
static void
test_counts_are_intervals_of_weight(void)
{
    ps_period *p = ps_period_new(PS_MODE_PROF, 200000, 64, 1000);  /* 5 ms */
    uint16_t napper, busy, brief;
    CHECK(ps_period_add_thread(p, 1, 10, "napper", 6, &napper) == PS_OK);
    CHECK(ps_period_add_thread(p, 2, 20, "busy", 4, &busy) == PS_OK);
    CHECK(ps_period_add_thread(p, 3, 30, "brief", 5, &brief) == PS_OK);
    uint32_t nap = frame(p, "nap", "/app/nap.py", 1);
    uint32_t spin = frame(p, "spin", "/app/spin.py", 2);
    uint32_t n_nap, n_spin;
    CHECK(ps_stacks_insert(&p->stacks, &nap, 1, &n_nap) == PS_OK);
    CHECK(ps_stacks_insert(&p->stacks, &spin, 1, &n_spin) == PS_OK);
    int64_t now = ps_mono_ns();
    /* 10 x 600 µs: the 9th crosses 5 ms (1 sample), 1000 µs stay carried. */
    for (int i = 0; i < 10; i++) {
        ps_period_add_sample(p, now, napper, n_nap, 600);
        ps_period_add_sample(p, now, busy, i < 5 ? n_spin : n_nap, 2500);
    }
    ps_period_add_sample(p, now, brief, n_spin, 4999);  /* under an interval */
    ps_period_add_sample(p, now, busy, n_spin, 12500);  /* 2.5 intervals */

    CHECK(ps_period_thread(p, napper)->samples == 1);
    CHECK(ps_period_thread(p, busy)->samples == 7);  /* 37500 µs */
    CHECK(ps_period_thread(p, brief)->samples == 0);
    CHECK(ps_period_thread(p, brief)->weight_us == 4999);

    char *text;
    size_t len;
    CHECK(ps_collapsed_render(p, -1, 0, 0, &text, &len) == PS_OK);
    /* busy: 5 x 2500 on spin (2 samples, 2500 µs carried), 5 x 2500 on nap
     * (3 samples, none carried), then 12500 on spin (2 more). */
    const char *expected =
        "napper;nap (/app/nap.py:1) 1\n"
        "busy;nap (/app/nap.py:1) 3\n"
        "busy;spin (/app/spin.py:2) 4\n";
    CHECK(strcmp(text, expected) == 0);
    if (strcmp(text, expected) != 0) {
        fprintf(stderr, "got:\n%s", text);
    }
    free(text);

    CHECK(ps_collapsed_render(p, brief, 0, 0, &text, &len) == PS_OK);
    CHECK(len == 0);  /* its line would count 0: left out */
    free(text);
    CHECK(ps_collapsed_render(p, brief, 1, 0, &text, &len) == PS_OK);
    CHECK(strcmp(text, "brief;spin (/app/spin.py:2) 4999\n") == 0);
    free(text);
    ps_period_free(p);

    /* A frequency whose interval is not a whole µs: 97 Hz, 10309.28 µs. */
    uint64_t carry = 0, total = 0;
    for (int i = 0; i < 9700; i++) {
        total += ps_period_count_sample(&carry, 10309, 97000);
    }
    CHECK(total == 9699);  /* 99997300 µs = 9699.72 intervals */
}

/* One function on two lines, called from two lines of its caller: by
 * function one line, by line one per (caller line, line). */
static void
test_by_function_and_by_line(void)
{
    ps_period *p = ps_period_new(PS_MODE_PROF, 100000, 64, 1000);
    uint16_t t;
    CHECK(ps_period_add_thread(p, 1, 10, "MainThread", 10, &t) == PS_OK);
    uint32_t run = frame(p, "run", "/app/main.py", 3);
    uint32_t hot = frame(p, "hot", "/app/hot.py", 40);
    uint32_t path[] = {run, hot};
    uint32_t at_12[] = {5, 42}, at_15[] = {5, 45}, other_call[] = {6, 42};
    uint32_t n12, n15, n_other;
    CHECK(ps_stacks_insert_lines(&p->stacks, path, at_12, 2, &n12) == PS_OK);
    CHECK(ps_stacks_insert_lines(&p->stacks, path, at_15, 2, &n15) == PS_OK);
    CHECK(ps_stacks_insert_lines(&p->stacks, path, other_call, 2, &n_other) == PS_OK);
    CHECK(n12 != n15 && n12 != n_other);
    int64_t now = ps_mono_ns();
    for (int i = 0; i < 7; i++) {
        ps_period_add_sample(p, now, t, n12, 10000);
    }
    for (int i = 0; i < 2; i++) {
        ps_period_add_sample(p, now, t, n15, 10000);
    }
    ps_period_add_sample(p, now, t, n_other, 10000);

    char *text;
    size_t len;
    CHECK(ps_collapsed_render(p, -1, 0, 0, &text, &len) == PS_OK);
    CHECK(strcmp(text, "MainThread;run (/app/main.py:3);hot (/app/hot.py:40) 10\n") == 0);
    free(text);
    CHECK(ps_collapsed_render(p, -1, 0, 1, &text, &len) == PS_OK);
    const char *expected =
        "MainThread;run (/app/main.py:5);hot (/app/hot.py:42) 7\n"
        "MainThread;run (/app/main.py:5);hot (/app/hot.py:45) 2\n"
        "MainThread;run (/app/main.py:6);hot (/app/hot.py:42) 1\n";
    CHECK(strcmp(text, expected) == 0);
    if (strcmp(text, expected) != 0) {
        fprintf(stderr, "got:\n%s", text);
    }
    free(text);

    uint32_t function_node[16];
    CHECK(ps_stacks_node_count(&p->stacks) <= 16);
    CHECK(ps_stacks_function_nodes(&p->stacks, function_node) == PS_OK);
    CHECK(function_node[n15] == function_node[n12] && function_node[n_other] == function_node[n12]);
    CHECK(function_node[p->stacks.overflow_node] == p->stacks.overflow_node);
    ps_period_free(p);
}

static void
test_empty(void)
{
    ps_period *p = ps_period_new(PS_MODE_REAL, 1000, 8, 100);
    char *text;
    size_t len;
    CHECK(ps_collapsed_render(p, -1, 0, 0, &text, &len) == PS_OK);
    CHECK(len == 0 && text[0] == '\0');
    free(text);
    ps_period_free(p);
}

int
main(void)
{
    RUN(test_render);
    RUN(test_counts_are_intervals_of_weight);
    RUN(test_by_function_and_by_line);
    RUN(test_empty);
    return ps_test_failures != 0;
}
