/*
 * cases.h - the benchmark cases of `fia bench` (and the ones `fia demo` runs), and the driver
 * that times one case with cold caches.
 *
 * A case is a name, an operator (a bench_op: how to describe, count, prepare, run and check it)
 * and the operator's own parameter struct. Adding an operator's cases: write its bench_op and
 * append rows to the table in cases.c; the driver, `fia bench` and `fia demo` need no change.
 */
#ifndef FIA_BENCH_CASES_H
#define FIA_BENCH_CASES_H

#include <stddef.h>
#include <stdint.h>

#include "fia.h"

struct roofline;
struct roofline_probe;

typedef struct bench_case bench_case;

/* The result of comparing a (sampled) output with the double-precision oracle. */
typedef struct bench_check {
    int passed;
    double max_abs_err;
    char detail[96]; /* what was compared, e.g. "8/32 heads, 48/2048 rows" */
} bench_check;

/* One operator's benchmark hooks. `inst` is the operator's own instance struct. */
typedef struct bench_op {
    const char *op; /* the operator name, as in `fia op` and the JSON "op" field */
    /* A short human-readable shape, e.g. "B1 S1 1 kv 4096 N 32/8 D 128 f16". */
    void (*shape)(const bench_case *c, char *buf, size_t len);
    /* The JSON object of the parameters, e.g. {"batch":1,...}. */
    void (*params_json)(const bench_case *c, char *buf, size_t len);
    /* Bytes moved (K and V read once, plus Q and the output) and FLOPs counted. */
    void (*counts)(const bench_case *c, double *bytes, double *flops);
    /* Bytes of one copy of the rotated buffers (sizes the cold-cache rotation). */
    double (*copy_bytes)(const bench_case *c);
    /* Allocates and fills `copies` copies of the inputs and outputs, plans each one and
     * allocates one workspace. Returns 0, or -1 with a message in err. */
    int (*prepare)(const bench_case *c, fia_context *ctx, int copies, uint64_t seed, void **inst,
                   char *err, size_t err_len);
    /* Runs the plan of copy `copy`. */
    fia_status (*execute)(void *inst, int copy);
    /* Compares the output of copy 0 (after an execute) with the oracle, sampled where the full
     * oracle would be slow. Returns 0, or -1 with a message in err (the oracle could not run). */
    int (*check)(void *inst, bench_check *result, char *err, size_t err_len);
    void (*destroy)(void *inst);
    /* Optional: the plan of copy 0 (its `unit` names the compute unit of the fastest path the
     * library chose, which the roofline judges the case against); NULL: fp32 FMA. */
    const fia_plan *(*plan)(void *inst);
} bench_op;

/* Parameters of a fused_infer_attention_score case. Query and output are BSND; key and value are
 * BSND, or a paged BnBsH cache when block_size > 0. */
typedef struct bench_fia_case {
    int64_t batch;
    int64_t num_heads;
    int64_t num_key_value_heads;
    int64_t head_dim;
    int64_t head_dim_v;
    int64_t q_len;
    int64_t kv_len;         /* the longest kv length (the buffers' S2) */
    const int64_t *kv_lens; /* per-batch kv lengths (batch entries), NULL: kv_len for all */
    fia_dtype dtype;        /* query and output */
    fia_dtype kv_dtype;     /* key and value: dtype, or int8 (per-channel antiquant) */
    int32_t sparse_mode;    /* 0 (no mask) or 3 (causal, compressed mask) */
    int64_t block_size;     /* > 0: paged KV cache with this block size */
} bench_fia_case;

/* Parameters of a smallq_flash_attention case: Q and O [num_heads, q_len, head_dim], K and V
 * [num_heads, kv_len, head_dim], all float16 and compact (batch 1, as many KV heads as query
 * heads). */
typedef struct bench_smallq_case {
    int64_t num_heads;
    int64_t head_dim;
    int64_t q_len;
    int64_t kv_len;
} bench_smallq_case;

struct bench_case {
    const char *name;
    const bench_op *op;
    const void *params;
    int demo; /* also run by `fia demo` */
};

/* Helpers for the bench_op hooks of every operator (cases.c). */
/* Formats a message into err (when err_len > 0). */
void bench_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fills n elements of dtype with random values in [-1, 1] (int8: [-127, 127]; other integer
 * dtypes: zeros). Returns -1 when out of memory. */
int bench_fill_random(void *dst, fia_dtype dtype, size_t n, uint64_t *state);
/* Allocates a benchmark buffer (free() it): 2 MiB aligned and backed by transparent huge pages
 * from 4 MiB on, as serving engines allocate KV caches. NULL when out of memory. */
void *bench_alloc(size_t bytes);
/* A view of `count` entries from `first` along one axis of t (same strides and dtype). */
fia_tensor bench_sub_view(const fia_tensor *t, int axis, int64_t first, int64_t count);

/* Each operator's own case table, defined in bench/cases_<op>.c and listed in cases.c. */
const bench_case *bench_mla_cases(size_t *count);
const bench_case *bench_sfa_cases(size_t *count);
const bench_case *bench_li_cases(size_t *count);
const bench_case *bench_chain_cases(size_t *count);
const bench_case *bench_prolog_cases(size_t *count);

/* The case table: every operator's cases. */
const bench_case *bench_cases(size_t *count);

/* Number of buffer copies to rotate so that their total exceeds twice the last-level cache. */
int bench_copies(const bench_case *c, size_t llc_bytes);

typedef struct bench_result {
    double seconds; /* median of the timed runs */
    double min_seconds;
    int reps;
    int copies;
    double bytes;
    double flops;
    /* With a paired probe: the median of the read bandwidths measured right after each run
     * (GB/s), and the median over runs of (bytes / run time) / the larger of the bandwidths
     * measured just before and just after the run. Without one (or when a probe failed): the
     * roofline's bandwidth and bytes / median time / that bandwidth. */
    double read_gbps;
    double mem_fraction;
    double fma_fraction; /* flops / median time / the roofline's FMA peak (0 without one) */
    /* The compute unit of the path the library chose ("fma", "bf16dp", "vnni", "amx_bf16",
     * "amx_int8"; bench_op.plan) and flops / median time / that unit's peak measured in the
     * same run (the FMA fraction for "fma"). */
    const char *unit;
    double unit_peak;
    double unit_fraction;
} bench_result;

/* Prepares a case, runs it once per copy to warm up code paths (not caches), then times `reps`
 * executions rotating over the copies (reps <= 0: as many as fit in about budget_s, 5..1000),
 * and optionally checks copy 0 against the oracle (check != NULL). rl: its LLC size sizes the
 * copy rotation, its read bandwidth is the fallback of the memory fraction. probe (may be
 * NULL): a read probe run after every timed run, which pairs each run with the bandwidth of its
 * moment (see roofline_probe_create). Returns 0, or -1 with a message in err (allocation,
 * planning or execution failed). */
int bench_run_case(const bench_case *c, fia_context *ctx, const struct roofline *rl, int reps,
                   double budget_s, struct roofline_probe *probe, bench_result *result,
                   bench_check *check, char *err, size_t err_len);

#endif /* FIA_BENCH_CASES_H */
