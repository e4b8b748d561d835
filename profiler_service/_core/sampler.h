/* The one process-wide sampler's state: the sampler thread, its settings,
 * the active period and the load series, with the walker (walker.h) and the
 * signals (signals.h) it drives. Shared by sampler.c (the sampler thread,
 * lifecycle, the Python API) and signals.c (the main-thread trip).
 * Binding-private: includes Python.h. */
#ifndef PS_SAMPLER_H
#define PS_SAMPLER_H

#include "binding.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "signals.h"
#include "walker.h"

typedef struct {
    int running;                /* guarded by the GIL */
    atomic_int stopping;
    int mode;
    double frequency;
    int64_t interval_ns;
    uint32_t max_depth;
    uint32_t max_stacks;
    pthread_t thread;
    pthread_mutex_t load_lock;
    ps_period *active;          /* Owned */
    ps_walker walker;           /* walks into `active` */
    ps_signals signals;
    int64_t load_cpu_ns;
    int64_t load_wall_ns;
    uint64_t rng;
} ps_sampler;

/* The one mutable C global: signals and interval timers are per process. */
extern ps_sampler ps_sampler_state;
#define S ps_sampler_state

/* The module's sampler functions (sampler.c); module.c lists them. */
PyObject *ps_sampler_start(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *ps_sampler_rotate(PyObject *module, PyObject *unused);
PyObject *ps_sampler_stop(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *ps_sampler_is_running(PyObject *module, PyObject *unused);
PyObject *ps_sampler_status(PyObject *module, PyObject *unused);
PyObject *ps_sampler_before_fork(PyObject *module, PyObject *unused);
PyObject *ps_sampler_after_fork_parent(PyObject *module, PyObject *unused);
PyObject *ps_sampler_after_fork_child(PyObject *module, PyObject *unused);

#endif /* PS_SAMPLER_H */
