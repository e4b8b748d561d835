/* Reactor stalls: every interval in which the reactor thread stayed out of
 * its poll for longer than the threshold, with wall-clock samples of what it
 * (and the thread busy on the CPU meanwhile) did.
 *
 * Design note. A stall is the time between the reactor's poll returning and
 * its next poll entry: that is when timers, I/O callbacks and everything
 * they call run, and when a long one freezes the web UI, the workers'
 * protocol and every build. The reactor marks both edges itself: its poller
 * call is wrapped once (watch_poll, installed by the service), and the
 * wrapper stores a CLOCK_MONOTONIC stamp in one atomic on exit (0 on entry)
 * and, on entry after an out-of-poll interval of at least the threshold,
 * pushes (start, duration) into a single-producer ring. That is two vDSO
 * clock reads and a compare per reactor iteration: no Python frame, no
 * callback, no wake-up. The sampler thread, which sleeps anyway, reads the
 * atomic without the GIL: while the reactor sits in its poll it looks again
 * every threshold / 2 (a wake-up of the sampler thread only; the reactor
 * sleeps on); once the reactor has been out for the threshold it takes the
 * GIL every 10 ms (100 Hz, whatever the service's frequency and mode) and
 * walks the reactor thread's stack, keeping its leaf frame even when it is a
 * waiting one. Stalls that burn CPU, that sleep in a system call with the GIL
 * released, and that wait for a GIL another thread holds all keep the
 * reactor out of its poll, so all three are seen: the CPU modes' ticks play
 * no part. For the third kind, the sampler reads every thread's CPU clock
 * (no GIL needed) before it asks for the GIL and again once it has it: the
 * thread that ran during that wait while the reactor did not held the GIL
 * (it is "busy"), and its stack is walked too. A thread can keep the GIL
 * that long only inside one C call (CPython hands it over every switch
 * interval, 5 ms, between bytecodes): the sampler then gets it once the
 * call has returned, after the other waiting threads had their turns (a
 * few switch intervals), most often with the busy thread still in the
 * function that made the call. A thread that went straight back to waiting
 * in that time is found waiting: the stall then names it as the holder but
 * shows its waiting stack (the walk cannot see the past, and reading a
 * stack without the GIL is not safe in-process). Duration comes from the
 * reactor's own stamps, exact to the clock; the samples start up to
 * threshold / 2 late, and a stall that ends before the sampler's next look
 * is recorded with no samples.
 *
 * All sampler-side state is touched with the GIL held, by the sampler thread
 * (or by stop(), after joining it). The detector is part of the one
 * process-wide sampler and shares its lifetime. */
#define _GNU_SOURCE
#include "stalldetect.h"

#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "ps_error.h"
#include "ps_procstat.h"
#include "sampler.h"

#define RING 64                        /* ended stalls the sampler has not seen */
#define SAMPLE_INTERVAL_NS 10000000LL  /* 100 Hz during a stall */
#define MAX_CPU_THREADS 128
#define TOP_FRAMES 6
#define TID_LIST_AGE_NS 1000000000LL

typedef struct {
    int64_t start_ns;
    int64_t duration_ns;
} stall_span;

typedef struct {
    uint64_t native_id;
    int64_t cpu_ns;
} thread_cpu;

typedef struct {
    /* Written by the reactor thread (any time, detector on or off). */
    atomic_llong out_since_ns;   /* its poll returned then; 0 = in its poll */
    stall_span ring[RING];
    atomic_ullong head;          /* reactor: next slot to write */
    atomic_ullong tail;          /* sampler: next slot to read */
    atomic_ullong ring_lost;     /* stalls the full ring could not take */
    atomic_llong threshold_ns;   /* 0 = detector off */
    /* The sampler side (GIL). */
    int64_t report_ns;
    uint64_t reactor_native_id;
    PyObject *on_stall;          /* Owned; NULL = no reports */
    int recording;               /* `current` is a stall in progress */
    ps_stall current;
    uint64_t current_gen;        /* period generation its nodes belong to */
    int64_t next_sample_ns;
    int64_t first_sample_ns;
    int64_t first_main_cpu_ns;
    int64_t last_sample_ns;
    int64_t last_main_cpu_ns;
    thread_cpu cpu[MAX_CPU_THREADS];  /* other threads' clocks before the GIL wait */
    size_t n_cpu;
    int64_t before_ns;           /* when they were read; 0 = not for this sample */
    int64_t before_main_cpu_ns;
    int64_t before_for;          /* the reactor was out of its poll since then */
    uint64_t tids[MAX_CPU_THREADS];  /* the process's threads, */
    size_t n_tids;
    int64_t tids_read_ns;        /* as listed then */
} ps_stall_detector;

