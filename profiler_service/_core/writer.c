/* The profile file writer: see ps_writer.h and docs/FORMAT.md. The document
 * is generated section by section straight from the period's vectors through
 * ps_jsonout (jsonout.c) into a ps_gzfile, so memory stays bounded by fixed
 * buffers whatever the period's size. The output's error is sticky and
 * checked after each section (and every few thousand values inside one). */
#define _GNU_SOURCE
#include "ps_writer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ps_error.h"
#include "ps_gzfile.h"
#include "ps_jsonout.h"
#include "ps_jsonreplay.h"
#include "ps_procstat.h"

/* Values emitted between two checks of the sticky errors inside a section. */
#define CHECK_EVERY 4096u

/* Nesting allowed in meta_json and builds_json. */
#define MAX_EMBEDDED_DEPTH 100u

/* ---- embedded JSON rules (meta_json, builds_json) -------------------------- */

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

/* ---- sections ------------------------------------------------------------ */

static void
put_utc(ps_jsonout *w, int64_t unix_ms)
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
    ps_jsonout_str(w, text, n);
}

/* "100", "12.5": millihertz as a decimal, without the locale (a ',' decimal
 * separator would make invalid JSON) and without binary rounding. */
static void
put_frequency(ps_jsonout *w, uint64_t mhz)
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
    ps_jsonout_number(w, text, (size_t)n);
}

static void
put_meta(ps_jsonout *w, const ps_period *p, const ps_write_options *options)
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

    ps_jsonout_cstr(w, "meta");
    ps_jsonout_begin_map(w);
    ps_jsonout_key_int(w, "start_ms", p->start_unix_ms);
    ps_jsonout_key_int(w, "end_ms", end_ms);
    ps_jsonout_cstr(w, "start_utc");
    put_utc(w, p->start_unix_ms);
    ps_jsonout_cstr(w, "end_utc");
    put_utc(w, end_ms);
    ps_jsonout_cstr(w, "mode");
    ps_jsonout_cstr(w, ps_mode_name(p->mode));
    ps_jsonout_cstr(w, "frequency");
    put_frequency(w, p->frequency_mhz);
    ps_jsonout_key_u64(w, "max_depth", p->max_depth);
    ps_jsonout_key_int(w, "pid", p->pid);
    ps_jsonout_cstr(w, "weight_unit");
    ps_jsonout_cstr(w, "us");
    ps_jsonout_cstr(w, "hostname");
    ps_jsonout_cstr(w, host);
    ps_jsonout_key_int(w, "cpu_count", cpus > 0 ? cpus : 1);
    ps_jsonout_key_u64(w, "ram_kb", ps_ram_kb());
    if (options->meta_json != NULL) {
        ps_jsonout_embedded(w, options->meta_json, options->meta_len, &meta_rules);
    }
    ps_jsonout_end_map(w);
}

static void
put_stats(ps_jsonout *w, const ps_stats *s)
{
    ps_jsonout_cstr(w, "stats");
    ps_jsonout_begin_map(w);
    ps_jsonout_key_u64(w, "ticks", s->ticks);
    ps_jsonout_key_u64(w, "missed", s->missed);
    ps_jsonout_key_u64(w, "samples", s->samples);
    ps_jsonout_key_u64(w, "idle", s->idle);
    ps_jsonout_key_u64(w, "truncated", s->truncated);
    ps_jsonout_key_u64(w, "dropped", s->dropped);
    ps_jsonout_key_u64(w, "sampling_ns", s->sampling_ns);
    ps_jsonout_key_u64(w, "signal_lost", s->signal_lost);
    ps_jsonout_end_map(w);
}

static void
put_threads(ps_jsonout *w, const ps_period *p)
{
    ps_jsonout_cstr(w, "threads");
    ps_jsonout_begin_array(w);
    for (size_t i = 0; i < p->threads.len && !ps_jsonout_failed(w); i++) {
        const ps_thread *t = ps_vec_at(&p->threads, i);
        ps_jsonout_begin_map(w);
        ps_jsonout_key_u64(w, "ident", t->ident);
        ps_jsonout_key_u64(w, "native_id", t->native_id);
        ps_jsonout_cstr(w, "name");
        ps_jsonout_cstr(w, t->name);
        ps_jsonout_key_u64(w, "samples", t->samples);
        ps_jsonout_key_u64(w, "weight", t->weight_us);
        ps_jsonout_end_map(w);
    }
    ps_jsonout_end_array(w);
}

static void
put_files(ps_jsonout *w, const ps_stacks *s)
{
    uint32_t n = ps_strtab_count(&s->files);
    ps_jsonout_cstr(w, "files");
    ps_jsonout_begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !ps_jsonout_failed(w)); i++) {
        const ps_str *file = ps_strtab_get(&s->files, i);
        ps_jsonout_str(w, file->ptr, file->len);
    }
    ps_jsonout_end_array(w);
}

