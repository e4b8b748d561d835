/* ps_writer: the exact JSON text of a hand-built period (decompressed with
 * zlib here, independently of the writer), the embedded meta/builds JSON,
 * and the failure paths: bad embedded JSON, a missing directory and a full
 * disk (RLIMIT_FSIZE) leave no file behind, and a retry succeeds. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ps_error.h"
#include "ps_jsonreplay.h"
#include "ps_procstat.h"
#include "ps_test.h"
#include "ps_testfs.h"
#include "ps_writer.h"

#define MS 1000000  /* ns */

static uint32_t
frame(ps_period *p, const char *name, const char *file, uint32_t line)
{
    uint32_t id = 0;
    CHECK(ps_stacks_frame(&p->stacks, name, strlen(name), file, strlen(file),
                          line, 0, &id) == PS_OK);
    return id;
}

/* A small period whose every value is chosen, so the whole document is
 * known in advance. */
static ps_period *
small_period(void)
{
    ps_period *p = ps_period_new(PS_MODE_PROF, 12500, 64, 1000);
    uint16_t main_thread, worker, odd;
    CHECK(ps_period_add_thread(p, 1, 10, "MainThread", 10, &main_thread) == PS_OK);
    /* A name cut in the middle of "é" (C3 A9), and an ident above 2^63. */
    CHECK(ps_period_add_thread(p, UINT64_MAX - 1, 20, "w\xC3", 2, &worker) == PS_OK);
    CHECK(ps_period_add_thread(p, 3, 0, "a\"b\n", 4, &odd) == PS_OK);
    uint32_t run = frame(p, "run", "/app/main.py", 3);
    uint32_t hot = frame(p, "Hot.loop", "/app/hot.py", 40);
    uint32_t cold = frame(p, "cold", "/app/main.py", 7);
    uint32_t deep[] = {run, hot}, shallow[] = {run, cold};
    uint32_t deep_lines[] = {5, 41}, shallow_lines[] = {5, 9};
    uint32_t n_deep, n_shallow;
    CHECK(ps_stacks_insert_lines(&p->stacks, deep, deep_lines, 2, &n_deep) == PS_OK);
    CHECK(ps_stacks_insert_lines(&p->stacks, shallow, shallow_lines, 2, &n_shallow) == PS_OK);
    int64_t t0 = p->start_mono_ns;
    CHECK(ps_period_add_sample(p, t0 + 5 * MS, main_thread, n_deep, 100) == PS_OK);
    CHECK(ps_period_add_sample(p, t0 + 5 * MS, worker, n_deep, 250) == PS_OK);
    CHECK(ps_period_add_sample(p, t0 + 17 * MS, main_thread, n_shallow,
                               4000000000u) == PS_OK);
    CHECK(ps_period_add_sample(p, t0 + 1017 * MS, worker,
                               p->stacks.overflow_node, 7) == PS_OK);
    CHECK(ps_period_add_load(p, t0 + 1000 * MS, 250, 12345) == PS_OK);
    CHECK(ps_period_add_load(p, t0 + 2000 * MS, 1000, 5000000000u) == PS_OK);
    /* A stall that began 3 ms before the period (a rotation inside it),
     * with one sample of the reactor and one naming a busy thread. */
    ps_stall stall = {.start_mono_ns = t0 - 3 * MS, .duration_ns = 300 * MS + 400,
                      .main_cpu_ns = 2 * MS, .sampled_ns = 10 * MS};
    ps_stall_sample first = {260, n_deep, PS_STALL_NONE, main_thread, PS_STALL_NO_THREAD};
    ps_stall_sample second = {270, PS_STALL_NONE, n_shallow, PS_STALL_NO_THREAD, worker};
    CHECK(ps_stall_add_sample(&stall, &first) == PS_OK);
    CHECK(ps_stall_add_sample(&stall, &second) == PS_OK);
    ps_stall_list_take(&p->stalls, &stall);
    p->stalls.threshold_ns = 250 * MS;
    p->stalls.dropped = 2;
    p->stats.ticks = 10;
    p->stats.missed = 1;
    p->stats.idle = 6;
    p->stats.truncated = 2;
    p->stats.dropped = 3;
    p->stats.sampling_ns = 123456789012;
    p->stats.signal_lost = 1;
    p->start_unix_ms = 1764100000123;
    p->end_unix_ms = 1764100002123;
    p->end_mono_ns = t0 + 2000 * MS;
    return p;
}

