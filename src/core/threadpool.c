/*
 * threadpool.c - persistent spin-then-sleep pool (see threadpool.h).
 *
 * A run publishes (fn, arg, n), bumps the generation counter and wakes sleepers; every thread,
 * the caller included, takes tasks from an atomic counter; the caller then waits until every
 * worker has checked out of this generation.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

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
    pthread_t thread;
} fia_worker;

struct fia_pool {
    int32_t size;
    fia_worker *workers; /* size - 1 */
    pthread_mutex_t run_lock; /* serializes fia_pool_run */
    pthread_mutex_t lock;     /* guards sleeping and the condition */
    pthread_cond_t wake;
    int32_t sleeping;
    /* the current run */
    fia_pool_fn fn;
    void *arg;
    int64_t num_tasks;
    atomic_int_fast64_t next_task;
    atomic_int pending; /* workers still inside the current generation */
    atomic_uint_fast64_t generation;
    atomic_int stop;
};

static void fia_pool_work(fia_pool *pool, int32_t tid) {
    const int64_t n = pool->num_tasks;
    for (;;) {
        const int64_t task = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (task >= n) break;
        pool->fn(pool->arg, task, tid);
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

fia_status fia_pool_create(int32_t num_threads, fia_pool **out) {
    if (num_threads < 1) num_threads = 1;
    fia_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "thread pool: out of memory");
    pool->size = num_threads;
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
    for (int32_t i = 0; i + 1 < num_threads; i++) {
        fia_worker *w = &pool->workers[i];
        w->pool = pool;
        w->tid = i + 1;
        if (pthread_create(&w->thread, NULL, fia_worker_main, w) != 0) {
            pool->size = i + 1; /* workers 0..i-1 exist */
            fia_pool_destroy(pool);
            return fia_error(FIA_STATUS_OUT_OF_MEMORY, "thread pool: cannot start thread %d of %d",
                             (int)(i + 1), (int)num_threads);
        }
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

void fia_pool_run(fia_pool *pool, int64_t num_tasks, fia_pool_fn fn, void *arg) {
    if (num_tasks <= 0) return;
    pthread_mutex_lock(&pool->run_lock);
    pool->fn = fn;
    pool->arg = arg;
    pool->num_tasks = num_tasks;
    atomic_store_explicit(&pool->next_task, 0, memory_order_relaxed);
    if (pool->size == 1 || num_tasks == 1) {
        fia_pool_work(pool, 0);
        pthread_mutex_unlock(&pool->run_lock);
        return;
    }
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
