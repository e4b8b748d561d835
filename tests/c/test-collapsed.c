/* ps_collapsed: the exact text of collapsed stacks for a hand-built period. */
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
    for (int i = 0; i < 3; i++) {
        ps_period_add_sample(p, now, main_thread, n_deep, 100);
    }
    ps_period_add_sample(p, now, main_thread, n_shallow, 100);
    ps_period_add_sample(p, now, worker, n_deep, 100);
    ps_period_add_sample(p, now, worker, p->stacks.overflow_node, 100);

    char *text;
    size_t len;
    CHECK(ps_collapsed_render(p, -1, 0, &text, &len) == PS_OK);
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

    CHECK(ps_collapsed_render(p, worker, 0, &text, &len) == PS_OK);
    CHECK(strcmp(text, "worker;[stack table full] 1\n"
                       "worker;run (/app/main.py:3);Hot.loop (/app/hot.py:40) 1\n") == 0);
    free(text);

    CHECK(ps_collapsed_render(p, main_thread, 1, &text, &len) == PS_OK);
    CHECK(strcmp(text,
                 "Main,Thread;run (/app/main.py:3);Hot.loop (/app/hot.py:40) 300\n"
                 "Main,Thread;run (/app/main.py:3);cold (/app/cold.py:7) 100\n") == 0);
    free(text);
    ps_period_free(p);
}

static void
test_empty(void)
{
    ps_period *p = ps_period_new(PS_MODE_REAL, 1000, 8, 100);
    char *text;
    size_t len;
    CHECK(ps_collapsed_render(p, -1, 0, &text, &len) == PS_OK);
    CHECK(len == 0 && text[0] == '\0');
    free(text);
    ps_period_free(p);
}

int
main(void)
{
    RUN(test_render);
    RUN(test_empty);
    return ps_test_failures != 0;
}