static const char meta_json[] =
    "{\"python\": \"3.11.7\", \"gatherperiod\": 1800,\n"
    " \"x\": [1.5e3, true, false, null, {\"a\": -0, \"\\u00e9\": \"\\n\"}]}";
static const char builds_json[] =
    "[{\"buildid\": 12, \"complete_ms\": null, \"steps\": []}, {}]";

static char *
expected_small(void)
{
    char host[256];
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    char *text = malloc(8192);
    snprintf(text, 8192,
        "{\"format\":\"buildbot-profiler\",\"version\":3,"
        "\"meta\":{\"start_ms\":1764100000123,\"end_ms\":1764100002123,"
        "\"start_utc\":\"2025-11-25T19:46:40Z\",\"end_utc\":\"2025-11-25T19:46:42Z\","
        "\"mode\":\"prof\",\"frequency\":12.5,\"max_depth\":64,\"pid\":%ld,"
        "\"weight_unit\":\"us\",\"hostname\":\"%s\",\"cpu_count\":%ld,\"ram_kb\":%llu,"
        "\"python\":\"3.11.7\",\"gatherperiod\":1800,"
        "\"x\":[1.5e3,true,false,null,{\"a\":-0,\"\xC3\xA9\":\"\\n\"}]},"
        "\"stats\":{\"ticks\":10,\"missed\":1,\"samples\":4,\"idle\":6,"
        "\"truncated\":2,\"dropped\":3,\"sampling_ns\":123456789012,"
        "\"signal_lost\":1},"
        /* threads[].samples are sampling intervals of weight (80 ms at
         * 12.5 Hz): 4000000100 µs are 50000 of them, 257 µs none. */
        "\"threads\":["
        "{\"ident\":1,\"native_id\":10,\"name\":\"MainThread\",\"samples\":50000,\"weight\":4000000100},"
        "{\"ident\":18446744073709551614,\"native_id\":20,\"name\":\"w\xEF\xBF\xBD\",\"samples\":0,\"weight\":257},"
        "{\"ident\":3,\"native_id\":0,\"name\":\"a\\\"b\\n\",\"samples\":0,\"weight\":0}],"
        "\"files\":[\"\",\"/app/main.py\",\"/app/hot.py\"],"
        "\"frames\":[[\"[truncated]\",0,0],[\"[stack table full]\",0,0],"
        "[\"run\",1,3],[\"Hot.loop\",2,40],[\"cold\",1,7]],"
        "\"stacks\":{\"parent\":[-1,-1,1,1],\"frame\":[1,2,3,4],\"line\":[0,5,41,9]},"
        "\"samples\":{\"dt\":[5,0,12,1000],\"thread\":[0,1,0,1],"
        "\"stack\":[2,2,3,0],\"weight\":[100,250,4000000000,7]},"
        "\"load\":{\"t\":[1000,2000],\"cpu_permille\":[250,1000],"
        "\"rss_kb\":[12345,5000000000]},"
        "\"stalls\":{\"threshold_us\":250000,\"dropped\":2,\"items\":[{\"start\":-3,"
        "\"duration_us\":300000,\"sampled_us\":10000,\"main_cpu_us\":2000,"
        "\"samples_dropped\":0,\"samples\":{\"t\":[260,270],\"thread\":[0,-1],"
        "\"stack\":[2,-1],\"busy_thread\":[-1,1],\"busy_stack\":[-1,3]}}]},"
        "\"builds\":[{\"buildid\":12,\"complete_ms\":null,\"steps\":[]},{}]}",
        (long)getpid(), host, cpus, (unsigned long long)ps_ram_kb());
    return text;
}

static void
test_exact_document(void)
{
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/prof.json.gz", dir);
    ps_period *p = small_period();
    ps_write_options options = {meta_json, sizeof(meta_json) - 1, builds_json,
                                sizeof(builds_json) - 1, 9};
    ps_write_error err = {0};
    char *expected = expected_small();
    /* Twice: a period is only read, and the second write replaces the first. */
    for (int round = 0; round < 2; round++) {
        CHECK(ps_writer_write(p, path, &options, &err) == PS_OK);
        CHECK(err.code == 0 && err.what[0] == '\0');
        size_t len = 0;
        char *text = ps_test_gunzip(path, &len);
        CHECK(text != NULL && strlen(text) == len);
        CHECK(text != NULL && strcmp(text, expected) == 0);
        if (text != NULL && strcmp(text, expected) != 0) {
            fprintf(stderr, "got:      %s\nexpected: %s\n", text, expected);
        }
        free(text);
        int tmp;
        CHECK(ps_test_dir_entries(dir, &tmp) == 1 && tmp == 0);
    }
    free(expected);
    ps_period_free(p);
    ps_test_rmdir(dir);
}