static ps_stall_detector D;

/* ---- the reactor's side ----------------------------------------------------- */

static inline void
mark_poll_entry(void)
{
    int64_t now = ps_mono_ns();
    int64_t since = atomic_exchange_explicit(&D.out_since_ns, 0, memory_order_acq_rel);
    int64_t threshold = atomic_load_explicit(&D.threshold_ns, memory_order_relaxed);

    if (threshold <= 0 || since == 0 || now - since < threshold) {
        return;
    }
    unsigned long long head = atomic_load_explicit(&D.head, memory_order_relaxed);
    if (head - atomic_load_explicit(&D.tail, memory_order_acquire) >= RING) {
        atomic_fetch_add_explicit(&D.ring_lost, 1, memory_order_relaxed);
        return;
    }
    D.ring[head % RING] = (stall_span){.start_ns = since, .duration_ns = now - since};
    atomic_store_explicit(&D.head, head + 1, memory_order_release);
}

static inline void
mark_poll_exit(void)
{
    atomic_store_explicit(&D.out_since_ns, ps_mono_ns(), memory_order_release);
}

/* self: the wrapped poll callable (borrowed, kept alive by the function). */
static PyObject *
watched_poll(PyObject *poll, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    mark_poll_entry();
    PyObject *result = PyObject_Vectorcall(poll, args, (size_t)nargs, kwnames);
    mark_poll_exit();
    return result;
}

static PyMethodDef watched_poll_def = {
    "watched_poll", (PyCFunction)(void (*)(void))watched_poll,
    METH_FASTCALL | METH_KEYWORDS,
    "The reactor's poll, with its entry and exit marked for the stall detector."};

PyObject *
ps_stalls_watch_poll(PyObject *module, PyObject *poll)
{
    if (!PyCallable_Check(poll)) {
        PyErr_SetString(PyExc_TypeError, "watch_poll: poll must be callable");
        return NULL;
    }
    /* A poll that never ran is not a stall: start "in the poll". */
    return PyCFunction_NewEx(&watched_poll_def, poll, NULL);
}

/* ---- the sampler's side ----------------------------------------------------- */

int
ps_stalls_start(int64_t threshold_ns, int64_t report_ns,
                uint64_t reactor_native_id, PyObject *on_stall)
{
    ps_stall_clear(&D.current);
    D.recording = 0;
    D.before_for = D.before_ns = D.next_sample_ns = D.tids_read_ns = 0;
    D.report_ns = report_ns;
    D.reactor_native_id = reactor_native_id;
    Py_CLEAR(D.on_stall);
    if (on_stall != NULL && on_stall != Py_None) {
        if (!PyCallable_Check(on_stall)) {
            PyErr_SetString(PyExc_TypeError, "on_stall must be callable or None");
            return -1;
        }
        D.on_stall = Py_NewRef(on_stall);
    }
    /* Stalls that ended before this start are not ours, nor is the time
     * before it: a reactor out of its poll now (running this start) is out
     * from now on. */
    atomic_store(&D.tail, atomic_load(&D.head));
    int64_t since = 0;
    int64_t now = ps_mono_ns();
    while ((since = atomic_load(&D.out_since_ns)) != 0 &&
           !atomic_compare_exchange_weak(&D.out_since_ns, &since, now)) {
    }
    atomic_store(&D.ring_lost, 0);
    atomic_store(&D.threshold_ns, reactor_native_id != 0 ? threshold_ns : 0);
    return 0;
}

