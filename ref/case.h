/*
 * case.h - one case description per operator (ggml's test-backend-ops / zstd's fuzz helpers):
 * build the tensors of a call from a seed and a shape, run the operator through the public API,
 * run its double-precision oracle and compare every output with the tolerance table
 * (tolerance.h). The tests (tests/test_cases.c), the fuzz targets (tests/fuzz/fuzz_cases.c), the
 * benchmark's checks (bench/cases*.c) and `fia op --check` (tools/op_*.c) use the same
 * descriptions.
 *
 * Two ways in:
 *   fia_case_build   - the case owns compact tensors filled from the seed (tests, fuzz);
 *   fia_case_bind    - the caller fills c->t / c->p with its own tensors (views of a benchmark's
 *                      buffers, tensors loaded from .npy files) and binds the description.
 * Then: fia_case_prepare (before the run: it snapshots the targets of the in-place operators),
 * fia_case_run (or the caller's own plan / execute of c->t), fia_case_oracle (after a successful
 * run: the oracles assume inputs the library accepted), fia_case_check, fia_case_free.
 *
 * Operators: rms_norm, add_rms_norm, rotary_mul, interleave_rope, dynamic_quant,
 * scatter_update, scatter_nd_update, gather_selection_kv_cache, fused_infer_attention_score
 * (dense; the MLA form binds to the MLA oracle), smallq_flash_attention (case_attention.c),
 * sparse_flash_attention, kv_quant_sparse_flash_attention, lightning_indexer,
 * quant_lightning_indexer (case_sparse.c), mla_prolog_v3 (bf16 modes; case_prolog.c).
 * Public headers only (fia.h): nothing here is shared with src/.
 */
#ifndef FIA_REF_CASE_H
#define FIA_REF_CASE_H

#include <stdint.h>

#include "fia.h"
#include "tolerance.h"

#define FIA_CASE_MAX_TENSORS 16
#define FIA_CASE_MAX_OUTPUTS 6

/* What a builder makes: dims and their meaning per operator (fia_case_desc.shape_doc). */
typedef struct fia_case_shape {
    int64_t dims[6];
    fia_dtype dtype; /* the main input's dtype */
    int variant;     /* per operator: a mode (rotary mode, quant mode, cache mode, ...) */
} fia_case_shape;

typedef struct fia_case_output {
    const char *name; /* as the tensors struct (and `fia op --out`) names it */
    fia_tensor *got;  /* what the operator writes (in place: the updated tensor) */
    double *want;     /* the oracle's, compact over got's logical shape (fia_case_oracle) */
    double *quot;     /* dynamic_quant's y: the unrounded quotients (ties); a float output of a
                       * description with a slack (fia_case_desc.slack): the oracle's per-element
                       * slack (tolerance.h; an in-place target starts at -1: exact) */
    int inplace;      /* got is also an input: fia_case_prepare snapshots it into want */
} fia_case_output;

typedef struct fia_case {
    const struct fia_case_desc *desc;
    union {
        fia_rms_norm_tensors rms_norm;
        fia_add_rms_norm_tensors add_rms_norm;
        fia_rotary_mul_tensors rope; /* rotary_mul and interleave_rope */
        fia_dynamic_quant_tensors dynamic_quant;
        fia_scatter_update_tensors scatter_update;
        fia_scatter_nd_update_tensors scatter_nd_update;
        fia_gather_selection_kv_cache_tensors gather_selection;
        fia_fused_infer_attention_score_tensors fia;
        struct { const fia_tensor *q, *k, *v; fia_tensor *o; } smallq;
        fia_sparse_flash_attention_tensors sfa;
        fia_kv_quant_sparse_flash_attention_tensors sfa_c8;
        fia_lightning_indexer_tensors li; /* lightning_indexer and quant_lightning_indexer */
        fia_mla_prolog_v3_tensors prolog;
    } t;
    union {
        fia_rms_norm_params rms_norm;
        fia_rotary_mul_params rotary_mul;
        fia_interleave_rope_params interleave_rope;
        fia_dynamic_quant_params dynamic_quant;
        fia_scatter_update_params scatter_update;
        fia_scatter_nd_update_params scatter_nd_update;
        fia_gather_selection_kv_cache_params gather_selection;
        fia_fused_infer_attention_score_params fia;
        fia_sparse_flash_attention_params sfa;
        fia_kv_quant_sparse_flash_attention_params sfa_c8;
        fia_lightning_indexer_params li;
        fia_mla_prolog_v3_params prolog;
    } p;
    int64_t lens[16]; /* built calls: the params' per-batch length list points here (B <= 16) */
    /* owned by fia_case_build */
    fia_tensor ten[FIA_CASE_MAX_TENSORS];
    void *buf[FIA_CASE_MAX_TENSORS];
    int n_ten;
    /* filled by the description's bind / by fia_case_oracle */
    fia_case_output out[FIA_CASE_MAX_OUTPUTS];
    int n_out;
    int prepared;
    fia_dtype main_dtype; /* the dtype `fia op --check` keys its op-wide tolerance on (bind) */
    int oracle_refuses; /* the oracle says the contract refuses the call (index out of range) */
} fia_case;

