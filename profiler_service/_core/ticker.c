/* The tick source: see ps_ticker.h. The handler reads its own thread id,
 * then either calls the main handler (on the main thread) or posts a
 * semaphore; it saves and restores errno. Everything here is process-wide
 * because signals and interval timers are; the binding guarantees one
 * sampler per process. */
#define _GNU_SOURCE
#include "ps_ticker.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ps_error.h"
#include "ps_period.h"

static sem_t tick_sem;
static int sem_ready;
static atomic_int woken;
static int armed_signal;           /* 0 when no handler of ours is installed */
static int armed_timer = -1;       /* ITIMER_* armed, -1 if none */
static struct timeval armed_interval;  /* what we armed it with */
/* Serializes yield (sampler thread) and stop (any thread); never taken in
 * the signal handler. */
static pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous;  /* disposition found at start */
static void (*volatile main_handler)(void);
static volatile sig_atomic_t main_tid;

static void
on_tick(int sig, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    void (*on_main)(void) = main_handler;
    (void)sig;
    (void)info;
    (void)context;
    if (on_main != NULL && main_tid != 0 && (long)syscall(SYS_gettid) == main_tid) {
        on_main();  /* on the main thread: it walks at its next bytecode */
    }
    else {
        sem_post(&tick_sem);
    }
    errno = saved_errno;
}

void
ps_ticker_set_main_handler(void (*handler)(void), long tid)
{
    main_tid = handler != NULL ? (sig_atomic_t)tid : 0;
    main_handler = handler;
}

static void
to_timeval(int64_t ns, struct timeval *tv)
{
    tv->tv_sec = ns / 1000000000;
    tv->tv_usec = (ns % 1000000000) / 1000;
}

int
ps_ticker_signal(int mode)
{
    switch (mode) {
    case PS_MODE_PROF:
        return SIGPROF;
    case PS_MODE_VIRTUAL:
        return SIGVTALRM;
    }
    return 0;
}

static int
timer_for(int mode)
{
    return mode == PS_MODE_PROF ? ITIMER_PROF : ITIMER_VIRTUAL;
}

int
ps_ticker_start(int mode, int64_t interval_ns, int route_signum)
{
    int timer_sig = ps_ticker_signal(mode);
    int sig = timer_sig != 0 ? timer_sig : route_signum;
    struct sigaction action;
    struct itimerval timer;

    if (armed_signal != 0 || armed_timer != -1) {
        return PS_ESTATE;
    }
    if (!sem_ready) {
        if (sem_init(&tick_sem, 0, 0) != 0) {
            return PS_EOS;
        }
        sem_ready = 1;
    }
    while (sem_trywait(&tick_sem) == 0) {
        /* drain ticks left over from an earlier run */
    }
    atomic_store(&woken, 0);
    if (sig == 0) {
        return PS_OK;  /* real mode without the main-thread route */
    }
    if (sigaction(sig, NULL, &previous) != 0) {
        return PS_EOS;
    }
    if (route_signum == 0 && previous.sa_handler != SIG_DFL &&
        previous.sa_handler != SIG_IGN) {
        return PS_ESTATE;  /* somebody else's handler: do not replace it */
    }
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_tick;
    /* SA_NODEFER: the kernel sends a CPU-timer signal to the thread that was
     * running; if that thread had the signal blocked (as it would while in
     * this very handler), it would go to another thread, waking a sleeping
     * one. The handler is reentrant: atomics, sem_post and errno. Real
     * mode sends no signal: its handler is there to see when somebody
     * replaces it (ps_ticker_owns_signal). */
    action.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK | (timer_sig != 0 ? SA_NODEFER : 0);
    sigemptyset(&action.sa_mask);
    if (sigaction(sig, &action, NULL) != 0) {
        return PS_EOS;
    }
    armed_signal = sig;
    if (timer_sig == 0) {
        return PS_OK;  /* real mode: the sampler paces itself */
    }
    memset(&timer, 0, sizeof(timer));
    if (interval_ns < 1000) {
        interval_ns = 1000;
    }
    to_timeval(interval_ns, &timer.it_interval);
    timer.it_value = timer.it_interval;
    if (setitimer(timer_for(mode), &timer, NULL) != 0) {
        int saved_errno = errno;
        sigaction(sig, &previous, NULL);
        armed_signal = 0;
        errno = saved_errno;
        return PS_EOS;
    }
    armed_timer = timer_for(mode);
    armed_interval = timer.it_interval;
    return PS_OK;
}