int64_t
ps_stalls_deadline(int64_t now_ns, int64_t deadline_ns)
{
    int64_t threshold = atomic_load_explicit(&D.threshold_ns, memory_order_relaxed);
    int64_t next;

    if (threshold <= 0) {
        return deadline_ns;
    }
    int64_t since = atomic_load_explicit(&D.out_since_ns, memory_order_acquire);
    if (atomic_load(&D.head) != atomic_load(&D.tail)) {
        next = now_ns;
    }
    else if (since == 0) {
        next = now_ns + threshold / 2;  /* in its poll: look again later */
    }
    else if (now_ns - since < threshold) {
        next = since + threshold;       /* out: a stall from then on */
    }
    else {
        next = D.next_sample_ns > now_ns ? D.next_sample_ns : now_ns;
    }
    return next < deadline_ns ? next : deadline_ns;
}

/* Before the sampler waits for the GIL while the reactor is out of its
 * poll (without the GIL): every other thread's CPU clock and the
 * reactor's, so that a stall sample taken once it has the GIL can tell who
 * ran meanwhile. The thread list (a directory read, ~20 us) is refreshed
 * once a second, and at each sample of a stall (a thread started by the
 * stall's callback may be the one that holds the GIL); a clock read costs
 * ~0.5 us. Lock-free. */
static void
read_clocks_before(int64_t now_ns, int64_t since_ns, int in_stall)
{
    if (in_stall || now_ns - D.tids_read_ns > TID_LIST_AGE_NS) {
        int n = ps_process_tids(D.tids, MAX_CPU_THREADS);
        D.n_tids = n < 0 ? 0 : (size_t)n;
        D.tids_read_ns = now_ns;
    }
    pid_t self = gettid();
    D.n_cpu = 0;
    for (size_t i = 0; i < D.n_tids; i++) {
        if (D.tids[i] == D.reactor_native_id || D.tids[i] == (uint64_t)self) {
            continue;
        }
        int64_t cpu = ps_thread_cpu_ns(D.tids[i]);
        if (cpu >= 0) {
            D.cpu[D.n_cpu++] = (thread_cpu){.native_id = D.tids[i], .cpu_ns = cpu};
        }
    }
    D.before_main_cpu_ns = ps_thread_cpu_ns(D.reactor_native_id);
    D.before_ns = ps_mono_ns();
    D.before_for = since_ns;
}

int
ps_stalls_due(int64_t now_ns, int taking_gil)
{
    int64_t threshold = atomic_load_explicit(&D.threshold_ns, memory_order_relaxed);
    if (threshold <= 0) {
        return 0;
    }
    int64_t since = atomic_load_explicit(&D.out_since_ns, memory_order_acquire);
    int in_stall = since != 0 && now_ns - since >= threshold;
    int sample_due = in_stall && now_ns >= D.next_sample_ns;
    if (sample_due || (since != 0 && taking_gil)) {
        /* A walk's wait for the GIL may outlast the threshold: measure it. */
        read_clocks_before(now_ns, since, in_stall);
        return 1;
    }
    return atomic_load(&D.head) != atomic_load(&D.tail);
}

/* The thread that held the GIL while the sampler waited for it, or 0: the
 * other thread that ran the most during that wait, if it ran for a fifth of
 * it at least and for more than twice the reactor did (with the GIL held,
 * that is who held it; on a loaded machine a thread gets less than all of
 * a core, hence not "more than half"). A wait under a millisecond (the GIL
 * was free) names nobody. */
