/* Benchmark of ps_writer_write on a synthetic busy 30-minute period: 10
 * threads, 100 Hz for 1800 s, about 200k kept samples over 5000 distinct
 * stacks (skewed, as real profiles are), a load point per second. Prints
 * the file size, the write time and the memory the write added. Not a test:
 * run it by hand (`bench-writer DIR [build-only]`); with "build-only" it
 * builds the period and stops, so `/usr/bin/time -v` of both runs gives the
 * writer's peak extra memory as the difference of the maximum RSS. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "ps_error.h"
#include "ps_procstat.h"
#include "ps_writer.h"

#define N_THREADS 10
#define N_STACKS 5000
#define N_FUNCTIONS 1500
#define N_FILES 300
#define SECONDS 1800
#define HZ 100

static uint64_t rng = 0x2545F4914F6CDD1Du;

static uint32_t
next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static double
uniform(void)
{
    return next() / 4294967296.0 * 65536.0 / 65536.0;
}

static long
maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [build-only]\n", argv[0]);
        return 2;
    }
    int build_only = argc > 2 && strcmp(argv[2], "build-only") == 0;
    ps_period *p = ps_period_new(PS_MODE_VIRTUAL, 100000, 256, 200000);
    if (p == NULL) {
        return 1;
    }
    uint16_t threads[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        char name[32];
        int n = i == 0 ? snprintf(name, sizeof(name), "MainThread")
                       : snprintf(name, sizeof(name), "PoolThread-twisted.threads-%d", i);
        ps_period_add_thread(p, 140584956118848u + (uint64_t)i * 8392704u,
                             31337 + (uint64_t)i, name, (size_t)n, &threads[i]);
    }
    static uint32_t functions[N_FUNCTIONS];
    for (int i = 0; i < N_FUNCTIONS; i++) {
        char name[96], file[160];
        int f = i % N_FILES;
        int nn = snprintf(name, sizeof(name), "Class%d.method_%d", i / 7, i);
        int nf = snprintf(file, sizeof(file),
                          "/srv/buildbot/venv/lib/python3.11/site-packages/"
                          "package%d/module_%d.py", f / 20, f);
        ps_stacks_frame(&p->stacks, name, (size_t)nn, file, (size_t)nf,
                        (uint32_t)(10 + i * 3 % 2000), 0, &functions[i]);
    }
    /* Stacks grow as a tree, as real ones do: each new stack keeps most of
     * an earlier one (the reactor loop, a service, a callback chain) and
     * adds one to four frames of its own; depth 12..60. */
    static uint32_t leaves[N_STACKS];
    static uint32_t paths[N_STACKS][64];
    static size_t depths[N_STACKS];
    unsigned char *seen = calloc(200000, 1);
    for (size_t d = 0; d < 12; d++) {
        paths[0][d] = functions[d];
    }
    depths[0] = 12;
    ps_stacks_insert(&p->stacks, paths[0], 12, &leaves[0]);
    seen[leaves[0]] = 1;
    for (int s = 1; s < N_STACKS;) {
        int from = (int)(next() % (uint32_t)s);
        size_t keep = depths[from] - next() % 4;
        size_t depth = keep + 1 + next() % 4;
        if (keep < 8 || depth > 60) {
            continue;
        }
        memcpy(paths[s], paths[from], keep * sizeof(uint32_t));
        for (size_t d = keep; d < depth; d++) {
            paths[s][d] = functions[next() % N_FUNCTIONS];
        }
        depths[s] = depth;
        uint32_t leaf;
        ps_stacks_insert(&p->stacks, paths[s], depth, &leaf);
        if (leaf < 200000 && !seen[leaf]) {
            seen[leaf] = 1;
            leaves[s++] = leaf;
        }
    }
    free(seen);
    int64_t t0 = p->start_mono_ns;
    for (int tick = 0; tick < SECONDS * HZ; tick++) {
        int64_t now = t0 + (int64_t)tick * (1000000000 / HZ);
        for (int t = 0; t < N_THREADS; t++) {
            /* The main thread is busy 80% of the time, the others 3.5%. */
            if (uniform() >= (t == 0 ? 0.8 : 0.035)) {
                continue;
            }
            double u = uniform();
            uint32_t stack = leaves[(uint32_t)(N_STACKS * u * u * u)];
            /* As measured on Linux at 100 Hz (virtual): CPU time comes in
             * jiffies, so weights cluster near 8 and 12 ms, +-60 us. */
            uint32_t weight = (next() % 2 ? 8000 : 12000) - 60 + next() % 120;
            ps_period_add_sample(p, now, threads[t], stack, weight);
        }
        if (tick % HZ == 0 && tick > 0) {
            ps_period_add_load(p, now, next() % 1000,
                               180000 + (uint64_t)tick / 100);
        }
    }
    p->stats.ticks = SECONDS * HZ;
    p->stats.idle = (uint64_t)SECONDS * HZ * N_THREADS - p->stats.samples;
    p->end_mono_ns = t0 + (int64_t)SECONDS * 1000000000;
    p->end_unix_ms = p->start_unix_ms + SECONDS * 1000;
    printf("period: %zu samples, %u stack nodes, %u frames, %zu threads, "
           "%zu load points, %.1f MB of heap\n",
           p->samples.len, ps_stacks_node_count(&p->stacks),
           ps_stacks_frame_count(&p->stacks), p->threads.len, p->load.len,
           ps_period_heap_bytes(p) / 1e6);
    if (build_only) {
        printf("maxrss %ld kB\n", maxrss_kb());
        ps_period_free(p);
        return 0;
    }

    char path_out[4096];
    snprintf(path_out, sizeof(path_out), "%s/prof_bench.json.gz", argv[1]);
    static const char meta[] = "{\"python\":\"3.11.7\",\"gatherperiod\":1800}";
    ps_write_options options = {meta, sizeof(meta) - 1, "[]", 2, 0};
    ps_write_error err;
    long rss_before = (long)ps_rss_kb(), maxrss_before = maxrss_kb();
    static const int levels[] = {1, 6, 9};
    for (size_t i = 0; i < sizeof(levels) / sizeof(*levels); i++) {
        int level = levels[i];
        options.level = level;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int rc = ps_writer_write(p, path_out, &options, &err);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (rc < 0) {
            fprintf(stderr, "write failed at %s: %s (errno %d)\n", err.what,
                    ps_strerror(rc), err.os_errno);
            return 1;
        }
        struct stat st;
        stat(path_out, &st);
        printf("level %d: %lld bytes (%.3f MB), write %.1f ms\n",
               level, (long long)st.st_size,
               st.st_size / 1e6,
               (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
    }
    printf("rss before write %ld kB; maxrss before %ld kB, after %ld kB "
           "(+%ld kB)\n",
           rss_before, maxrss_before, maxrss_kb(), maxrss_kb() - maxrss_before);
    ps_period_free(p);
    return 0;
}
