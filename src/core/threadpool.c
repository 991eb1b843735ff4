/*
 * threadpool.c - persistent spin-then-sleep pool (see threadpool.h).
 *
 * A run publishes (fn, arg, n), bumps the generation counter and wakes sleepers; every thread,
 * the caller included, takes tasks from an atomic counter; the caller then waits until every
 * worker has checked out of this generation.
 *
 * CPU placement. When the process may run on exactly as many CPUs as the pool has threads (the
 * default: num_threads 0 is the number of online CPUs), each worker is pinned to its own CPU of
 * the creating thread's affinity mask, leaving one CPU for the caller; the caller itself is never
 * pinned (its mask, and that of threads it creates later, e.g. torch's OpenMP team, stay as they
 * are). Each run reads the caller's CPU (sched_getcpu, no system call) and, when the caller sits
 * on a worker's CPU, moves that worker to the free CPU (one pthread_setaffinity_np, only then).
 * Why: a worker that has gone to sleep (after a pause longer than its spin, e.g. another
 * program's threads ran in between) is woken by the caller, and the kernel's wake-affine
 * placement tends to put it on the caller's own CPU, where the two share one core and the tasks
 * run serially (observed: GQA decode 4K at 2.1-2.5 ms instead of 0.6 ms in some runs of `fia
 * bench`). Nothing is pinned when the mask has fewer CPUs than the pool has threads
 * (oversubscribed: the scheduler must be free to move threads), nor when it has more (the caller
 * may roam over CPUs a pinned worker could not avoid), nor with FIA_PIN_THREADS=0. A worker's
 * placement never changes a result: tasks never depend on the thread that runs them.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define fia_cpu_relax() _mm_pause()
#else
#define fia_cpu_relax() ((void)0)
#endif

enum { FIA_POOL_SPINS = 20000 };

typedef struct fia_worker {
    fia_pool *pool;
    int32_t tid;
    int32_t cpu; /* the CPU it is pinned to; -1: not pinned */
    pthread_t thread;
} fia_worker;

struct fia_pool {
    int32_t size;
    fia_worker *workers; /* size - 1 */
    int32_t free_cpu;    /* pinned pools: the mask's CPU no worker is pinned to; else -1 */
    pthread_mutex_t run_lock; /* serializes fia_pool_run */
    pthread_mutex_t lock;     /* guards sleeping and the condition */
    pthread_cond_t wake;
    int32_t sleeping;
    /* the current run */
    fia_pool_fn fn;
    fia_pool_ahead_fn ahead; /* fia_pool_run_ahead's (fn NULL) */
    void *arg;
    int64_t num_tasks;
    atomic_int_fast64_t next_task;
    atomic_int pending; /* workers still inside the current generation */
    atomic_uint_fast64_t generation;
    atomic_int stop;
};

/* Takes tasks until none is left. fia_pool_run_ahead: before running a task the thread claims
 * its next one (then runs it, whatever the other threads do), except among the last 2 x size
 * tasks, which are taken one at a time as fia_pool_run takes them (so that a run of few tasks
 * still spreads over the threads, and the largest-first order still balances the end). */
static void fia_pool_work(fia_pool *pool, int32_t tid) {
    const int64_t n = pool->num_tasks, tail = n - 2 * (int64_t)pool->size;
    int64_t task = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
    while (task < n) {
        if (!pool->ahead) {
            pool->fn(pool->arg, task, tid);
            task = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
            continue;
        }
        const int64_t next = task < tail
                                 ? atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed)
                                 : n;
        pool->ahead(pool->arg, task, next < n ? next : -1, tid);
        task = next < n ? next : atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
    }
}

static void *fia_worker_main(void *p) {
    fia_worker *w = p;
    fia_pool *pool = w->pool;
    uint_fast64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen) {
            if (++spins < FIA_POOL_SPINS) {
                fia_cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->lock);
            while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen) {
                pool->sleeping++;
                pthread_cond_wait(&pool->wake, &pool->lock);
                pool->sleeping--;
            }
            pthread_mutex_unlock(&pool->lock);
        }
        seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
        fia_pool_work(pool, w->tid);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
    return NULL;
}

static void fia_pool_publish(fia_pool *pool) {
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    if (pool->sleeping > 0) pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
}

/* Pins a worker to one CPU; returns 0 on success. */
static int fia_pin(pthread_t thread, int32_t cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(thread, sizeof set, &set);
}

/* The CPUs to pin the pool's threads to (cpus[0] for the caller, cpus[i] for worker i): the
 * calling thread's affinity mask when it holds exactly num_threads CPUs and FIA_PIN_THREADS is
 * not "0"; returns 0 when the pool is not to be pinned. */
static int fia_pin_cpus(int32_t num_threads, int32_t *cpus) {
    const char *env = getenv("FIA_PIN_THREADS");
    if (env && !strcmp(env, "0")) return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    if (CPU_COUNT(&set) != num_threads) return 0;
    int32_t n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < num_threads; cpu++)
        if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
    return n == num_threads;
}

