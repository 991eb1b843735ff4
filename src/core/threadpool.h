/*
 * threadpool.h - one persistent pool per context.
 *
 * fia_pool_run(pool, n, fn, arg) runs fn(arg, task, tid) for task = 0..n-1 on the pool's threads
 * (the caller is thread 0) and returns when all tasks are done. Tasks are handed out in index
 * order by an atomic counter, so put the most expensive tasks first. tid < fia_pool_size(pool)
 * identifies the thread (for per-thread scratch); results must never depend on it. Workers spin
 * for a short while after a run (decode calls are tens of microseconds apart) and then sleep.
 * Runs on one pool are serialized by a mutex.
 */
#ifndef FIA_CORE_THREADPOOL_H
#define FIA_CORE_THREADPOOL_H

#include <stdint.h>

#include "fia.h"

typedef struct fia_pool fia_pool;
typedef void (*fia_pool_fn)(void *arg, int64_t task, int32_t tid);
/* next: the task this thread runs after this one, when it is already known (-1: not known). */
typedef void (*fia_pool_ahead_fn)(void *arg, int64_t task, int64_t next, int32_t tid);

fia_status fia_pool_create(int32_t num_threads, fia_pool **pool);
void fia_pool_destroy(fia_pool *pool);
int32_t fia_pool_size(const fia_pool *pool);
void fia_pool_run(fia_pool *pool, int64_t num_tasks, fia_pool_fn fn, void *arg);
/* fia_pool_run, each task told the task its thread runs next, e.g. to prefetch its data: the
 * thread claims it before running this one, except among the last 2 x size tasks (next -1 then,
 * and when the other threads have taken all the rest). */
void fia_pool_run_ahead(fia_pool *pool, int64_t num_tasks, fia_pool_ahead_fn fn, void *arg);

#endif /* FIA_CORE_THREADPOOL_H */
