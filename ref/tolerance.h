/*
 * tolerance.h - the one tolerance table and the one comparison of fia's correctness checks:
 * the tests, the fuzz targets, the benchmark's checks, `fia demo` and `fia op --check` all ask
 * this table how close an output must be to its double-precision oracle, and compare with
 * fia_ref_check_tensor. Public headers only (fia.h); nothing here is shared with src/.
 *
 * A row says, for an operator's output of a dtype, which rule applies:
 *   FIA_REF_TOL_CLOSE     |got - want| <= atol + rtol |want| + slack (inclusive; NaN never
 *                         passes; want = +-inf passes only for got = the same infinity); slack
 *                         is the oracle's own per-element allowance for a rounding tie of the
 *                         contract (C8's P cast, the prolog's bf16 intermediates, the indexer's
 *                         fp32 scores), 0 when the oracle gives none (the `quot` argument); a
 *                         negative slack makes the element exact (an element of an in-place
 *                         target the call must leave as it was);
 *   FIA_REF_TOL_EXACT     got == want, or both NaN (in-place targets, copies, indices);
 *   FIA_REF_TOL_INT_TIES  integer outputs: want is the unsaturated rounded quotient, clamped to
 *                         the output's range; got must equal it, or differ by 1 where the
 *                         unrounded quotient (the `quot` array) lies within tie_band of a .5 tie
 *                         (the library rounds an fp32 quotient, the oracle a double one).
 * Lookup: the first row (in table order, specific rows first) whose op, output and dtype match;
 * "*" / -1 match anything. The last rows are the default by dtype.
 */
#ifndef FIA_REF_TOLERANCE_H
#define FIA_REF_TOLERANCE_H

#include <stdint.h>

#include "fia.h"

typedef enum fia_ref_tol_rule {
    FIA_REF_TOL_CLOSE = 0,
    FIA_REF_TOL_EXACT = 1,
    FIA_REF_TOL_INT_TIES = 2,
} fia_ref_tol_rule;

typedef struct fia_ref_tolerance {
    const char *op;     /* operator name as `fia op` spells it; "*": any */
    const char *output; /* output name as the tensors struct spells it; "*": any */
    int dtype;          /* the output's fia_dtype; -1: any */
    fia_ref_tol_rule rule;
    double atol, rtol;  /* FIA_REF_TOL_CLOSE */
    double tie_band;    /* FIA_REF_TOL_INT_TIES */
} fia_ref_tolerance;

/* The row for (op, output, dtype); output NULL asks for the operator's dtype-wide row (what
 * `fia op --check` applies to every output of a call: the dtype of its main input). Never
 * NULL: the default rows match everything. */
const fia_ref_tolerance *fia_ref_tolerance_of(const char *op, const char *output, fia_dtype dtype);

/* The whole table and its length (for documentation and the tests). */
const fia_ref_tolerance *fia_ref_tolerance_table(int *count);

/* One element under tol: 1 when got passes for want (quot: the unrounded quotient for
 * INT_TIES, the oracle's slack for CLOSE, 0 when none); *tie (may be NULL) is set when it passes as a rounding tie. want is used as given (the
 * INT_TIES clamp to the output's range is the caller's, or fia_ref_check_tensor's). */
int fia_ref_tolerance_pass(const fia_ref_tolerance *tol, double got, double want, double quot,
                           int *tie);

/* An accumulated comparison: counts over every tensor compared into it. */
typedef struct fia_ref_check {
    int64_t elements;
    int64_t failures;
    int64_t ties;        /* FIA_REF_TOL_INT_TIES: elements accepted at +-1 */
    double max_abs_err;  /* over finite pairs */
    int64_t worst;       /* logical index of the worst failing element of the last tensor, -1 */
    double worst_excess; /* its |got - want| / (atol + rtol |want|), +inf for NaN / inf */
    double worst_got, worst_want;
    int64_t first;       /* logical index of the first failing element of the last tensor, -1 */
} fia_ref_check;

#define FIA_REF_CHECK_INIT {0, 0, 0, 0.0, -1, -1.0, 0.0, 0.0, -1}

/* Compares a tensor of any dtype (read through its strides, logical row-major order) with the
 * compact double array want[numel] under tol, adding to *c. quot: the unrounded quotients for
 * FIA_REF_TOL_INT_TIES, the oracle's per-element slack for FIA_REF_TOL_CLOSE (NULL: none). Returns the failures of this tensor. */
int64_t fia_ref_check_tensor(const fia_tensor *got, const double *want, const double *quot,
                             const fia_ref_tolerance *tol, fia_ref_check *c);

/* The same with atol / rtol given (rule FIA_REF_TOL_CLOSE; both 0: exact). */
int64_t fia_ref_check_close(const fia_tensor *got, const double *want, double atol, double rtol,
                            fia_ref_check *c);

/* Prints one line to stderr naming the output, the failure count and the worst element, when
 * c->failures > 0 (the tests' diagnostic). */
void fia_ref_check_report(const char *name, const fia_ref_check *c, const fia_ref_tolerance *tol);

#endif /* FIA_REF_TOLERANCE_H */