static void
test_defaults_and_frequency(void)
{
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/empty.json.gz", dir);
    static const struct {
        uint64_t mhz;
        const char *text;
    } cases[] = {{100000, "\"frequency\":100,"}, {1, "\"frequency\":0.001,"},
                 {997250, "\"frequency\":997.25,"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        /* A fresh, empty, unfinished period and no options at all. */
        ps_period *p = ps_period_new(PS_MODE_REAL, cases[i].mhz, 256, 100);
        ps_write_error err;
        CHECK(ps_writer_write(p, path, NULL, &err) == PS_OK);
        size_t len;
        char *text = ps_test_gunzip(path, &len);
        CHECK(text != NULL);
        if (text == NULL) {
            ps_period_free(p);
            continue;
        }
        CHECK(strstr(text, cases[i].text) != NULL);
        CHECK(strstr(text, "\"mode\":\"real\"") != NULL);
        CHECK(strstr(text, "\"threads\":[],\"files\":[\"\"],") != NULL);
        CHECK(strstr(text, "\"samples\":{\"dt\":[],\"thread\":[],\"stack\":[],"
                           "\"weight\":[]},\"load\":{\"t\":[],\"cpu_permille\":[],"
                           "\"rss_kb\":[]},\"stalls\":{\"threshold_us\":0,"
                           "\"dropped\":0,\"items\":[]},\"builds\":[]}") != NULL);
        free(text);
        ps_period_free(p);
    }
    ps_test_rmdir(dir);
}

static void
test_bad_embedded_json(void)
{
    static const char *const bad_meta[] = {
        "", "{", "[]", "1", "null", "{\"a\":1} {}", "{\"a\":NaN}", "{\"a\":1,}",
        "{\"pid\":2}", "{\"hostname\":\"x\"}", "{\"a\":\"\xFF\"}",
    };
    static const char *const bad_builds[] = {
        "", "{}", "[", "[1,]", "\"x\"", "[\"\xC3\"]", "[] []", "[Infinity]",
    };
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/p.json.gz", dir);
    ps_period *p = small_period();
    ps_write_error err;
    int tmp;
    for (size_t i = 0; i < sizeof(bad_meta) / sizeof(*bad_meta); i++) {
        ps_write_options options = {bad_meta[i], strlen(bad_meta[i]), NULL, 0, 0};
        CHECK(ps_writer_write(p, path, &options, &err) == PS_EJSON);
        CHECK(err.code == PS_EJSON && strcmp(err.what, "meta_json") == 0);
        CHECK(ps_test_dir_entries(dir, &tmp) == 0);
    }
    for (size_t i = 0; i < sizeof(bad_builds) / sizeof(*bad_builds); i++) {
        ps_write_options options = {"{}", 2, bad_builds[i], strlen(bad_builds[i]), 0};
        CHECK(ps_writer_write(p, path, &options, &err) == PS_EJSON);
        CHECK(err.code == PS_EJSON && strcmp(err.what, "builds_json") == 0);
        CHECK(ps_test_dir_entries(dir, &tmp) == 0);
    }
    /* Nesting deeper than yajl's generator allows is refused up front. */
    char deep[512];
    size_t n = 0;
    for (int i = 0; i < 200; i++) {
        deep[n++] = '[';
    }
    for (int i = 0; i < 200; i++) {
        deep[n++] = ']';
    }
    ps_write_options nested = {NULL, 0, deep, n, 0};
    CHECK(ps_writer_write(p, path, &nested, &err) == PS_EJSON);
    CHECK(strcmp(err.what, "builds_json") == 0);
    CHECK(ps_test_dir_entries(dir, &tmp) == 0);

    /* Nothing was damaged: the next write works. */
    ps_write_options good = {"{}", 2, "[]", 2, 0};
    CHECK(ps_writer_write(p, path, &good, &err) == PS_OK);
    CHECK(ps_test_dir_entries(dir, &tmp) == 1 && tmp == 0);
    ps_period_free(p);
    ps_test_rmdir(dir);
}

/* A period large and varied enough not to compress below 1 MB. */
static ps_period *
large_period(void)
{
    ps_period *p = ps_period_new(PS_MODE_VIRTUAL, 100000, 64, 100000);
    uint16_t t;
    CHECK(ps_period_add_thread(p, 1, 1, "main", 4, &t) == PS_OK);
    uint32_t f = frame(p, "f", "/f.py", 1);
    uint32_t node;
    CHECK(ps_stacks_insert(&p->stacks, &f, 1, &node) == PS_OK);
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 400000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ps_period_add_sample(p, p->start_mono_ns + (int64_t)i * MS, t, node,
                             (uint32_t)x);
    }
    ps_period_finish(p);
    return p;
}

