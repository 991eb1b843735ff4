/*
 * fia/core.h - version, status, dtypes, tensor views, context, plans and layouts: what every
 * operator family of fia shares. Included by fia.h; see fia.h for how a call works.
 */
#ifndef FIA_CORE_H
#define FIA_CORE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define FIA_API
#else
#define FIA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Version                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define FIA_VERSION_MAJOR 0
#define FIA_VERSION_MINOR 2
#define FIA_VERSION_PATCH 0
#define FIA_VERSION_NUMBER (FIA_VERSION_MAJOR * 10000 + FIA_VERSION_MINOR * 100 + FIA_VERSION_PATCH)

/* Returns FIA_VERSION_NUMBER of the library actually linked. */
FIA_API unsigned fia_version_number(void);
/* Returns "MAJOR.MINOR.PATCH" of the library actually linked (static storage). */
FIA_API const char *fia_version_string(void);

/* ------------------------------------------------------------------------------------------ */
/* Status                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The values are fixed and will not change. */
typedef enum fia_status {
    FIA_STATUS_SUCCESS = 0,
    FIA_STATUS_INVALID_ARGUMENT = 1,    /* a tensor, shape, dtype, stride or value breaks the contract */
    FIA_STATUS_UNSUPPORTED = 2,         /* allowed by the operator contract, not implemented by fia */
    FIA_STATUS_OUT_OF_MEMORY = 3,       /* an allocation failed (plan, context or one-shot call) */
    FIA_STATUS_WORKSPACE_TOO_SMALL = 4, /* fia_plan_execute got fewer bytes than the plan asked for */
    FIA_STATUS_UNSUPPORTED_ISA = 5,     /* FIA_ISA or the options ask for an ISA this CPU lacks */
    FIA_STATUS_INTERNAL = 6             /* a bug in fia: please report it */
} fia_status;

/* Returns the name of a status ("FIA_STATUS_INVALID_ARGUMENT"); "FIA_STATUS_UNKNOWN" otherwise. */
FIA_API const char *fia_status_string(fia_status status);

/* Returns the message of the last failed call made by the calling thread ("" if none). The string
 * stays valid until the next fia call on this thread. */
FIA_API const char *fia_last_error(void);

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* The values are fixed. BFLOAT16 is stored as the upper 16 bits of an IEEE float32. */
typedef enum fia_dtype {
    FIA_DTYPE_FLOAT32 = 0,
    FIA_DTYPE_FLOAT16 = 1,
    FIA_DTYPE_BFLOAT16 = 2,
    FIA_DTYPE_INT8 = 3,
    FIA_DTYPE_UINT8 = 4,
    FIA_DTYPE_BOOL = 5, /* one byte, nonzero is true */
    FIA_DTYPE_INT32 = 6,
    FIA_DTYPE_INT64 = 7
} fia_dtype;

/* Returns the size of one element in bytes, 0 for an unknown dtype. */
FIA_API size_t fia_dtype_size(fia_dtype dtype);
/* Returns "float16", "bfloat16", ... ("unknown" for an unknown dtype). */
FIA_API const char *fia_dtype_name(fia_dtype dtype);

#define FIA_MAX_DIMS 8

/* Device types of fia_tensor.device_type (DLPack's DLDeviceType values). fia's CPU kernels
 * read and write host memory only. */
typedef enum fia_device_type {
    FIA_DEVICE_DEFAULT = 0, /* host memory (what a zero-initialised view means) */
    FIA_DEVICE_CPU = 1      /* DLPack kDLCPU: host memory */
} fia_device_type;

/* A strided view of memory the caller owns. It maps one-to-one onto DLPack's DLTensor: data +
 * byte_offset, device, dtype, ndim, shape, strides (strides count elements, not bytes, as in
 * DLPack). fia reads inputs and writes outputs through the view at execute time and never frees
 * them. Operators require the innermost stride of their main tensors to be 1 and all strides
 * >= 0; each operator says which tensors may have other strides.
 * The fields after strides were added in 0.2 (a zero-initialised or fia_tensor_init view sets
 * them to 0): byte_offset is added to data before any access, as in DLPack; device_type must be
 * FIA_DEVICE_DEFAULT or FIA_DEVICE_CPU and device_id 0 (anything else is
 * FIA_STATUS_UNSUPPORTED, naming the tensor). */
typedef struct fia_tensor {
    void *data;
    fia_dtype dtype;
    int32_t ndim; /* 0..FIA_MAX_DIMS */
    int64_t shape[FIA_MAX_DIMS];
    int64_t strides[FIA_MAX_DIMS]; /* in elements */
    uint64_t byte_offset;          /* bytes from data to the first element (DLPack) */
    int32_t device_type;           /* fia_device_type */
    int32_t device_id;             /* 0 */
} fia_tensor;

/* Fills *t (byte_offset 0, host device). strides == NULL gives compact row-major strides
 * (DLPack's NULL strides).
 * Returns FIA_STATUS_INVALID_ARGUMENT (and leaves *t untouched) for t == NULL, ndim outside
 * 0..FIA_MAX_DIMS, a negative dim, an unknown dtype or shape == NULL with ndim > 0. */
FIA_API fia_status fia_tensor_init(fia_tensor *t, void *data, fia_dtype dtype, int32_t ndim,
                                   const int64_t *shape, const int64_t *strides);

/* Number of elements (product of the shape; 1 for ndim 0). */
FIA_API int64_t fia_tensor_numel(const fia_tensor *t);