static uint64_t
busy_thread(int64_t now_ns, int64_t main_cpu_ns)
{
    int64_t waited = now_ns - D.before_ns;
    int64_t main_ran = main_cpu_ns - D.before_main_cpu_ns;
    uint64_t busiest = 0;
    int64_t most = 0;

    if (D.before_ns == 0 || waited < 1000000) {
        return 0;
    }
    for (size_t i = 0; i < D.n_cpu; i++) {
        int64_t ran = ps_thread_cpu_ns(D.cpu[i].native_id) - D.cpu[i].cpu_ns;
        if (ran > most) {
            most = ran;
            busiest = D.cpu[i].native_id;
        }
    }
    return most * 5 >= waited && most > 2 * main_ran ? busiest : 0;
}

/* Start recording the stall that began at `start_ns`, in the active period. */
static void
begin_stall(int64_t start_ns)
{
    ps_stall_clear(&D.current);
    D.current.start_mono_ns = start_ns;
    D.current_gen = S.walker.period_gen;
    D.recording = 1;
    D.first_sample_ns = D.last_sample_ns = 0;
}

/* One sample of the stall being recorded. `reactor_still_out`: the stall
 * the sample is for goes on; else it ended while the sampler waited for the
 * GIL, and only who held the GIL meanwhile belongs to it. */
static void
take_sample(int64_t now_ns, int reactor_still_out)
{
    ps_stall_sample sample = {
        .t_ms = (uint32_t)((now_ns - D.current.start_mono_ns) / 1000000),
        .main_node = PS_STALL_NONE,
        .busy_node = PS_STALL_NONE,
        .main_thread = PS_STALL_NO_THREAD,
        .busy_thread = PS_STALL_NO_THREAD,
    };
    int64_t main_cpu = ps_thread_cpu_ns(D.reactor_native_id);
    uint64_t busy = busy_thread(now_ns, main_cpu);
    D.before_ns = 0;

    if (D.first_sample_ns == 0) {
        D.first_sample_ns = now_ns;
        D.first_main_cpu_ns = main_cpu;
    }
    D.last_sample_ns = now_ns;
    D.last_main_cpu_ns = main_cpu;
    D.current.sampled_ns = now_ns - D.first_sample_ns;
    D.current.main_cpu_ns = main_cpu - D.first_main_cpu_ns;

    if (!reactor_still_out && busy == 0) {
        return;
    }
    if (reactor_still_out &&
        ps_walker_thread_stack(&S.walker, D.reactor_native_id, &sample.main_thread,
                             &sample.main_node) < 0) {
        sample.main_thread = PS_STALL_NO_THREAD;
        sample.main_node = PS_STALL_NONE;
    }
    if (busy != 0 &&
        ps_walker_thread_stack(&S.walker, busy, &sample.busy_thread, &sample.busy_node) < 0) {
        sample.busy_thread = PS_STALL_NO_THREAD;
        sample.busy_node = PS_STALL_NONE;
    }
    if (S.walker.period_gen != D.current_gen) {
        /* A walk ran Python code that rotated: older nodes are another
         * period's. Keep the stall, restart its samples. */
        int64_t start = D.current.start_mono_ns;
        begin_stall(start);
        return;
    }
    ps_stall_add_sample(&D.current, &sample);
}

/* Append "file\tname\n" for each frame from `node` to the root, leaf first,
 * at most TOP_FRAMES of them. Calls no Python code. */
static size_t
describe_stack(const ps_period *p, uint32_t node, char *out, size_t cap, size_t len)
{
    for (int depth = 0; node != PS_STALL_NONE && node != PS_NO_PARENT &&
                        node < ps_stacks_node_count(&p->stacks) && depth < TOP_FRAMES;
         depth++) {
        const ps_node *n = ps_stacks_node(&p->stacks, node);
        const ps_frame *f = ps_stacks_frame_at(&p->stacks, n->frame);
        const ps_str *name = ps_strtab_get(&p->stacks.names, f->name);
        const ps_str *file = ps_strtab_get(&p->stacks.files, f->file);
        int wrote = snprintf(out + len, cap - len, "%.*s\t%.*s\n", (int)file->len,
                             file->ptr, (int)name->len, name->ptr);
        if (wrote < 0 || (size_t)wrote >= cap - len) {
            break;
        }
        len += (size_t)wrote;
        node = n->parent;
    }
    return len;
}

