/*
 * tensor_spec.h - declarative tensor checks: an operator lists its tensors once (name, where the
 * pointer sits in its tensors struct, required or optional, unit inner stride, allowed dtypes or
 * the tensor whose dtype it must share) and this shared code checks them in a fixed order, with
 * the messages every operator used to write by hand:
 *   pass 1, required tensors in table order:  "<name> is NULL" ("... but <when_what>")
 *   pass 2, every given tensor in table order: fia_tensor_check (view, device, extent, stride)
 *   pass 3 (fia_tensor_spec_dtypes), every given tensor with a rule, in table order:
 *     "<name> dtype is <dtype>, must be <dtypes_what>"  or  "<name> dtype is <d>, <other> is <d2>"
 *     or, FIA_SPEC_SAME_OR: "<name> dtype is <d>, must be <d2> (the <other>'s) or <dtypes_what>"
 * An entry with `when` bits applies only to calls whose conditions (the _when variants' conds)
 * include all of them: otherwise the tensor is ignored (not required, not checked, not read),
 * or, with FIA_SPEC_ONLY_WHEN, refused in pass 1 when given (a mode's tensor passed to a call
 * of another mode): "<name> is given, but only read when <when_what>".
 *   pass 4 (fia_tensor_spec_dims), the shape rules (fia_dim_rule) in their order, under the same
 *     conditions: a tensor's rank or dim against another tensor of the table, a constant, or a
 *     value the operator derived (its batch, its heads, ...); fia_tensor_check_shape applies
 *     such rules to one tensor and a whole derived shape.
 * The operator keeps only what no table says: its shape algebra and conditional rules.
 */
#ifndef FIA_SCHED_TENSOR_SPEC_H
#define FIA_SCHED_TENSOR_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "fia.h"

enum {
    FIA_SPEC_REQUIRED = 1u << 0,  /* NULL is an error */
    FIA_SPEC_INNER_UNIT = 1u << 1, /* the innermost stride must be 1 */
    FIA_SPEC_SAME_OR = 1u << 2,    /* dtype: same_as's dtype, or one of dtypes */
    FIA_SPEC_ONLY_WHEN = 1u << 3   /* given to a call without the entry's `when` bits: an error */
};

#define FIA_DT(x) (1u << FIA_DTYPE_##x)
#define FIA_DT_FLOAT (FIA_DT(FLOAT16) | FIA_DT(BFLOAT16) | FIA_DT(FLOAT32))

typedef struct fia_tensor_spec {
    const char *name;
    size_t offset;           /* offsetof the (const) fia_tensor * in the operator's tensors struct */
    uint32_t flags;          /* FIA_SPEC_* */
    uint32_t dtypes;         /* FIA_DT bits allowed; 0: no dtype rule here */
    const char *dtypes_what; /* the allowed dtypes as the message lists them */
    int32_t same_as;         /* index of the entry whose dtype this one must have; -1: none */
    uint32_t when;           /* condition bits the call must have for the entry to apply; 0: always */
    const char *when_what;   /* the condition as the NULL message says it ("return_value is set") */
} fia_tensor_spec;

/* Passes 1 and 2 over spec[0..n) of the tensors struct at tensors (conds: the call's condition
 * bits; the plain forms pass 0, so entries with `when` bits are skipped). */
fia_status fia_tensor_spec_check_when(const void *tensors, const fia_tensor_spec *spec, size_t n,
                                      uint32_t conds);
fia_status fia_tensor_spec_check(const void *tensors, const fia_tensor_spec *spec, size_t n);

/* Pass 3: the dtype rules (call after fia_tensor_spec_check succeeded). */
fia_status fia_tensor_spec_dtypes_when(const void *tensors, const fia_tensor_spec *spec, size_t n,
                                       uint32_t conds);
fia_status fia_tensor_spec_dtypes(const void *tensors, const fia_tensor_spec *spec, size_t n);

/* A shape rule on table entry a (an index into the spec). Dims count from the end when negative
 * (-1: the innermost), so that one rule serves layouts of different ranks (BSND and TND); a rule
 * whose dim a tensor lacks, or whose tensor is NULL, is skipped (the rank rules come first).
 *   FIA_DIM_EQ:     dim ad of a == dim bd of entry b  "<a> dim <i> is <x>, <b> dim <j> is <y>"
 *   FIA_DIM_CONST:  dim ad of a == value              "<a> dim <i> is <x>, must be <value> (<what>)"
 *   FIA_DIM_VAL:    dim ad of a == vals[value], a value the operator derived and passes to
 *                   fia_tensor_spec_dims             "<a> dim <i> is <x>, <what> is <vals[value]>"
 *   FIA_RANK_EQ:    a has as many dims as entry b     "<a> has <n> dims, <b> has <m>"
 *   FIA_RANK_CONST: a has value dims                  "<a> has <n> dims, must be <value> (<what>)",
 *                   or with what NULL                 "<a> has <n> dims, expected <value>" */
typedef enum fia_dim_rule_kind {
    FIA_DIM_EQ = 0,
    FIA_DIM_CONST,
    FIA_DIM_VAL,
    FIA_RANK_EQ,
    FIA_RANK_CONST
} fia_dim_rule_kind;

typedef struct fia_dim_rule {
    uint8_t kind;     /* fia_dim_rule_kind */
    int8_t a, ad;     /* tensor (spec index) and dim */
    int8_t b, bd;     /* the other tensor and dim (FIA_DIM_EQ, FIA_RANK_EQ) */
    int64_t value;    /* FIA_DIM_CONST, FIA_RANK_CONST: the constant; FIA_DIM_VAL: index in vals */
    const char *what; /* what the value is, for the message (FIA_DIM_CONST NULL: "required") */
    uint32_t when;    /* condition bits the call must have for the rule to apply; 0: always */
} fia_dim_rule;

/* A whole shape the operator derived, as FIA_RANK_CONST (what NULL) and FIA_DIM_VAL rules on t
 * (named name): ndim dims of sizes want[i], what[i] naming want[i] in the message:
 * "<name> has <n> dims, expected <ndim>" / "<name> dim <i> is <v>, <what[i]> is <want[i]>". */
fia_status fia_tensor_check_shape(const fia_tensor *t, const char *name, int32_t ndim,
                                  const int64_t *want, const char *const *what);

/* Pass 4: rules[0..nr) over the tensors of spec (checked by the passes before); vals: the
 * derived values FIA_DIM_VAL rules read (NULL when there are none). */
fia_status fia_tensor_spec_dims(const void *tensors, const fia_tensor_spec *spec,
                                const fia_dim_rule *rules, size_t nr, uint32_t conds,
                                const int64_t *vals);

#define FIA_SPEC_COUNT(spec) (sizeof(spec) / sizeof((spec)[0]))

#endif /* FIA_SCHED_TENSOR_SPEC_H */