/* fp16/bf16 <-> fp32 conversions with round-to-nearest-even (NaN stays NaN). */
FIA_API float fia_f16_to_f32(uint16_t h);
FIA_API uint16_t fia_f32_to_f16(float f);
FIA_API float fia_bf16_to_f32(uint16_t b);
FIA_API uint16_t fia_f32_to_bf16(float f);

/* ------------------------------------------------------------------------------------------ */
/* Context                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef enum fia_isa {
    FIA_ISA_AUTO = 0, /* FIA_ISA if set, else the best level this CPU runs */
    FIA_ISA_SCALAR = 1,
    FIA_ISA_AVX2 = 2,   /* AVX2 + FMA + F16C */
    FIA_ISA_AVX512 = 3  /* AVX-512 F/BW/DQ/VL + FMA + F16C */
} fia_isa;

/* Returns "auto", "scalar", "avx2", "avx512" ("unknown" otherwise). */
FIA_API const char *fia_isa_name(fia_isa isa);

typedef struct fia_context_options {
    int32_t num_threads; /* 0: FIA_NUM_THREADS if set, else the number of online CPUs */
    fia_isa isa;         /* FIA_ISA_AUTO: FIA_ISA if set, else the best */
} fia_context_options;

typedef struct fia_context fia_context;

/* Creates a context: detects the CPU once, picks the kernel table and starts num_threads - 1
 * worker threads (the calling thread is the last worker).
 * options: NULL for the defaults. Returns FIA_STATUS_UNSUPPORTED_ISA when the requested level is
 * not available on this CPU, FIA_STATUS_INVALID_ARGUMENT for a negative or > 1024 thread count
 * or a bad FIA_ISA / FIA_NUM_THREADS value, FIA_STATUS_OUT_OF_MEMORY when a thread or
 * allocation fails. *ctx is set only on success. */
FIA_API fia_status fia_context_create(const fia_context_options *options, fia_context **ctx);

/* Stops the threads and frees the context. Plans made with it must be destroyed first. NULL is
 * a no-op. */
FIA_API void fia_context_destroy(fia_context *ctx);

/* The kernel level and thread count the context uses. */
FIA_API fia_isa fia_context_isa(const fia_context *ctx);
FIA_API int32_t fia_context_num_threads(const fia_context *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Plans                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct fia_plan fia_plan;

/* The workspace size in bytes the plan needs (also returned by the plan function). */
FIA_API size_t fia_plan_workspace_size(const fia_plan *plan);

/* Runs a plan on the context it was made with. workspace: at least fia_plan_workspace_size()
 * bytes, any alignment, owned by the caller, not shared with a concurrent execute; may be NULL
 * when the size is 0. Never allocates. Reads the inputs and writes the outputs at the addresses
 * given at plan time, so a plan can be re-run after the caller rewrites input contents in place.
 * Returns FIA_STATUS_WORKSPACE_TOO_SMALL (nothing written) when workspace_bytes is too small,
 * FIA_STATUS_INVALID_ARGUMENT for a NULL plan. */
FIA_API fia_status fia_plan_execute(fia_plan *plan, void *workspace, size_t workspace_bytes);

/* The compute unit the plan's fastest part runs on, which a roofline should judge it against:
 * "fma" (fp32 FMA), "bf16dp" (AVX512-BF16 dot products), "vnni" (int8 dot products),
 * "amx_bf16" or "amx_int8" (AMX tiles). Static storage; "fma" for NULL. */
FIA_API const char *fia_plan_compute_unit(const fia_plan *plan);

/* Frees a plan. NULL is a no-op. */
FIA_API void fia_plan_destroy(fia_plan *plan);


/* ------------------------------------------------------------------------------------------ */
/* Layouts                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Layouts of query / key / value / attention_out (torch_npu input_layout strings). */
typedef enum fia_layout {
    FIA_LAYOUT_BSH = 0,       /* [B, S, N*D] */
    FIA_LAYOUT_BSND = 1,      /* [B, S, N, D] */
    FIA_LAYOUT_BNSD = 2,      /* [B, N, S, D] */
    FIA_LAYOUT_TND = 3,       /* [T, N, D], sequences packed along T (cumulative lengths) */
    FIA_LAYOUT_BNSD_BSND = 4, /* inputs BNSD, attention_out BSND */
    FIA_LAYOUT_NTD = 5,       /* [N, T, D]: TND with the heads outermost (cumulative lengths) */
    FIA_LAYOUT_TND_NTD = 6,   /* inputs TND, attention_out [N, T, D] */
    FIA_LAYOUT_PA_BSND = 7,   /* reserved: paged [blocks, block_size, N, D] (MLA, indexer, SFA) */
    FIA_LAYOUT_PA_NZ = 8,     /* reserved: paged FRACTAL_NZ */
    FIA_LAYOUT_NTD_TND = 9    /* inputs NTD, attention_out [T, N, D] */
} fia_layout;

/* Parses "BSH", "BSND", ... into *layout. Returns FIA_STATUS_INVALID_ARGUMENT for an unknown
 * name. */
FIA_API fia_status fia_layout_parse(const char *name, fia_layout *layout);
/* Returns "BSH", "BSND", ... ("unknown" otherwise). */
FIA_API const char *fia_layout_name(fia_layout layout);

#ifdef __cplusplus
}
#endif

#endif /* FIA_CORE_H */