fia_status fia_pool_create(int32_t num_threads, fia_pool **out) {
    if (num_threads < 1) num_threads = 1;
    fia_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "thread pool: out of memory");
    pool->size = num_threads;
    pool->free_cpu = -1;
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->next_task, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->stop, 0);
    if (num_threads > 1) {
        pool->workers = calloc((size_t)num_threads - 1, sizeof *pool->workers);
        if (!pool->workers) {
            fia_pool_destroy(pool);
            return fia_error(FIA_STATUS_OUT_OF_MEMORY, "thread pool: out of memory");
        }
    }
    int32_t *cpus = NULL;
    if (num_threads > 1 && num_threads <= CPU_SETSIZE) {
        cpus = malloc((size_t)num_threads * sizeof *cpus);
        if (cpus && !fia_pin_cpus(num_threads, cpus)) {
            free(cpus);
            cpus = NULL;
        }
    }
    for (int32_t i = 0; i + 1 < num_threads; i++) {
        fia_worker *w = &pool->workers[i];
        w->pool = pool;
        w->tid = i + 1;
        w->cpu = -1;
        if (pthread_create(&w->thread, NULL, fia_worker_main, w) != 0) {
            free(cpus);
            pool->size = i + 1; /* workers 0..i-1 exist */
            fia_pool_destroy(pool);
            return fia_error(FIA_STATUS_OUT_OF_MEMORY, "thread pool: cannot start thread %d of %d",
                             (int)(i + 1), (int)num_threads);
        }
    }
    if (cpus) {
        /* All or nothing: a pool with one worker unpinned would steer the others around it. */
        int pinned = 1;
        for (int32_t i = 0; pinned && i + 1 < num_threads; i++)
            pinned = fia_pin(pool->workers[i].thread, cpus[i + 1]) == 0;
        if (pinned) {
            for (int32_t i = 0; i + 1 < num_threads; i++) pool->workers[i].cpu = cpus[i + 1];
            pool->free_cpu = cpus[0];
        } else {
            cpu_set_t set; /* undo: back to the creating thread's mask */
            if (sched_getaffinity(0, sizeof set, &set) == 0)
                for (int32_t i = 0; i + 1 < num_threads; i++)
                    pthread_setaffinity_np(pool->workers[i].thread, sizeof set, &set);
        }
        free(cpus);
    }
    *out = pool;
    return FIA_STATUS_SUCCESS;
}

void fia_pool_destroy(fia_pool *pool) {
    if (!pool) return;
    if (pool->size > 1) {
        atomic_store_explicit(&pool->stop, 1, memory_order_release);
        fia_pool_publish(pool);
        for (int32_t i = 0; i + 1 < pool->size; i++) pthread_join(pool->workers[i].thread, NULL);
    }
    free(pool->workers);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    free(pool);
}

int32_t fia_pool_size(const fia_pool *pool) { return pool->size; }

/* A pinned pool: when the caller runs on a worker's CPU, that worker moves to the free CPU. */
static void fia_pool_steer(fia_pool *pool) {
    const int cpu = sched_getcpu();
    if (cpu < 0 || cpu == pool->free_cpu) return;
    for (int32_t i = 0; i + 1 < pool->size; i++) {
        fia_worker *w = &pool->workers[i];
        if (w->cpu != cpu) continue;
        if (fia_pin(w->thread, pool->free_cpu) == 0) {
            w->cpu = pool->free_cpu;
            pool->free_cpu = cpu;
        }
        return;
    }
}

static void fia_pool_start(fia_pool *pool, int64_t num_tasks, fia_pool_fn fn,
                           fia_pool_ahead_fn ahead, void *arg) {
    if (num_tasks <= 0) return;
    pthread_mutex_lock(&pool->run_lock);
    pool->fn = fn;
    pool->ahead = ahead;
    pool->arg = arg;
    pool->num_tasks = num_tasks;
    atomic_store_explicit(&pool->next_task, 0, memory_order_relaxed);
    if (pool->size == 1 || num_tasks == 1) {
        fia_pool_work(pool, 0);
        pthread_mutex_unlock(&pool->run_lock);
        return;
    }
    if (pool->free_cpu >= 0) fia_pool_steer(pool);
    atomic_store_explicit(&pool->pending, pool->size - 1, memory_order_relaxed);
    fia_pool_publish(pool);
    fia_pool_work(pool, 0);
    int spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0) {
        if (++spins < FIA_POOL_SPINS) fia_cpu_relax();
        else sched_yield();
    }
    pthread_mutex_unlock(&pool->run_lock);
}

void fia_pool_run(fia_pool *pool, int64_t num_tasks, fia_pool_fn fn, void *arg) {
    fia_pool_start(pool, num_tasks, fn, NULL, arg);
}

void fia_pool_run_ahead(fia_pool *pool, int64_t num_tasks, fia_pool_ahead_fn fn, void *arg) {
    fia_pool_start(pool, num_tasks, NULL, fn, arg);
}