static void
put_frames(ps_jsonout *w, const ps_stacks *s)
{
    uint32_t n = ps_stacks_frame_count(s);
    ps_jsonout_cstr(w, "frames");
    ps_jsonout_begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !ps_jsonout_failed(w)); i++) {
        const ps_frame *f = ps_stacks_frame_at(s, i);
        const ps_str *name = ps_strtab_get(&s->names, f->name);
        ps_jsonout_begin_array(w);
        ps_jsonout_str(w, name->ptr, name->len);
        ps_jsonout_int(w, f->file);
        ps_jsonout_int(w, f->line);
        ps_jsonout_end_array(w);
    }
    ps_jsonout_end_array(w);
}

static void
put_stacks(ps_jsonout *w, const ps_stacks *s)
{
    uint32_t n = ps_stacks_node_count(s);
    ps_jsonout_cstr(w, "stacks");
    ps_jsonout_begin_map(w);
    ps_jsonout_cstr(w, "parent");
    ps_jsonout_begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !ps_jsonout_failed(w)); i++) {
        uint32_t parent = ps_stacks_node(s, i)->parent;
        ps_jsonout_int(w, parent == PS_NO_PARENT ? -1 : (long long)parent);
    }
    ps_jsonout_end_array(w);
    ps_jsonout_cstr(w, "frame");
    ps_jsonout_begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !ps_jsonout_failed(w)); i++) {
        ps_jsonout_int(w, ps_stacks_node(s, i)->frame);
    }
    ps_jsonout_end_array(w);
    ps_jsonout_cstr(w, "line");  /* format version 3 */
    ps_jsonout_begin_array(w);
    for (uint32_t i = 0; i < n && (i % CHECK_EVERY || !ps_jsonout_failed(w)); i++) {
        ps_jsonout_int(w, ps_stacks_node(s, i)->line);
    }
    ps_jsonout_end_array(w);
    ps_jsonout_end_map(w);
}

enum { COL_DT, COL_THREAD, COL_STACK, COL_WEIGHT };

/* One column of the samples: four passes over the chunked vector keep the
 * output columnar without a copy of the samples. */
static void
put_sample_column(ps_jsonout *w, const ps_vec *samples, int column)
{
    uint32_t previous = 0;
    ps_jsonout_begin_array(w);
    for (size_t i = 0; i < samples->len && (i % CHECK_EVERY || !ps_jsonout_failed(w));
         i++) {
        const ps_sample *s = ps_vec_at(samples, i);
        switch (column) {
        case COL_DT:
            /* t_ms never decreases; guard anyway so dt stays >= 0. */
            ps_jsonout_int(w, s->t_ms > previous ? s->t_ms - previous : 0);
            if (s->t_ms > previous) {
                previous = s->t_ms;
            }
            break;
        case COL_THREAD:
            ps_jsonout_int(w, s->thread);
            break;
        case COL_STACK:
            ps_jsonout_int(w, s->node);
            break;
        default:
            ps_jsonout_int(w, s->weight_us);
            break;
        }
    }
    ps_jsonout_end_array(w);
}

static void
put_samples(ps_jsonout *w, const ps_period *p)
{
    static const char *const names[] = {"dt", "thread", "stack", "weight"};
    ps_jsonout_cstr(w, "samples");
    ps_jsonout_begin_map(w);
    for (int column = COL_DT; column <= COL_WEIGHT && !ps_jsonout_failed(w); column++) {
        ps_jsonout_cstr(w, names[column]);
        put_sample_column(w, &p->samples, column);
    }
    ps_jsonout_end_map(w);
}

static void
put_load(ps_jsonout *w, const ps_period *p)
{
    ps_jsonout_cstr(w, "load");
    ps_jsonout_begin_map(w);
    ps_jsonout_cstr(w, "t");
    ps_jsonout_begin_array(w);
    for (size_t i = 0; i < p->load.len; i++) {
        ps_jsonout_int(w, ((const ps_load *)ps_vec_at(&p->load, i))->t_ms);
    }
    ps_jsonout_end_array(w);
    ps_jsonout_cstr(w, "cpu_permille");
    ps_jsonout_begin_array(w);
    for (size_t i = 0; i < p->load.len; i++) {
        ps_jsonout_int(w, ((const ps_load *)ps_vec_at(&p->load, i))->cpu_permille);
    }
    ps_jsonout_end_array(w);
    ps_jsonout_cstr(w, "rss_kb");
    ps_jsonout_begin_array(w);
    for (size_t i = 0; i < p->load.len; i++) {
        ps_jsonout_u64(w, ((const ps_load *)ps_vec_at(&p->load, i))->rss_kb);
    }
    ps_jsonout_end_array(w);
    ps_jsonout_end_map(w);
}

/* ---- stalls (format version 2) --------------------------------------------- */

enum { STALL_T, STALL_THREAD, STALL_STACK, STALL_BUSY_THREAD, STALL_BUSY_STACK };