typedef struct fia_case_desc {
    const char *op;        /* as `fia op` spells it */
    const char *shape_doc; /* what dims[] / variant mean to build */
    /* Allocates and fills compact tensors; 0, or -1 for a shape it cannot build (nothing kept). */
    int (*build)(fia_case *c, const fia_case_shape *s, uint64_t seed); /* NULL: bind only */
    void (*bind)(fia_case *c); /* out[] (names and tensors) from c->t */
    fia_status (*plan)(fia_context *ctx, const fia_case *c, fia_plan **plan, size_t *ws_bytes);
    /* Fills out[i].want (and quot) from the inputs (in-place targets: updates the snapshot in
     * want); 0, 1 when the contract refuses the call (an index out of range: the library must
     * fail and write nothing), -1 when it cannot run. */
    int (*oracle)(fia_case *c);
    /* The tolerance table's op key for this call (NULL: op). */
    const char *(*tol_op)(const fia_case *c);
    unsigned slack; /* bit i: output i gets a quot array (zeroed) for the oracle's slack */
} fia_case_desc;

/* Every description, and the one of an operator (NULL when none). */
const fia_case_desc *const *fia_case_list(int *count);
const fia_case_desc *fia_case_find(const char *op);

/* Builds op's case from shape and seed; 0, or -1 (unknown op, no builder, bad shape, out of
 * memory; *c is then empty and fia_case_free is harmless). */
int fia_case_build(fia_case *c, const char *op, const fia_case_shape *shape, uint64_t seed);

/* Binds op's description to tensors the caller put in c->t / c->p (c zeroed first, then
 * filled); 0, or -1 for an unknown op. */
int fia_case_bind(fia_case *c, const char *op);

/* Allocates the oracle arrays and snapshots the in-place targets; call it before the run. 0, or
 * -1 out of memory. */
int fia_case_prepare(fia_case *c);

/* Runs the oracle (prepares first when fia_case_prepare was not called: right for operators
 * that write no input); 0, 1 (the contract refuses the call), -1. */
int fia_case_oracle(fia_case *c);

/* Plans and executes the call through the public API with a workspace of the asked size. */
fia_status fia_case_run(fia_case *c, fia_context *ctx);

/* The tolerance row of output i: per output (op_wide 0, the tests' rule), or (op_wide 1, what
 * `fia op --check` applies) the op-wide row of main_dtype for every float output (integer and
 * exact outputs keep their own row). */
const fia_ref_tolerance *fia_case_tolerance(const fia_case *c, int i, int op_wide);

/* Compares every output with the oracle; each[i] (may be NULL) receives output i's counts.
 * Returns the total failures. */
int64_t fia_case_check(const fia_case *c, int op_wide, fia_ref_check *each);

/* Rows (runs of row_len consecutive logical elements of every output; outputs whose element
 * count is not a multiple of row_len are skipped) holding at least one element outside the
 * tolerance (op_wide as fia_case_check); *rows (may be NULL) receives the row count of the
 * first output. The indexer's `fia op --check` counts rows this way. */
int64_t fia_case_failed_rows(const fia_case *c, int op_wide, int64_t row_len, int64_t *rows);

/* Frees what build / oracle allocated (not the caller's tensors). */
void fia_case_free(fia_case *c);

#endif /* FIA_REF_CASE_H */
