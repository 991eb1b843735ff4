/*
 * fia.h - fused LLM-inference attention operators for CPUs (C11).
 *
 * fia implements, with the semantics of the Ascend CANN operators that serve DeepSeek, Llama and
 * Qwen models, the attention operator family on x86-64 CPUs (AVX-512 and AVX2 kernels, and a
 * portable scalar path). This is the one public header.
 *
 * How a call works
 *   1. Create a context once: it detects the CPU, picks the kernels and starts the thread pool.
 *   2. Plan an operator: fia_<op>_plan() validates every tensor and parameter, builds the
 *      schedule (work list, split-KV decisions) and returns the workspace size it needs.
 *   3. Execute the plan as often as needed: fia_plan_execute() never allocates, reads the inputs
 *      at the addresses given at plan time and writes the outputs there.
 *   A one-shot fia_<op>() wraps the three steps (it allocates and frees the workspace).
 *
 * Errors
 *   Every entry point that can fail returns a fia_status. On failure nothing is written to any
 *   output tensor, and fia_last_error() returns a message of the calling thread that names the
 *   tensor, the dimension and both values ("key dim 3 is 100, query has 128"). The library never
 *   aborts and never reads outside the tensors it is given, whatever the input.
 *
 * Threads
 *   A context owns one persistent thread pool. A context runs one call at a time: concurrent
 *   calls on the same context are serialized. Use one context per calling thread to run calls in
 *   parallel. Plans are immutable after planning and may be executed from any thread.
 *
 * Determinism
 *   Split points are fixed in token space and merges run in a fixed order, so an output is
 *   bitwise identical for any thread count and whatever other requests share the batch. Results
 *   differ between ISAs (scalar, AVX2, AVX-512) within the documented tolerances.
 *
 * Environment
 *   FIA_ISA=scalar|avx2|avx512  forces a kernel level (an unavailable level is an error).
 *   FIA_NUM_THREADS=N            default thread count of a new context.
 *   FIA_VERBOSE=1                prints the CPU features and kernels chosen to stderr.
 */
#ifndef FIA_H
#define FIA_H

/* One header per operator family; each includes fia/core.h. */
#include "fia/core.h"
#include "fia/attention.h"
#include "fia/sparse.h"
#include "fia/norm.h"
#include "fia/rope.h"
#include "fia/quant.h"
#include "fia/cache.h"
#include "fia/prolog.h"

#endif /* FIA_H */