static long long
stall_column(const ps_stall_sample *s, int column)
{
    switch (column) {
    case STALL_T:
        return s->t_ms;
    case STALL_THREAD:
        return s->main_thread == PS_STALL_NO_THREAD ? -1 : s->main_thread;
    case STALL_STACK:
        return s->main_node == PS_STALL_NONE ? -1 : (long long)s->main_node;
    case STALL_BUSY_THREAD:
        return s->busy_thread == PS_STALL_NO_THREAD ? -1 : s->busy_thread;
    default:
        return s->busy_node == PS_STALL_NONE ? -1 : (long long)s->busy_node;
    }
}

static void
put_stall(ps_jsonout *w, const ps_period *p, const ps_stall *s)
{
    static const char *const columns[] = {"t", "thread", "stack", "busy_thread",
                                          "busy_stack"};
    /* Floor division: a stall that began before the period has start < 0. */
    int64_t offset_ns = s->start_mono_ns - p->start_mono_ns;
    int64_t start_ms = offset_ns >= 0 ? offset_ns / 1000000
                                      : -((-offset_ns + 999999) / 1000000);
    ps_jsonout_begin_map(w);
    ps_jsonout_key_int(w, "start", start_ms);
    ps_jsonout_key_int(w, "duration_us", (s->duration_ns + 500) / 1000);
    ps_jsonout_key_int(w, "sampled_us", (s->sampled_ns + 500) / 1000);
    ps_jsonout_key_int(w, "main_cpu_us", (s->main_cpu_ns + 500) / 1000);
    ps_jsonout_key_u64(w, "samples_dropped", s->samples_dropped);
    ps_jsonout_cstr(w, "samples");
    ps_jsonout_begin_map(w);
    for (int c = 0; c < 5; c++) {
        ps_jsonout_cstr(w, columns[c]);
        ps_jsonout_begin_array(w);
        for (uint32_t i = 0; i < s->n_samples; i++) {
            ps_jsonout_int(w, stall_column(&s->samples[i], c));
        }
        ps_jsonout_end_array(w);
    }
    ps_jsonout_end_map(w);
    ps_jsonout_end_map(w);
}

static void
put_stalls(ps_jsonout *w, const ps_period *p)
{
    const ps_stall_list *l = &p->stalls;
    size_t order[PS_MAX_STALLS];

    /* In time order (the list replaces its shortest when full). */
    for (size_t i = 0; i < l->len; i++) {
        size_t j = i;
        while (j > 0 && l->items[order[j - 1]].start_mono_ns > l->items[i].start_mono_ns) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    ps_jsonout_cstr(w, "stalls");
    ps_jsonout_begin_map(w);
    ps_jsonout_key_int(w, "threshold_us", (l->threshold_ns + 500) / 1000);
    ps_jsonout_key_u64(w, "dropped", l->dropped);
    ps_jsonout_cstr(w, "items");
    ps_jsonout_begin_array(w);
    for (size_t i = 0; i < l->len && !ps_jsonout_failed(w); i++) {
        put_stall(w, p, &l->items[order[i]]);
    }
    ps_jsonout_end_array(w);
    ps_jsonout_end_map(w);
}

static void
put_builds(ps_jsonout *w, const ps_write_options *options)
{
    ps_jsonout_cstr(w, "builds");
    if (options->builds_json != NULL) {
        ps_jsonout_embedded(w, options->builds_json, options->builds_len,
                     &builds_rules);
    }
    else {
        ps_jsonout_begin_array(w);
        ps_jsonout_end_array(w);
    }
}

/* ---- the document --------------------------------------------------------- */

static void
put_document(ps_jsonout *w, const ps_period *p, const ps_write_options *options)
{
    ps_jsonout_begin_map(w);
    ps_jsonout_cstr(w, "format");
    ps_jsonout_cstr(w, "buildbot-profiler");
    ps_jsonout_key_int(w, "version", 3);
    put_meta(w, p, options);
    if (ps_jsonout_failed(w)) {
        return;
    }
    put_stats(w, &p->stats);
    put_threads(w, p);
    if (ps_jsonout_failed(w)) {
        return;
    }
    put_files(w, &p->stacks);
    if (ps_jsonout_failed(w)) {
        return;
    }
    put_frames(w, &p->stacks);
    if (ps_jsonout_failed(w)) {
        return;
    }
    put_stacks(w, &p->stacks);
    if (ps_jsonout_failed(w)) {
        return;
    }
    put_samples(w, p);
    if (ps_jsonout_failed(w)) {
        return;
    }
    put_load(w, p);
    if (ps_jsonout_failed(w)) {
        return;
    }
    put_stalls(w, p);
    if (ps_jsonout_failed(w)) {
        return;
    }
    put_builds(w, options);
    ps_jsonout_end_map(w);
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
    ps_jsonout w = {0};
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
    ps_gzfile *file = NULL;
    rc = ps_gzfile_open(path, options->level, 0, &file, &os_errno, &step);
    if (rc < 0) {
        set_result(err, rc, os_errno, step);
        return rc;
    }
    if (ps_jsonout_open(&w, file) < 0) {
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
    ps_jsonout_close(&w);
    ps_gzfile_close(file);
    return rc;
}
