/* The profile file writer: see ps_writer.h and docs/FORMAT.md. yajl generates
 * the document section by section straight from the period's vectors into a
 * ps_gzfile, so memory stays bounded by fixed buffers whatever the period's
 * size. yajl's print callback cannot fail, so the sink's error is sticky and
 * checked after each section (and every few thousand values inside one). */
#define _GNU_SOURCE
#include "ps_writer.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "ps_error.h"
#include "ps_gzfile.h"
#include "ps_jsonreplay.h"
#include "ps_procstat.h"

/* Values emitted between two checks of the sticky errors inside a section. */
#define CHECK_EVERY 4096u

/* Nesting allowed in meta_json and builds_json. */
#define MAX_EMBEDDED_DEPTH 100u

typedef struct {
    yajl_gen gen;       /* Owned */
    ps_gzfile *file;    /* Owned */
    int code;           /* sticky PS_E* of the generator side */
    const char *what;   /* its step */
    char *scratch;      /* Owned: UTF-8 repair buffer, grown on demand */
    size_t scratch_cap;
} writer;

/* ---- sticky errors -------------------------------------------------------- */

static void
set_error(writer *w, int code, const char *what)
{
    if (w->code == 0) {
        w->code = code;
        w->what = what;
    }
}

static void
gen_ok(writer *w, yajl_gen_status status)
{
    if (status != yajl_gen_status_ok) {
        set_error(w, PS_EJSON, "generate");
    }
}

/* Nonzero once anything failed: the generator or the file. */
static int
failed(const writer *w)
{
    return w->code != 0 || ps_gzfile_error(w->file, NULL, NULL) != 0;
}

static void
print_to_file(void *ctx, const char *s, size_t len)
{
    ps_gzfile_write((ps_gzfile *)ctx, s, len);
}

/* ---- values ------------------------------------------------------------- */

/* Length of the valid UTF-8 character at s[0..len), or 0 if it is not one
 * (overlong forms and surrogates included). */
static size_t
utf8_char(const unsigned char *s, size_t len)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80) {
        return 1;
    }
    else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, min = 0x80;
    }
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, min = 0x800;
    }
    else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, min = 0x10000;
    }
    else {
        return 0;
    }
    if (len < n) {
        return 0;
    }
    unsigned cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return n;
}

/* A string, with invalid UTF-8 (a thread name cut mid-character, a file
 * name in another encoding) replaced by U+FFFD so any JSON reader loads it. */
static void
put_str(writer *w, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_char(u + i, len - i);
        if (n == 0) {
            break;
        }
        i += n;
    }
    if (i == len) {
        gen_ok(w, yajl_gen_string(w->gen, u, len));
        return;
    }
    if (len > (SIZE_MAX - 3) / 3) {
        set_error(w, PS_ENOMEM, "generate");
        return;
    }
    if (w->scratch_cap < 3 * len) {
        char *grown = realloc(w->scratch, 3 * len);
        if (grown == NULL) {
            set_error(w, PS_ENOMEM, "generate");
            return;
        }
        w->scratch = grown;
        w->scratch_cap = 3 * len;
    }
    size_t out = 0;
    for (i = 0; i < len;) {
        size_t n = utf8_char(u + i, len - i);
        if (n == 0) {
            memcpy(w->scratch + out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        }
        else {
            memcpy(w->scratch + out, u + i, n);
            out += n;
            i += n;
        }
    }
    gen_ok(w, yajl_gen_string(w->gen, (const unsigned char *)w->scratch, out));
}

static void
put_cstr(writer *w, const char *s)
{
    put_str(w, s, strlen(s));
}

static void
put_int(writer *w, long long value)
{
    gen_ok(w, yajl_gen_integer(w->gen, value));
}

/* Thread idents are pointers: they may not fit a long long. */
static void
put_u64(writer *w, uint64_t value)
{
    if (value <= (uint64_t)LLONG_MAX) {
        put_int(w, (long long)value);
        return;
    }
    char text[24];
    int n = snprintf(text, sizeof(text), "%llu", (unsigned long long)value);
    gen_ok(w, yajl_gen_number(w->gen, text, (size_t)n));
}

static void
put_key_int(writer *w, const char *key, long long value)
{
    put_cstr(w, key);
    put_int(w, value);
}

static void
put_key_u64(writer *w, const char *key, uint64_t value)
{
    put_cstr(w, key);
    put_u64(w, value);
}