/* The time sample `i` stands for, in ms: since the previous one; the
 * first, since the stall reached the threshold (a sample taken after a long
 * wait for the GIL stands for that wait). The reader does the same. */
static uint32_t
sample_weight_ms(const ps_stall *s, uint32_t i, uint32_t threshold_ms)
{
    uint32_t previous = i == 0 ? threshold_ms : s->samples[i - 1].t_ms;
    uint32_t at = s->samples[i].t_ms;
    return at > previous ? at - previous : 1;
}

/* The node (busy or main) that stands for the most of the stall's sampled
 * time; that time into *weight, all of it into *total. */
static uint32_t
heaviest(const ps_stall *s, int busy, uint32_t threshold_ms, uint64_t *weight,
         uint64_t *total)
{
    uint32_t best = PS_STALL_NONE;
    uint64_t best_weight = 0;

    *total = 0;
    for (uint32_t i = 0; i < s->n_samples; i++) {
        *total += sample_weight_ms(s, i, threshold_ms);
        uint32_t node = busy ? s->samples[i].busy_node : s->samples[i].main_node;
        if (node == PS_STALL_NONE) {
            continue;
        }
        uint64_t w = 0;
        for (uint32_t j = 0; j < s->n_samples; j++) {
            if ((busy ? s->samples[j].busy_node : s->samples[j].main_node) == node) {
                w += sample_weight_ms(s, j, threshold_ms);
            }
        }
        if (w > best_weight) {
            best = node;
            best_weight = w;
        }
    }
    *weight = best_weight;
    return best;
}


/* What the log line says about `s`: the stack that stands for most of its
 * sampled time, the busy thread's when one held the GIL for most of it (as
 * profiler_service.stalls.culprit reads a file). No Python code. */
static void
describe(const ps_stall *s, const ps_period *p, ps_stall_report *r)
{
    uint32_t threshold_ms = (uint32_t)(atomic_load(&D.threshold_ns) / 1000000);
    uint64_t busy_weight = 0, main_weight, total;
    uint64_t busy_total = 0;
    uint32_t main_node = heaviest(s, 0, threshold_ms, &main_weight, &total);
    uint32_t busy_node = PS_STALL_NONE;
    for (uint32_t i = 0; i < s->n_samples; i++) {
        if (s->samples[i].busy_node != PS_STALL_NONE) {
            busy_total += sample_weight_ms(s, i, threshold_ms);
        }
    }
    if (busy_total * 2 > total) {
        busy_node = heaviest(s, 1, threshold_ms, &busy_weight, &total);
    }
    int blame_busy = busy_node != PS_STALL_NONE;

    r->duration_s = (double)s->duration_ns / 1e9;
    r->stack[0] = r->busy_name[0] = '\0';
    if (blame_busy) {
        for (uint32_t i = 0; i < s->n_samples; i++) {
            if (s->samples[i].busy_node == busy_node &&
                s->samples[i].busy_thread < p->threads.len) {
                snprintf(r->busy_name, sizeof(r->busy_name), "%s",
                         ps_period_thread(p, s->samples[i].busy_thread)->name);
                break;
            }
        }
    }
    describe_stack(p, blame_busy ? busy_node : main_node, r->stack,
                   sizeof(r->stack), 0);
}

/* Finish an ended stall into the active period; fill `report` and return 1
 * when it is long enough to be reported. */
static int
finish_stall(stall_span span, ps_stall_report *report)
{
    ps_stall done = {0};
    int reported = 0;

    if (D.recording && D.current.start_mono_ns == span.start_ns) {
        done = D.current;
        memset(&D.current, 0, sizeof(D.current));
        D.recording = 0;
        if (D.current_gen != S.walker.period_gen) {
            done.samples_dropped += done.n_samples;  /* another period's nodes */
            done.n_samples = 0;
        }
    }
    else {
        done.start_mono_ns = span.start_ns;  /* over before a look: no samples */
    }
    done.duration_ns = span.duration_ns;
    if (D.on_stall != NULL && span.duration_ns >= D.report_ns) {
        describe(&done, S.active, report);
        reported = 1;
    }
    S.active->stalls.threshold_ns = atomic_load(&D.threshold_ns);
    ps_stall_list_take(&S.active->stalls, &done);
    return reported;
}