int
ps_ticker_owns_signal(void)
{
    struct sigaction current;
    int sig = armed_signal;

    if (sig == 0 || sigaction(sig, NULL, &current) != 0) {
        return 1;
    }
    return (current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_tick;
}

/* Disarm our interval timer, unless somebody re-armed it: a timer running
 * with another interval than ours is theirs. (The same interval cannot be
 * told apart: it is taken for ours.) */
static void
disarm_own_timer(void)
{
    struct itimerval now, off;

    if (armed_timer == -1) {
        return;
    }
    memset(&off, 0, sizeof(off));
    if (getitimer(armed_timer, &now) == 0 &&
        (now.it_interval.tv_sec != armed_interval.tv_sec ||
         now.it_interval.tv_usec != armed_interval.tv_usec)) {
        armed_timer = -1;  /* re-armed by somebody else: theirs now */
        return;
    }
    setitimer(armed_timer, &off, NULL);
    armed_timer = -1;
}

/* ps_ticker_yield with control_lock held. */
static int
yield_locked(void)
{
    if (armed_signal == 0 || ps_ticker_owns_signal()) {
        return 0;
    }
    /* Somebody installed their own handler (signal.signal() does it at the
     * C level too): our ticks would now reach it. Stop them; what they
     * installed stays, and stop() will not restore over it. */
    main_tid = 0;
    main_handler = NULL;
    disarm_own_timer();
    armed_signal = 0;
    return 1;
}

int
ps_ticker_yield(void)
{
    pthread_mutex_lock(&control_lock);
    int replaced = yield_locked();
    pthread_mutex_unlock(&control_lock);
    return replaced;
}

int
ps_ticker_stop(void)
{
    pthread_mutex_lock(&control_lock);
    int replaced = yield_locked();

    main_tid = 0;
    disarm_own_timer();
    if (armed_signal != 0) {
        struct sigaction ignore;
        memset(&ignore, 0, sizeof(ignore));
        ignore.sa_handler = SIG_IGN;
        sigemptyset(&ignore.sa_mask);
        /* SIG_IGN discards a signal already pending, so restoring the default
         * action afterwards cannot kill the process with a late tick. */
        sigaction(armed_signal, &ignore, NULL);
        sigaction(armed_signal, &previous, NULL);
        armed_signal = 0;
    }
    pthread_mutex_unlock(&control_lock);
    return replaced;
}

void
ps_ticker_set_disposition(int sig, int ignore)
{
    struct sigaction action;

    memset(&action, 0, sizeof(action));
    action.sa_handler = ignore ? SIG_IGN : SIG_DFL;
    sigemptyset(&action.sa_mask);
    sigaction(sig, &action, NULL);
}

uint64_t
ps_ticker_wait(int64_t deadline_ns)
{
    struct timespec deadline;
    uint64_t ticks = 0;

    deadline.tv_sec = deadline_ns / 1000000000;
    deadline.tv_nsec = deadline_ns % 1000000000;
    if (atomic_exchange(&woken, 0)) {
        return 0;
    }
    while (sem_clockwait(&tick_sem, CLOCK_MONOTONIC, &deadline) != 0) {
        if (errno != EINTR) {
            return 0;  /* ETIMEDOUT */
        }
    }
    if (atomic_exchange(&woken, 0)) {
        return 0;
    }
    ticks = 1;
    while (sem_trywait(&tick_sem) == 0) {
        ticks++;
    }
    return ticks;
}

uint64_t
ps_ticker_drain(void)
{
    uint64_t ticks = 0;
    if (!sem_ready) {
        return 0;
    }
    while (sem_trywait(&tick_sem) == 0) {
        ticks++;
    }
    return ticks;
}

void
ps_ticker_wake(void)
{
    atomic_store(&woken, 1);
    if (sem_ready) {
        sem_post(&tick_sem);
    }
}

void
ps_ticker_after_fork_child(void)
{
    pthread_mutex_init(&control_lock, NULL);  /* the sampler thread is gone */
    armed_timer = -1;  /* the kernel did not copy our timer */
    main_handler = NULL;
    main_tid = 0;
    if (armed_signal != 0) {
        sigaction(armed_signal, &previous, NULL);
        armed_signal = 0;
    }
    if (sem_ready) {
        sem_destroy(&tick_sem);
        sem_ready = 0;
    }
    atomic_store(&woken, 0);
}