static void
begin_map(writer *w)
{
    gen_ok(w, yajl_gen_map_open(w->gen));
}

static void
end_map(writer *w)
{
    gen_ok(w, yajl_gen_map_close(w->gen));
}

static void
begin_array(writer *w)
{
    gen_ok(w, yajl_gen_array_open(w->gen));
}

static void
end_array(writer *w)
{
    gen_ok(w, yajl_gen_array_close(w->gen));
}

/* ---- embedded JSON (meta_json, builds_json) -------------------------------- */

/* The members meta gets from the writer itself; the caller may not repeat
 * them (a reader would see two values). */
static const char *const own_meta_keys[] = {
    "start_ms", "end_ms", "start_utc", "end_utc", "mode", "frequency",
    "max_depth", "weight_unit", "pid", "hostname", "cpu_count", "ram_kb",
};

static const ps_json_rules meta_rules = {
    1, own_meta_keys, sizeof(own_meta_keys) / sizeof(*own_meta_keys),
    MAX_EMBEDDED_DEPTH,
};

static const ps_json_rules builds_rules = {0, NULL, 0, MAX_EMBEDDED_DEPTH};

static int
replay_should_stop(void *ctx)
{
    return failed((const writer *)ctx);
}

/* Replay `text` into the document; the texts were validated up front, so a
 * failure here is the file's (reported by failed()) or the generator's. */
static void
put_embedded(writer *w, const char *text, size_t len,
             const ps_json_rules *rules)
{
    int rc = ps_json_replay(text, len, rules, w->gen, replay_should_stop, w);
    if (rc < 0 && !failed(w)) {
        set_error(w, rc == PS_ENOMEM ? PS_ENOMEM : PS_EJSON, "generate");
    }
}

/* ---- sections ------------------------------------------------------------ */

static void
put_utc(writer *w, int64_t unix_ms)
{
    time_t seconds = (time_t)(unix_ms / 1000);
    struct tm tm;
    char text[32];
    size_t n = 0;
    if (gmtime_r(&seconds, &tm) != NULL) {
        n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    if (n == 0) {
        n = (size_t)snprintf(text, sizeof(text), "1970-01-01T00:00:00Z");
    }
    put_str(w, text, n);
}

/* "100", "12.5": millihertz as a decimal, without the locale (a ',' decimal
 * separator would make invalid JSON) and without binary rounding. */
static void
put_frequency(writer *w, uint64_t mhz)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%llu",
                     (unsigned long long)(mhz / 1000));
    unsigned frac = (unsigned)(mhz % 1000);
    if (frac != 0) {
        n += snprintf(text + n, sizeof(text) - (size_t)n, ".%03u", frac);
        while (text[n - 1] == '0') {
            n--;
        }
    }
    gen_ok(w, yajl_gen_number(w->gen, text, (size_t)n));
}

static void
put_meta(writer *w, const ps_period *p, const ps_write_options *options)
{
    int64_t end_ms = p->end_unix_ms != 0
                         ? p->end_unix_ms
                         : p->start_unix_ms + ps_period_duration_ms(p);
    char host[256];
    if (gethostname(host, sizeof(host)) < 0) {
        host[0] = '\0';
    }
    host[sizeof(host) - 1] = '\0';
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    put_cstr(w, "meta");
    begin_map(w);
    put_key_int(w, "start_ms", p->start_unix_ms);
    put_key_int(w, "end_ms", end_ms);
    put_cstr(w, "start_utc");
    put_utc(w, p->start_unix_ms);
    put_cstr(w, "end_utc");
    put_utc(w, end_ms);
    put_cstr(w, "mode");
    put_cstr(w, ps_mode_name(p->mode));
    put_cstr(w, "frequency");
    put_frequency(w, p->frequency_mhz);
    put_key_u64(w, "max_depth", p->max_depth);
    put_key_int(w, "pid", p->pid);
    put_cstr(w, "weight_unit");
    put_cstr(w, "us");
    put_cstr(w, "hostname");
    put_cstr(w, host);
    put_key_int(w, "cpu_count", cpus > 0 ? cpus : 1);
    put_key_u64(w, "ram_kb", ps_ram_kb());
    if (options->meta_json != NULL) {
        put_embedded(w, options->meta_json, options->meta_len, &meta_rules);
    }
    end_map(w);
}