static void
test_os_failures(void)
{
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    ps_period *p = large_period();
    ps_write_error err;
    int tmp;

    snprintf(path, sizeof(path), "%s/missing/p.json.gz", dir);
    CHECK(ps_writer_write(p, path, NULL, &err) == PS_EOS);
    CHECK(err.code == PS_EOS && err.os_errno == ENOENT);
    CHECK(strcmp(err.what, "open dir") == 0);

    snprintf(path, sizeof(path), "%s/p.json.gz", dir);
    struct rlimit saved, small;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    small = saved;
    small.rlim_cur = 256 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    CHECK(ps_writer_write(p, path, NULL, &err) == PS_EOS);
    CHECK(err.os_errno == EFBIG && strcmp(err.what, "write") == 0);
    CHECK(ps_test_dir_entries(dir, &tmp) == 0 && tmp == 0);
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    signal(SIGXFSZ, old_handler);

    CHECK(ps_writer_write(p, path, NULL, &err) == PS_OK);
    size_t len;
    char *text = ps_test_gunzip(path, &len);
    CHECK(text != NULL && len > 2000000 && text[len - 1] == '}');
    free(text);
    CHECK(ps_test_dir_entries(dir, &tmp) == 1 && tmp == 0);
    ps_period_free(p);
    ps_test_rmdir(dir);
}

static int
stop_now(void *ctx)
{
    return ++*(int *)ctx >= 3;
}

static int
replay(const char *text, const ps_json_rules *rules, yajl_gen gen,
       int (*stop)(void *), void *stop_ctx)
{
    return ps_json_replay(text, strlen(text), rules, gen, stop, stop_ctx);
}

static void
test_json_replay(void)
{
    static const char *const reserved[] = {"pid"};
    ps_json_rules members = {1, reserved, 1, 4}, array = {0, NULL, 0, 4};
    const unsigned char *out;
    size_t len;

    yajl_gen gen = yajl_gen_alloc(NULL);
    yajl_gen_map_open(gen);
    yajl_gen_string(gen, (const unsigned char *)"own", 3);
    yajl_gen_integer(gen, 1);
    CHECK(replay("{\"a\": [true, 2.50], \"b\": {\"pid\": \"ok\"}}", &members, gen, NULL, NULL) == PS_OK);
    yajl_gen_map_close(gen);
    yajl_gen_get_buf(gen, &out, &len);
    static const char expected[] = "{\"own\":1,\"a\":[true,2.50],\"b\":{\"pid\":\"ok\"}}";
    CHECK(len == strlen(expected) && memcmp(out, expected, len) == 0);
    yajl_gen_free(gen);

    /* Rules: shape, reserved keys at the top only, depth. */
    CHECK(replay("{\"pid\": 1}", &members, NULL, NULL, NULL) == PS_EJSON);
    CHECK(replay("[]", &members, NULL, NULL, NULL) == PS_EJSON);
    CHECK(replay("{}", &array, NULL, NULL, NULL) == PS_EJSON);
    CHECK(replay("[[[[]]]]", &array, NULL, NULL, NULL) == PS_OK);
    CHECK(replay("[[[[[]]]]]", &array, NULL, NULL, NULL) == PS_EJSON);

    /* stop() ends the replay early: the writer's file failed. */
    int calls = 0;
    gen = yajl_gen_alloc(NULL);
    CHECK(replay("[1, 2, 3, 4, 5]", &array, gen, stop_now, &calls) == PS_ESTATE);
    CHECK(calls == 3);
    yajl_gen_free(gen);
}

int
main(void)
{
    RUN(test_json_replay);
    RUN(test_exact_document);
    RUN(test_defaults_and_frequency);
    RUN(test_bad_embedded_json);
    RUN(test_os_failures);
    return ps_test_failures != 0;
}
