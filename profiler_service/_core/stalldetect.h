/* The reactor stall detector (stalldetect.c): the reactor thread marks its
 * poll entry and exit; the sampler thread notices a stall and samples it.
 * Binding-private: includes Python.h. */
#ifndef PS_STALLDETECT_H
#define PS_STALLDETECT_H

#include "binding.h"

#include <stdint.h>

#define PS_STALL_REPORTS 4  /* reports handed over at a time; more: not reported */

/* What a reported stall looks like to on_stall. */
typedef struct {
    double duration_s;
    char stack[1024];     /* "file\tqualname\n" per frame, innermost first */
    char busy_name[128];  /* the thread that held the GIL, or "" */
} ps_stall_report;

/* Reports of stalls that ended, with a new reference to the callback to
 * give them to (NULL: none), for ps_stalls_deliver. */
typedef struct {
    ps_stall_report items[PS_STALL_REPORTS];
    size_t n;
    PyObject *on_stall;
} ps_stall_reports;

/* Arm the detector for a sampler start: stalls longer than `threshold_ns`
 * are recorded into the active period; `on_stall` (borrowed, may be
 * Py_None) is called on the sampler thread as on_stall(duration_s, stack,
 * busy_thread) for each stall of `report_ns` or more. `reactor_native_id`
 * is the kernel TID of the thread that calls the watched poll. A zero
 * threshold leaves the detector off. Returns 0, or -1 with an exception.
 * Needs the GIL. */
int ps_stalls_start(int64_t threshold_ns, int64_t report_ns,
                    uint64_t reactor_native_id, PyObject *on_stall);

/* Disarm: stalls that ended go into the active period (still S.active),
 * the one in progress is dropped; their reports into *out (deliver them
 * once stop() is done). Needs the GIL; runs no Python code. */
void ps_stalls_stop(ps_stall_reports *out);

/* Finish the stalls that ended into the active period (before a rotation
 * hands it over), their reports into *out. Needs the GIL; runs no Python
 * code. */
void ps_stalls_finish_ended(ps_stall_reports *out);

/* Call the callback with each report, then drop it. Runs Python code: call
 * it last, when the sampler's state may change under it. Needs the GIL. */
void ps_stalls_deliver(ps_stall_reports *r);

/* Forget everything in a fork child (no other thread exists there). */
void ps_stalls_after_fork_child(void);

/* The sampler thread's next wake-up: `deadline` or earlier when a stall may
 * need a look. Lock-free; no GIL. */
int64_t ps_stalls_deadline(int64_t now_ns, int64_t deadline_ns);

/* Is there stall work for the sampler thread now (a stall ended, or one in
 * progress is due for a sample)? For a sample, it also reads the threads'
 * CPU clocks, before the sampler waits for the GIL. `taking_gil`: the
 * sampler takes the GIL now anyway (a walk), so a sample due within half an
 * interval is taken with it. Lock-free; no GIL. */
int ps_stalls_due(int64_t now_ns, int taking_gil);

/* Do that work: finish ended stalls into the active period, sample the one
 * in progress, report the long ones. Needs the GIL; runs Python code (the
 * walks, the callback). */
void ps_stalls_work(void);

/* _core.watch_poll(poll) -> a new callable that marks entry and exit around
 * poll(*args, **kwargs) for the detector (new reference). */
PyObject *ps_stalls_watch_poll(PyObject *module, PyObject *poll);

#endif /* PS_STALLDETECT_H */