static void
put_stats(writer *w, const ps_stats *s)
{
    put_cstr(w, "stats");
    begin_map(w);
    put_key_u64(w, "ticks", s->ticks);
    put_key_u64(w, "missed", s->missed);
    put_key_u64(w, "samples", s->samples);
    put_key_u64(w, "idle", s->idle);
    put_key_u64(w, "truncated", s->truncated);
    put_key_u64(w, "dropped", s->dropped);
    put_key_u64(w, "sampling_ns", s->sampling_ns);
    put_key_u64(w, "signal_lost", s->signal_lost);
    end_map(w);
}

static void
put_threads(writer *w, const ps_period *p)
{
    put_cstr(w, "threads");
    begin_array(w);
    for (size_t i = 0; i < p->threads.len && !failed(w); i++) {
        const ps_thread *t = ps_vec_at(&p->threads, i);
        begin_map(w);
        put_key_u64(w, "ident", t->ident);
        put_key_u64(w, "native_id", t->native_id);
        put_cstr(w, "name");
        put_cstr(w, t->name);
        put_key_u64(w, "samples", t->samples);
        put_key_u64(w, "weight", t->weight_us);
        end_map(w);
    }
    end_array(w);
}

static void
put_files(writer *w, const ps_stacks *s)
{
    uint32_t n = ps_strtab_count(&s->files);
    put_cstr(w, "files");
    begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !failed(w)); i++) {
        const ps_str *file = ps_strtab_get(&s->files, i);
        put_str(w, file->ptr, file->len);
    }
    end_array(w);
}

static void
put_frames(writer *w, const ps_stacks *s)
{
    uint32_t n = ps_stacks_frame_count(s);
    put_cstr(w, "frames");
    begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !failed(w)); i++) {
        const ps_frame *f = ps_stacks_frame_at(s, i);
        const ps_str *name = ps_strtab_get(&s->names, f->name);
        begin_array(w);
        put_str(w, name->ptr, name->len);
        put_int(w, f->file);
        put_int(w, f->line);
        end_array(w);
    }
    end_array(w);
}

static void
put_stacks(writer *w, const ps_stacks *s)
{
    uint32_t n = ps_stacks_node_count(s);
    put_cstr(w, "stacks");
    begin_map(w);
    put_cstr(w, "parent");
    begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !failed(w)); i++) {
        uint32_t parent = ps_stacks_node(s, i)->parent;
        put_int(w, parent == PS_NO_PARENT ? -1 : (long long)parent);
    }
    end_array(w);
    put_cstr(w, "frame");
    begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !failed(w)); i++) {
        put_int(w, ps_stacks_node(s, i)->frame);
    }
    end_array(w);
    end_map(w);
}

enum { COL_DT, COL_THREAD, COL_STACK, COL_WEIGHT };

/* One column of the samples: four passes over the chunked vector keep the
 * output columnar without a copy of the samples. */
static void
put_sample_column(writer *w, const ps_vec *samples, int column)
{
    uint32_t previous = 0;
    begin_array(w);
    for (size_t i = 0; i < samples->len && (i % CHECK_EVERY || !failed(w));
         i++) {
        const ps_sample *s = ps_vec_at(samples, i);
        switch (column) {
        case COL_DT:
            /* t_ms never decreases; guard anyway so dt stays >= 0. */
            put_int(w, s->t_ms > previous ? s->t_ms - previous : 0);
            if (s->t_ms > previous) {
                previous = s->t_ms;
            }
            break;
        case COL_THREAD:
            put_int(w, s->thread);
            break;
        case COL_STACK:
            put_int(w, s->node);
            break;
        default:
            put_int(w, s->weight_us);
            break;
        }
    }
    end_array(w);
}

static void
put_samples(writer *w, const ps_period *p)
{
    static const char *const names[] = {"dt", "thread", "stack", "weight"};
    put_cstr(w, "samples");
    begin_map(w);
    for (int column = COL_DT; column <= COL_WEIGHT && !failed(w); column++) {
        put_cstr(w, names[column]);
        put_sample_column(w, &p->samples, column);
    }
    end_map(w);
}