static void
call_on_stall(PyObject *on_stall, const ps_stall_report *r)
{
    PyObject *result = PyObject_CallFunction(on_stall, "dss", r->duration_s,
                                             r->stack, r->busy_name);
    if (result == NULL) {
        PyErr_WriteUnraisable(on_stall);
    }
    Py_XDECREF(result);
}

/* Finish every ended stall the ring holds. Reports go into `reports`
 * (at most `cap`); returns how many. */
static size_t
drain(ps_stall_report *reports, size_t cap)
{
    size_t n = 0;
    unsigned long long head = atomic_load_explicit(&D.head, memory_order_acquire);
    unsigned long long tail = atomic_load_explicit(&D.tail, memory_order_relaxed);

    for (; tail != head; tail++) {
        stall_span span = D.ring[tail % RING];
        ps_stall_report scratch;
        if (finish_stall(span, n < cap ? &reports[n] : &scratch) && n < cap) {
            n++;
        }
    }
    atomic_store_explicit(&D.tail, tail, memory_order_release);
    unsigned long long lost = atomic_exchange(&D.ring_lost, 0);
    S.active->stalls.dropped += lost;
    return n;
}

void
ps_stalls_work(void)
{
    int64_t threshold = atomic_load(&D.threshold_ns);

    if (threshold <= 0 || S.active == NULL) {
        return;
    }
    /* Sample first, then finish: a stall that ended while the sampler
     * waited for the GIL still gets the sample's word on who held it. */
    int64_t target = D.before_for;
    int64_t now = ps_mono_ns();
    D.before_for = 0;
    if (target != 0 && now - target >= threshold &&
        now >= D.next_sample_ns - SAMPLE_INTERVAL_NS / 2) {
        int64_t since = atomic_load_explicit(&D.out_since_ns, memory_order_acquire);
        if (!D.recording || D.current.start_mono_ns != target) {
            begin_stall(target);
        }
        take_sample(now, since == target);
        D.next_sample_ns = now + SAMPLE_INTERVAL_NS;
    }
    D.before_ns = 0;
    ps_stall_reports reports;
    ps_stalls_finish_ended(&reports);
    /* Last: the callback is Python code, which may even stop the sampler. */
    ps_stalls_deliver(&reports);
}

void
ps_stalls_finish_ended(ps_stall_reports *out)
{
    out->n = 0;
    out->on_stall = NULL;
    if (atomic_load(&D.threshold_ns) <= 0 || S.active == NULL) {
        return;
    }
    out->n = drain(out->items, PS_STALL_REPORTS);
    if (out->n > 0 && D.on_stall != NULL) {
        out->on_stall = Py_NewRef(D.on_stall);
    }
}

void
ps_stalls_deliver(ps_stall_reports *r)
{
    PyObject *on_stall = r->on_stall;
    r->on_stall = NULL;
    for (size_t i = 0; i < r->n && on_stall != NULL; i++) {
        call_on_stall(on_stall, &r->items[i]);
    }
    r->n = 0;
    Py_XDECREF(on_stall);
}

void
ps_stalls_stop(ps_stall_reports *out)
{
    ps_stalls_finish_ended(out);
    atomic_store(&D.threshold_ns, 0);
    ps_stall_clear(&D.current);
    D.recording = 0;
    Py_CLEAR(D.on_stall);
}

void
ps_stalls_after_fork_child(void)
{
    atomic_store(&D.threshold_ns, 0);
    atomic_store(&D.out_since_ns, 0);
    atomic_store(&D.tail, atomic_load(&D.head));
    ps_stall_clear(&D.current);
    D.recording = 0;
    Py_CLEAR(D.on_stall);
}