static void
put_load(writer *w, const ps_period *p)
{
    put_cstr(w, "load");
    begin_map(w);
    put_cstr(w, "t");
    begin_array(w);
    for (size_t i = 0; i < p->load.len; i++) {
        put_int(w, ((const ps_load *)ps_vec_at(&p->load, i))->t_ms);
    }
    end_array(w);
    put_cstr(w, "cpu_permille");
    begin_array(w);
    for (size_t i = 0; i < p->load.len; i++) {
        put_int(w, ((const ps_load *)ps_vec_at(&p->load, i))->cpu_permille);
    }
    end_array(w);
    put_cstr(w, "rss_kb");
    begin_array(w);
    for (size_t i = 0; i < p->load.len; i++) {
        put_u64(w, ((const ps_load *)ps_vec_at(&p->load, i))->rss_kb);
    }
    end_array(w);
    end_map(w);
}

static void
put_builds(writer *w, const ps_write_options *options)
{
    put_cstr(w, "builds");
    if (options->builds_json != NULL) {
        put_embedded(w, options->builds_json, options->builds_len,
                     &builds_rules);
    }
    else {
        begin_array(w);
        end_array(w);
    }
}

/* ---- the document --------------------------------------------------------- */

static void
put_document(writer *w, const ps_period *p, const ps_write_options *options)
{
    begin_map(w);
    put_cstr(w, "format");
    put_cstr(w, "buildbot-profiler");
    put_key_int(w, "version", 1);
    put_meta(w, p, options);
    if (failed(w)) {
        return;
    }
    put_stats(w, &p->stats);
    put_threads(w, p);
    if (failed(w)) {
        return;
    }
    put_files(w, &p->stacks);
    if (failed(w)) {
        return;
    }
    put_frames(w, &p->stacks);
    if (failed(w)) {
        return;
    }
    put_stacks(w, &p->stacks);
    if (failed(w)) {
        return;
    }
    put_samples(w, p);
    if (failed(w)) {
        return;
    }
    put_load(w, p);
    if (failed(w)) {
        return;
    }
    put_builds(w, options);
    end_map(w);
}

static void
set_result(ps_write_error *err, int code, int os_errno, const char *what)
{
    err->code = code;
    err->os_errno = code == PS_EOS ? os_errno : 0;
    snprintf(err->what, sizeof(err->what), "%s", what ? what : "write");
}

int
ps_writer_write(const ps_period *period, const char *path,
                const ps_write_options *options, ps_write_error *err)
{
    static const ps_write_options no_options = {0};
    writer w = {0};
    int rc = 0, os_errno = 0;
    const char *step = NULL;

    memset(err, 0, sizeof(*err));
    if (options == NULL) {
        options = &no_options;
    }
    /* Bad embedded JSON is the caller's mistake: refuse it before touching
     * the disk. */
    if (options->meta_json != NULL &&
        (rc = ps_json_replay(options->meta_json, options->meta_len,
                             &meta_rules, NULL, NULL, NULL)) < 0) {
        set_result(err, rc, 0, "meta_json");
        return rc;
    }
    if (options->builds_json != NULL &&
        (rc = ps_json_replay(options->builds_json, options->builds_len,
                             &builds_rules, NULL, NULL, NULL)) < 0) {
        set_result(err, rc, 0, "builds_json");
        return rc;
    }
    rc = ps_gzfile_open(path, options->level, 0, &w.file, &os_errno, &step);
    if (rc < 0) {
        set_result(err, rc, os_errno, step);
        return rc;
    }
    if ((w.gen = yajl_gen_alloc(NULL)) == NULL ||
        !yajl_gen_config(w.gen, yajl_gen_print_callback, print_to_file,
                         w.file)) {
        set_error(&w, PS_ENOMEM, "generate");
        goto error;
    }
    put_document(&w, period, options);
    /* The file's own error comes first: a generator error after a failed
     * write is only its consequence. */
    if ((rc = ps_gzfile_error(w.file, &os_errno, &step)) < 0) {
        set_result(err, rc, os_errno, step);
        goto error;
    }
    if (w.code < 0) {
        goto error;
    }
    if ((rc = ps_gzfile_commit(w.file)) < 0) {
        ps_gzfile_error(w.file, &os_errno, &step);
        set_result(err, rc, os_errno, step);
        goto error;
    }
    rc = 0;
    goto done;

error:
    if (err->code == 0) {
        set_result(err, w.code, 0, w.what);
    }
    rc = err->code;
done:
    if (w.gen != NULL) {
        yajl_gen_free(w.gen);
    }
    ps_gzfile_close(w.file);
    free(w.scratch);
    return rc;
}
