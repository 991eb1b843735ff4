// _fia: the thin nanobind layer between the fia C API (include/fia.h, public headers only) and
// the torch_npu-shaped Python functions in python/fia/. Each operator is one function here that
// fills the C tensors and params structs and runs (or plans) the call with the GIL released;
// shapes of outputs, defaults, keyword checks and torch live in Python.
//
// Tensors arrive as numpy arrays, torch tensors or any DLPack / buffer-protocol object and are
// imported zero-copy with their strides (nanobind ndarray). numpy bfloat16 (ml_dtypes) is not a
// DLPack dtype: such an array is imported through its uint16 view, and uint16 (not a fia dtype)
// means bfloat16 here.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "fia.h"

namespace nb = nanobind;

namespace {

PyObject *g_error = nullptr;       // fia.FiaError(RuntimeError)
PyObject *g_invalid = nullptr;     // fia.FiaInvalidArgument(FiaError, ValueError)
PyObject *g_unsupported = nullptr; // fia.FiaUnsupported(FiaError, NotImplementedError)

[[noreturn]] void raise_status(fia_status st, const std::string &msg)
{
    PyObject *cls = g_error;
    if (st == FIA_STATUS_INVALID_ARGUMENT || st == FIA_STATUS_WORKSPACE_TOO_SMALL)
        cls = g_invalid;
    else if (st == FIA_STATUS_UNSUPPORTED || st == FIA_STATUS_UNSUPPORTED_ISA)
        cls = g_unsupported;
    else if (st == FIA_STATUS_OUT_OF_MEMORY)
        cls = PyExc_MemoryError;
    std::string text = msg.empty() ? std::string(fia_status_string(st)) : msg;
    PyObject *exc = PyObject_CallFunction(cls, "s", text.c_str());
    if (exc) {
        PyObject *code = PyLong_FromLong((long)st);
        if (code) {
            PyObject_SetAttrString(exc, "status", code);
            Py_DECREF(code);
        }
        PyErr_SetObject(cls, exc);
        Py_DECREF(exc);
    }
    throw nb::python_error();
}

[[noreturn]] void raise_invalid(const std::string &msg) { raise_status(FIA_STATUS_INVALID_ARGUMENT, msg); }

using InArr = nb::ndarray<nb::ro>;
using OutArr = nb::ndarray<>;

bool to_fia_dtype(nb::dlpack::dtype d, fia_dtype *out)
{
    using C = nb::dlpack::dtype_code;
    if (d.lanes != 1)
        return false;
    switch ((C)d.code) {
    case C::Float:
        if (d.bits == 32) { *out = FIA_DTYPE_FLOAT32; return true; }
        if (d.bits == 16) { *out = FIA_DTYPE_FLOAT16; return true; }
        return false;
    case C::Bfloat:
        if (d.bits == 16) { *out = FIA_DTYPE_BFLOAT16; return true; }
        return false;
    case C::Int:
        if (d.bits == 8) { *out = FIA_DTYPE_INT8; return true; }
        if (d.bits == 32) { *out = FIA_DTYPE_INT32; return true; }
        if (d.bits == 64) { *out = FIA_DTYPE_INT64; return true; }
        return false;
    case C::UInt:
        if (d.bits == 8) { *out = FIA_DTYPE_UINT8; return true; }
        if (d.bits == 16) { *out = FIA_DTYPE_BFLOAT16; return true; } // numpy bf16 view
        return false;
    case C::Bool:
        if (d.bits == 8) { *out = FIA_DTYPE_BOOL; return true; }
        return false;
    default:
        return false;
    }
}

// One tensor argument: absent (None) or a view imported zero-copy.
struct Tn {
    fia_tensor t;
    bool has = false;
    InArr keep_in;   // keeps the producer's buffer alive during the call
    OutArr keep_out;
    const fia_tensor *in() const { return has ? &t : nullptr; }
    fia_tensor *out() { return has ? &t : nullptr; }
};

template <class A> void fill(const A &a, fia_tensor &t, const char *name)
{
    std::memset(&t, 0, sizeof t);
    if (a.ndim() > FIA_MAX_DIMS)
        raise_invalid(std::string(name) + ": " + std::to_string(a.ndim()) + " dims, fia takes at most " +
                      std::to_string(FIA_MAX_DIMS));
    fia_dtype dt;
    if (!to_fia_dtype(a.dtype(), &dt))
        raise_invalid(std::string(name) + ": dtype (DLPack code " + std::to_string(a.dtype().code) + ", " +
                      std::to_string(a.dtype().bits) +
                      " bits) is not a fia dtype (float32, float16, bfloat16, int8, uint8, bool, int32, int64)");
    t.data = const_cast<void *>(static_cast<const void *>(a.data()));
    t.dtype = dt;
    t.ndim = (int32_t)a.ndim();
    for (size_t i = 0; i < a.ndim(); ++i) {
        t.shape[i] = (int64_t)a.shape(i);
        t.strides[i] = (int64_t)a.stride(i);
    }
    t.byte_offset = 0;
    t.device_type = a.device_type() == nb::device::cpu::value ? FIA_DEVICE_CPU : (int32_t)a.device_type();
    t.device_id = a.device_id();
}

// numpy arrays of ml_dtypes.bfloat16 are not importable as such: retry through .view("uint16").
nb::object bf16_view(nb::handle h)
{
    if (!nb::hasattr(h, "dtype") || !nb::hasattr(h, "view"))
        return nb::object();
    nb::object dt = h.attr("dtype");
    if (!nb::hasattr(dt, "name"))
        return nb::object();
    nb::object nm = dt.attr("name");
    if (!nb::isinstance<nb::str>(nm) || std::strcmp(nb::borrow<nb::str>(nm).c_str(), "bfloat16") != 0)
        return nb::object();
    return h.attr("view")("uint16");
}

[[noreturn]] void bad_object(nb::handle h, const char *name, bool out)
{
    std::string tn = nb::type_name(h.type()).c_str();
    raise_invalid(std::string(name) + ": expected " + (out ? "a writable " : "an ") +
                  "array (numpy, torch or __dlpack__), got " + tn);
}

// torch tensors: reading data_ptr / shape / stride / dtype directly costs ~0.3 us, DLPack
// export ~4 us per tensor (measured), so torch.Tensor (and subclasses) take this path.
struct TorchCache {
    PyTypeObject *tensor = nullptr;
    PyObject *dtypes[8] = {};         // indexed by fia_dtype
    PyObject *s_dtype, *s_shape, *s_stride, *s_data_ptr, *s_is_cpu;
    bool tried = false;
} g_torch;

bool is_torch_tensor(nb::handle h)
{
    if (!g_torch.tensor) {
        PyObject *mods = PyImport_GetModuleDict();
        PyObject *torch = PyDict_GetItemString(mods, "torch"); // borrowed
        if (!torch)
            return false; // torch not imported: no torch tensor can exist
        if (g_torch.tried)
            return false;
        g_torch.tried = true;
        PyObject *t = PyObject_GetAttrString(torch, "Tensor");
        if (!t || !PyType_Check(t)) {
            PyErr_Clear();
            Py_XDECREF(t);
            return false;
        }
        static const char *names[8] = {"float32", "float16", "bfloat16", "int8", "uint8", "bool", "int32", "int64"};
        for (int i = 0; i < 8; ++i) {
            g_torch.dtypes[i] = PyObject_GetAttrString(torch, names[i]); // kept for the process
            if (!g_torch.dtypes[i]) {
                PyErr_Clear();
                Py_DECREF(t);
                return false;
            }
        }
        g_torch.s_dtype = PyUnicode_InternFromString("dtype");
        g_torch.s_shape = PyUnicode_InternFromString("shape");
        g_torch.s_stride = PyUnicode_InternFromString("stride");
        g_torch.s_data_ptr = PyUnicode_InternFromString("data_ptr");
        g_torch.s_is_cpu = PyUnicode_InternFromString("is_cpu");
        g_torch.tensor = (PyTypeObject *)t;
    }
    return PyObject_TypeCheck(h.ptr(), g_torch.tensor);
}

void load_torch(nb::handle h, const char *name, Tn &dst)
{
    fia_tensor &t = dst.t;
    std::memset(&t, 0, sizeof t);
    nb::object dt = nb::steal(PyObject_GetAttr(h.ptr(), g_torch.s_dtype));
    if (!dt.is_valid()) throw nb::python_error();
    int code = -1;
    for (int i = 0; i < 8; ++i)
        if (dt.ptr() == g_torch.dtypes[i]) code = i;
    if (code < 0)
        raise_invalid(std::string(name) + ": dtype " + nb::str(dt).c_str() +
                      " is not a fia dtype (float32, float16, bfloat16, int8, uint8, bool, int32, int64)");
    nb::object cpu = nb::steal(PyObject_GetAttr(h.ptr(), g_torch.s_is_cpu));
    if (!cpu.is_valid()) throw nb::python_error();
    if (cpu.ptr() != Py_True)
        raise_status(FIA_STATUS_UNSUPPORTED, std::string(name) + ": only CPU tensors are supported (fia runs on the host)");
    nb::object shape = nb::steal(PyObject_GetAttr(h.ptr(), g_torch.s_shape));
    nb::object strides = nb::steal(PyObject_CallMethodNoArgs(h.ptr(), g_torch.s_stride));
    nb::object ptr = nb::steal(PyObject_CallMethodNoArgs(h.ptr(), g_torch.s_data_ptr));
    if (!shape.is_valid() || !strides.is_valid() || !ptr.is_valid()) throw nb::python_error();
    Py_ssize_t nd = PyTuple_Size(shape.ptr());
    if (nd < 0 || PyTuple_Size(strides.ptr()) != nd) throw nb::python_error();
    if (nd > FIA_MAX_DIMS)
        raise_invalid(std::string(name) + ": " + std::to_string(nd) + " dims, fia takes at most " +
                      std::to_string(FIA_MAX_DIMS));
    t.dtype = (fia_dtype)code;
    t.ndim = (int32_t)nd;
    for (Py_ssize_t i = 0; i < nd; ++i) {
        t.shape[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape.ptr(), i));
        t.strides[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(strides.ptr(), i));
    }
    t.data = PyLong_AsVoidPtr(ptr.ptr());
    if (PyErr_Occurred()) throw nb::python_error();
    t.device_type = FIA_DEVICE_CPU;
    dst.has = true;
}

void load_in(nb::handle h, const char *name, Tn &dst)
{
    if (h.is_none())
        return;
    if (is_torch_tensor(h))
        return load_torch(h, name, dst);
    if (!nb::try_cast(h, dst.keep_in, false)) {
        nb::object v = bf16_view(h);
        if (!v.is_valid() || !nb::try_cast(v, dst.keep_in, false))
            bad_object(h, name, false);
    }
    fill(dst.keep_in, dst.t, name);
    dst.has = true;
}

void load_out(nb::handle h, const char *name, Tn &dst)
{
    if (h.is_none())
        return;
    if (is_torch_tensor(h))
        return load_torch(h, name, dst);
    if (!nb::try_cast(h, dst.keep_out, false)) {
        nb::object v = bf16_view(h);
        if (!v.is_valid() || !nb::try_cast(v, dst.keep_out, false))
            bad_object(h, name, true);
    }
    fill(dst.keep_out, dst.t, name);
    dst.has = true;
}

// A length argument: None, a list / tuple of ints, or a 1-D integer array of any kind.
struct Lens {
    std::vector<int64_t> v;
    bool has = false;
    const int64_t *ptr() const { return has ? v.data() : nullptr; }
    int64_t count() const { return has ? (int64_t)v.size() : 0; }
};

void load_lens(nb::handle h, const char *name, Lens &dst)
{
    if (h.is_none())
        return;
    dst.has = true;
    if (PyList_Check(h.ptr()) || PyTuple_Check(h.ptr())) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(h.ptr());
        PyObject **items = PySequence_Fast_ITEMS(h.ptr());
        dst.v.resize((size_t)n);
        for (Py_ssize_t i = 0; i < n; ++i) {
            long long x = PyLong_AsLongLong(items[i]);
            if (x == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                nb::object idx = nb::steal(PyNumber_Index(items[i]));
                if (!idx.is_valid()) {
                    PyErr_Clear();
                    raise_invalid(std::string(name) + ": element " + std::to_string(i) + " is not an integer");
                }
                x = PyLong_AsLongLong(idx.ptr());
            }
            dst.v[(size_t)i] = (int64_t)x;
        }
        return;
    }
    InArr a;
    if (!nb::try_cast(h, a, false))
        raise_invalid(std::string(name) + ": expected None, a list of ints or a 1-D integer array, got " +
                      nb::type_name(h.type()).c_str());
    if (a.ndim() > 1)
        raise_invalid(std::string(name) + ": expected a 1-D array, got " + std::to_string(a.ndim()) + " dims");
    if (a.device_type() != nb::device::cpu::value)
        raise_status(FIA_STATUS_UNSUPPORTED, std::string(name) + ": only host (CPU) memory is supported");
    size_t n = a.ndim() == 0 ? 1 : a.shape(0);
    int64_t st = a.ndim() == 0 ? 0 : a.stride(0);
    nb::dlpack::dtype d = a.dtype();
    using C = nb::dlpack::dtype_code;
    if ((d.code != (uint8_t)C::Int && d.code != (uint8_t)C::UInt) || d.lanes != 1)
        raise_invalid(std::string(name) + ": expected an integer array");
    dst.v.resize(n);
    const char *base = static_cast<const char *>(a.data());
    size_t isz = d.bits / 8;
    for (size_t i = 0; i < n; ++i) {
        const char *p = base + (int64_t)i * st * (int64_t)isz;
        int64_t x;
        switch (d.bits) {
        case 8: x = d.code == (uint8_t)C::Int ? *(const int8_t *)p : *(const uint8_t *)p; break;
        case 16: x = d.code == (uint8_t)C::Int ? *(const int16_t *)p : *(const uint16_t *)p; break;
        case 32: x = d.code == (uint8_t)C::Int ? *(const int32_t *)p : *(const uint32_t *)p; break;
        case 64: x = *(const int64_t *)p; break;
        default: raise_invalid(std::string(name) + ": unsupported integer width");
        }
        dst.v[i] = x;
    }
}

fia_layout parse_layout(const char *name, const char *arg)
{
    fia_layout l;
    if (fia_layout_parse(name, &l) != FIA_STATUS_SUCCESS)
        raise_invalid(std::string(arg) + ": unknown layout \"" + name + "\"");
    return l;
}

// A context: the C context plus a one-shot workspace it reuses (guarded: calls on one context
// are serialized anyway).
struct Context {
    fia_context *ctx = nullptr;
    std::mutex mu;
    void *ws = nullptr;
    size_t ws_cap = 0;

    Context(int32_t num_threads, const char *isa)
    {
        fia_context_options o;
        o.num_threads = num_threads;
        o.isa = FIA_ISA_AUTO;
        if (!std::strcmp(isa, "scalar")) o.isa = FIA_ISA_SCALAR;
        else if (!std::strcmp(isa, "avx2")) o.isa = FIA_ISA_AVX2;
        else if (!std::strcmp(isa, "avx512")) o.isa = FIA_ISA_AVX512;
        else if (std::strcmp(isa, "auto") != 0)
            raise_invalid(std::string("isa: expected auto, scalar, avx2 or avx512, got ") + isa);
        fia_status st = fia_context_create(&o, &ctx);
        if (st != FIA_STATUS_SUCCESS)
            raise_status(st, fia_last_error());
    }
    ~Context()
    {
        fia_context_destroy(ctx);
        std::free(ws);
    }
    void *workspace(size_t bytes)
    {
        if (bytes > ws_cap) {
            std::free(ws);
            ws = std::malloc(bytes);
            ws_cap = ws ? bytes : 0;
        }
        return ws;
    }
};

// A planned call, re-runnable. The Python Plan keeps every tensor of the call alive.
struct Plan {
    fia_plan *plan = nullptr;
    nb::object ctx_keep; // the Context outlives its plans
    size_t ws_bytes = 0;
    void *ws = nullptr;
    std::mutex mu;
    ~Plan()
    {
        fia_plan_destroy(plan);
        std::free(ws);
    }
    void execute(nb::handle workspace)
    {
        Tn w;
        if (!workspace.is_none()) {
            load_out(workspace, "workspace", w);
            size_t bytes = (size_t)fia_tensor_numel(&w.t) * fia_dtype_size(w.t.dtype);
            bool contig = true;
            int64_t expect = 1;
            for (int i = w.t.ndim - 1; i >= 0; --i) {
                if (w.t.shape[i] != 1 && w.t.strides[i] != expect) contig = false;
                expect *= w.t.shape[i];
            }
            if (!contig)
                raise_invalid("workspace: must be contiguous");
            if (bytes < ws_bytes)
                raise_status(FIA_STATUS_WORKSPACE_TOO_SMALL, "workspace: " + std::to_string(bytes) +
                                                                 " bytes, the plan needs " + std::to_string(ws_bytes));
        }
        fia_status st;
        std::string err;
        {
            nb::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lk(mu);
            void *buf = w.has ? w.t.data : nullptr;
            size_t bytes = ws_bytes;
            if (!w.has && ws_bytes) {
                if (!ws) ws = std::malloc(ws_bytes);
                buf = ws;
            }
            st = (ws_bytes && !buf) ? FIA_STATUS_OUT_OF_MEMORY : fia_plan_execute(plan, buf, bytes);
            if (st != FIA_STATUS_SUCCESS) err = fia_last_error();
        }
        if (st != FIA_STATUS_SUCCESS)
            raise_status(st, err);
    }
};

// Plans the call with plan_fn (validation) and either runs it once (returns None) or returns the
// Plan. The GIL is released for both; the error message is read on the same thread.
template <class F> nb::object run(nb::handle ctx_obj, bool make_plan, F &&plan_fn)
{
    Context &ctx = nb::cast<Context &>(ctx_obj);
    fia_status st;
    fia_plan *p = nullptr;
    size_t ws = 0;
    std::string err;
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lk(ctx.mu);
        st = plan_fn(ctx.ctx, &p, &ws);
        if (st == FIA_STATUS_SUCCESS && !make_plan) {
            void *buf = ctx.workspace(ws);
            st = (ws && !buf) ? FIA_STATUS_OUT_OF_MEMORY : fia_plan_execute(p, buf, ws);
            fia_plan_destroy(p);
            p = nullptr;
        }
        if (st != FIA_STATUS_SUCCESS) err = fia_last_error();
    }
    if (st != FIA_STATUS_SUCCESS)
        raise_status(st, err);
    if (!make_plan)
        return nb::none();
    Plan *pl = new Plan();
    pl->plan = p;
    pl->ws_bytes = ws;
    pl->ctx_keep = nb::borrow(ctx_obj);
    return nb::cast(pl, nb::rv_policy::take_ownership);
}

// ---------------------------------------------------------------------------------------------
// Operators. Argument order: ctx, make_plan, input tensors, output tensors, lengths, params.
// ---------------------------------------------------------------------------------------------

nb::object op_fused_infer_attention_score(
    nb::handle ctx, bool make_plan, nb::handle query, nb::handle key, nb::handle value, nb::handle atten_mask,
    nb::handle block_table, nb::handle antiquant_scale, nb::handle antiquant_offset, nb::handle query_rope,
    nb::handle key_rope, nb::handle dequant_scale_query, nb::handle dequant_scale_key,
    nb::handle dequant_scale_value, nb::handle attention_out, nb::handle softmax_lse,
    nb::handle actual_seq_lengths, nb::handle actual_seq_lengths_kv, int64_t num_heads,
    int64_t num_key_value_heads, double scale, int64_t pre_tokens, int64_t next_tokens, const char *input_layout,
    int32_t sparse_mode, int64_t block_size, int32_t antiquant_mode, int32_t inner_precise,
    bool softmax_lse_flag, int32_t mla_rescale)
{
    Tn q, k, v, m, bt, as, ao, qr, kr, dq, dk, dv, o, lse;
    load_in(query, "query", q);
    load_in(key, "key", k);
    load_in(value, "value", v);
    load_in(atten_mask, "atten_mask", m);
    load_in(block_table, "block_table", bt);
    load_in(antiquant_scale, "antiquant_scale", as);
    load_in(antiquant_offset, "antiquant_offset", ao);
    load_in(query_rope, "query_rope", qr);
    load_in(key_rope, "key_rope", kr);
    load_in(dequant_scale_query, "dequant_scale_query", dq);
    load_in(dequant_scale_key, "dequant_scale_key", dk);
    load_in(dequant_scale_value, "dequant_scale_value", dv);
    load_out(attention_out, "attention_out", o);
    load_out(softmax_lse, "softmax_lse", lse);
    Lens lq, lkv;
    load_lens(actual_seq_lengths, "actual_seq_lengths", lq);
    load_lens(actual_seq_lengths_kv, "actual_seq_lengths_kv", lkv);

    fia_fused_infer_attention_score_params p;
    fia_fused_infer_attention_score_params_init(&p);
    p.num_heads = num_heads;
    p.num_key_value_heads = num_key_value_heads;
    p.scale = scale;
    p.pre_tokens = pre_tokens;
    p.next_tokens = next_tokens;
    p.input_layout = parse_layout(input_layout, "input_layout");
    p.sparse_mode = sparse_mode;
    p.block_size = block_size;
    p.antiquant_mode = antiquant_mode;
    p.inner_precise = inner_precise;
    p.softmax_lse_flag = softmax_lse_flag ? 1 : 0;
    p.mla_rescale = mla_rescale;
    p.actual_seq_lengths = lq.ptr();
    p.actual_seq_lengths_count = lq.count();
    p.actual_seq_lengths_kv = lkv.ptr();
    p.actual_seq_lengths_kv_count = lkv.count();

    fia_fused_infer_attention_score_tensors t;
    std::memset(&t, 0, sizeof t);
    t.query = q.in();
    t.key = k.in();
    t.value = v.in();
    t.atten_mask = m.in();
    t.block_table = bt.in();
    t.antiquant_scale = as.in();
    t.antiquant_offset = ao.in();
    t.query_rope = qr.in();
    t.key_rope = kr.in();
    t.attention_out = o.out();
    t.softmax_lse = lse.out();
    t.dequant_scale_query = dq.in();
    t.dequant_scale_key = dk.in();
    t.dequant_scale_value = dv.in();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_fused_infer_attention_score_plan(c, &t, &p, pl, ws);
    });
}

nb::object op_smallq_flash_attention(nb::handle ctx, bool make_plan, nb::handle query, nb::handle key,
                                     nb::handle value, nb::handle out)
{
    Tn q, k, v, o;
    load_in(query, "query", q);
    load_in(key, "key", k);
    load_in(value, "value", v);
    load_out(out, "out", o);
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        uint64_t bytes = 0;
        fia_status st = fia_smallq_flash_attention_get_workspace_size(c, q.in(), k.in(), v.in(), o.out(), &bytes, pl);
        if (st == FIA_STATUS_SUCCESS) *ws = (size_t)bytes;
        return st;
    });
}

void fill_sfa_params(fia_sparse_flash_attention_params &p, const Lens &lq, const Lens &lkv, double scale_value,
                     int64_t sparse_block_size, const char *layout_query, const char *layout_kv,
                     int32_t sparse_mode, int32_t attention_mode, bool return_softmax_lse)
{
    p.scale_value = scale_value;
    p.sparse_block_size = sparse_block_size;
    p.layout_query = parse_layout(layout_query, "layout_query");
    p.layout_kv = parse_layout(layout_kv, "layout_kv");
    p.sparse_mode = sparse_mode;
    p.attention_mode = attention_mode;
    p.return_softmax_lse = return_softmax_lse ? 1 : 0;
    p.actual_seq_lengths_query = lq.ptr();
    p.actual_seq_lengths_query_count = lq.count();
    p.actual_seq_lengths_kv = lkv.ptr();
    p.actual_seq_lengths_kv_count = lkv.count();
}

nb::object op_sparse_flash_attention(nb::handle ctx, bool make_plan, nb::handle query, nb::handle key,
                                     nb::handle value, nb::handle sparse_indices, nb::handle block_table,
                                     nb::handle query_rope, nb::handle key_rope, nb::handle sinks,
                                     nb::handle attention_out, nb::handle softmax_lse, nb::handle softmax_max,
                                     nb::handle softmax_sum, nb::handle actual_seq_lengths_query,
                                     nb::handle actual_seq_lengths_kv, double scale_value, int64_t sparse_block_size,
                                     const char *layout_query, const char *layout_kv, int32_t sparse_mode,
                                     int32_t attention_mode, bool return_softmax_lse)
{
    Tn q, k, v, si, bt, qr, kr, sk, o, lse, smax, ssum;
    load_in(query, "query", q);
    load_in(key, "key", k);
    load_in(value, "value", v);
    load_in(sparse_indices, "sparse_indices", si);
    load_in(block_table, "block_table", bt);
    load_in(query_rope, "query_rope", qr);
    load_in(key_rope, "key_rope", kr);
    load_in(sinks, "sinks", sk);
    load_out(attention_out, "attention_out", o);
    load_out(softmax_lse, "softmax_lse", lse);
    load_out(softmax_max, "softmax_max", smax);
    load_out(softmax_sum, "softmax_sum", ssum);
    Lens lq, lkv;
    load_lens(actual_seq_lengths_query, "actual_seq_lengths_query", lq);
    load_lens(actual_seq_lengths_kv, "actual_seq_lengths_kv", lkv);
    fia_sparse_flash_attention_params p;
    fia_sparse_flash_attention_params_init(&p);
    fill_sfa_params(p, lq, lkv, scale_value, sparse_block_size, layout_query, layout_kv, sparse_mode,
                    attention_mode, return_softmax_lse);
    fia_sparse_flash_attention_tensors t;
    std::memset(&t, 0, sizeof t);
    t.query = q.in();
    t.key = k.in();
    t.value = v.in();
    t.sparse_indices = si.in();
    t.block_table = bt.in();
    t.query_rope = qr.in();
    t.key_rope = kr.in();
    t.attention_out = o.out();
    t.softmax_lse = lse.out();
    t.softmax_max = smax.out();
    t.softmax_sum = ssum.out();
    t.sinks = sk.in();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_sparse_flash_attention_plan(c, &t, &p, pl, ws);
    });
}

nb::object op_kv_quant_sparse_flash_attention(
    nb::handle ctx, bool make_plan, nb::handle query, nb::handle key, nb::handle value, nb::handle sparse_indices,
    nb::handle block_table, nb::handle sinks, nb::handle attention_out, nb::handle softmax_lse,
    nb::handle softmax_max, nb::handle softmax_sum, nb::handle actual_seq_lengths_query,
    nb::handle actual_seq_lengths_kv, double scale_value, int32_t key_quant_mode, int32_t value_quant_mode,
    int64_t sparse_block_size, const char *layout_query, const char *layout_kv, int32_t sparse_mode,
    int32_t attention_mode, int32_t quant_scale_repo_mode, int64_t tile_size, int64_t rope_head_dim,
    bool return_softmax_lse)
{
    Tn q, k, v, si, bt, sk, o, lse, smax, ssum;
    load_in(query, "query", q);
    load_in(key, "key", k);
    load_in(value, "value", v);
    load_in(sparse_indices, "sparse_indices", si);
    load_in(block_table, "block_table", bt);
    load_in(sinks, "sinks", sk);
    load_out(attention_out, "attention_out", o);
    load_out(softmax_lse, "softmax_lse", lse);
    load_out(softmax_max, "softmax_max", smax);
    load_out(softmax_sum, "softmax_sum", ssum);
    Lens lq, lkv;
    load_lens(actual_seq_lengths_query, "actual_seq_lengths_query", lq);
    load_lens(actual_seq_lengths_kv, "actual_seq_lengths_kv", lkv);
    fia_kv_quant_sparse_flash_attention_params p;
    fia_kv_quant_sparse_flash_attention_params_init(&p);
    fill_sfa_params(p.base, lq, lkv, scale_value, sparse_block_size, layout_query, layout_kv, sparse_mode,
                    attention_mode, return_softmax_lse);
    p.key_quant_mode = key_quant_mode;
    p.value_quant_mode = value_quant_mode;
    p.quant_scale_repo_mode = quant_scale_repo_mode;
    p.tile_size = tile_size;
    p.rope_head_dim = rope_head_dim;
    fia_kv_quant_sparse_flash_attention_tensors t;
    std::memset(&t, 0, sizeof t);
    t.query = q.in();
    t.key = k.in();
    t.value = v.in();
    t.sparse_indices = si.in();
    t.block_table = bt.in();
    t.attention_out = o.out();
    t.softmax_lse = lse.out();
    t.softmax_max = smax.out();
    t.softmax_sum = ssum.out();
    t.sinks = sk.in();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_kv_quant_sparse_flash_attention_plan(c, &t, &p, pl, ws);
    });
}

// Both indexers: quant selects fia_quant_lightning_indexer_plan (scales required there).
nb::object op_lightning_indexer(nb::handle ctx, bool make_plan, bool quant, nb::handle query, nb::handle key,
                                nb::handle weights, nb::handle query_dequant_scale, nb::handle key_dequant_scale,
                                nb::handle block_table, nb::handle sparse_indices, nb::handle sparse_values,
                                nb::handle actual_seq_lengths_query, nb::handle actual_seq_lengths_key,
                                const char *layout_query, const char *layout_key, int64_t sparse_count,
                                int32_t sparse_mode, int64_t pre_tokens, int64_t next_tokens, bool return_value,
                                int32_t query_quant_mode, int32_t key_quant_mode, bool exact_ranking)
{
    Tn q, k, w, qs, ks, bt, si, sv;
    load_in(query, "query", q);
    load_in(key, "key", k);
    load_in(weights, "weights", w);
    load_in(query_dequant_scale, "query_dequant_scale", qs);
    load_in(key_dequant_scale, "key_dequant_scale", ks);
    load_in(block_table, "block_table", bt);
    load_out(sparse_indices, "sparse_indices", si);
    load_out(sparse_values, "sparse_values", sv);
    Lens lq, lk;
    load_lens(actual_seq_lengths_query, "actual_seq_lengths_query", lq);
    load_lens(actual_seq_lengths_key, "actual_seq_lengths_key", lk);
    fia_lightning_indexer_params p;
    fia_lightning_indexer_params_init(&p);
    p.layout_query = parse_layout(layout_query, "layout_query");
    p.layout_key = parse_layout(layout_key, "layout_key");
    p.sparse_count = sparse_count;
    p.sparse_mode = sparse_mode;
    p.pre_tokens = pre_tokens;
    p.next_tokens = next_tokens;
    p.return_value = return_value ? 1 : 0;
    p.actual_seq_lengths_query = lq.ptr();
    p.actual_seq_lengths_query_count = lq.count();
    p.actual_seq_lengths_key = lk.ptr();
    p.actual_seq_lengths_key_count = lk.count();
    p.query_quant_mode = query_quant_mode;
    p.key_quant_mode = key_quant_mode;
    p.exact_ranking = exact_ranking ? 1 : 0;
    fia_lightning_indexer_tensors t;
    std::memset(&t, 0, sizeof t);
    t.query = q.in();
    t.key = k.in();
    t.weights = w.in();
    t.query_dequant_scale = qs.in();
    t.key_dequant_scale = ks.in();
    t.block_table = bt.in();
    t.sparse_indices = si.out();
    t.sparse_values = sv.out();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return quant ? fia_quant_lightning_indexer_plan(c, &t, &p, pl, ws)
                     : fia_lightning_indexer_plan(c, &t, &p, pl, ws);
    });
}

// ---- the chain of the DeepSeek-V3.2 / GLM-5 layer: norms, RoPE, dynamic quant (fia/norm.h,
// fia/rope.h, fia/quant.h) ----

nb::object op_rms_norm(nb::handle ctx, bool make_plan, nb::handle x, nb::handle x2, nb::handle gamma,
                       nb::handle y, nb::handle rstd, nb::handle xsum, double epsilon)
{
    Tn tx, tx2, tg, ty, tr, ts;
    load_in(x, x2.is_none() ? "self" : "x1", tx);
    load_in(x2, "x2", tx2);
    load_in(gamma, "gamma", tg);
    load_out(y, "y", ty);
    load_out(rstd, "rstd", tr);
    load_out(xsum, "x", ts);
    fia_rms_norm_params p;
    fia_rms_norm_params_init(&p);
    p.epsilon = epsilon;
    if (!tx2.has) {
        fia_rms_norm_tensors t;
        std::memset(&t, 0, sizeof t);
        t.x = tx.in();
        t.gamma = tg.in();
        t.y = ty.out();
        t.rstd = tr.out();
        return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
            return fia_rms_norm_plan(c, &t, &p, pl, ws);
        });
    }
    fia_add_rms_norm_tensors t;
    std::memset(&t, 0, sizeof t);
    t.x1 = tx.in();
    t.x2 = tx2.in();
    t.gamma = tg.in();
    t.y = ty.out();
    t.rstd = tr.out();
    t.x = ts.out();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_add_rms_norm_plan(c, &t, &p, pl, ws);
    });
}

// rotary_mul (mode "half" / "interleave") or, with interleave_rope set, the MLA k_rope form.
nb::object op_rotary_mul(nb::handle ctx, bool make_plan, bool interleave_rope, nb::handle x, nb::handle cos,
                         nb::handle sin, nb::handle y, const char *rotary_mode)
{
    Tn tx, tc, ts, ty;
    load_in(x, interleave_rope ? "x" : "self", tx);
    load_in(cos, interleave_rope ? "cos" : "r1", tc);
    load_in(sin, interleave_rope ? "sin" : "r2", ts);
    load_out(y, "y", ty);
    fia_rotary_mul_tensors t;
    std::memset(&t, 0, sizeof t);
    t.x = tx.in();
    t.cos = tc.in();
    t.sin = ts.in();
    t.y = ty.out();
    if (interleave_rope) {
        fia_interleave_rope_params p;
        fia_interleave_rope_params_init(&p);
        return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
            return fia_interleave_rope_plan(c, &t, &p, pl, ws);
        });
    }
    fia_rotary_mul_params p;
    fia_rotary_mul_params_init(&p);
    if (!std::strcmp(rotary_mode, "half")) p.rotary_mode = FIA_ROTARY_MODE_HALF;
    else if (!std::strcmp(rotary_mode, "interleave")) p.rotary_mode = FIA_ROTARY_MODE_INTERLEAVE;
    else raise_invalid(std::string("rotary_mode: expected \"half\" or \"interleave\", got \"") + rotary_mode + "\"");
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_rotary_mul_plan(c, &t, &p, pl, ws);
    });
}

nb::object op_dynamic_quant(nb::handle ctx, bool make_plan, nb::handle x, nb::handle smooth_scales,
                            nb::handle group_index, nb::handle y, nb::handle scale, const char *quant_mode,
                            double dst_type_max)
{
    Tn tx, tsm, tg, ty, tsc;
    load_in(x, "input", tx);
    load_in(smooth_scales, "smooth_scales", tsm);
    load_in(group_index, "group_index", tg);
    load_out(y, "y", ty);
    load_out(scale, "scale", tsc);
    fia_dynamic_quant_params p;
    fia_dynamic_quant_params_init(&p);
    if (!std::strcmp(quant_mode, "pertoken")) p.quant_mode = FIA_QUANT_MODE_PERTOKEN;
    else if (!std::strcmp(quant_mode, "pertensor")) p.quant_mode = FIA_QUANT_MODE_PERTENSOR;
    else if (!std::strcmp(quant_mode, "perchannel")) p.quant_mode = FIA_QUANT_MODE_PERCHANNEL;
    else raise_invalid(std::string("quant_mode: expected pertoken, pertensor or perchannel, got \"") + quant_mode + "\"");
    p.dst_type_max = dst_type_max;
    fia_dynamic_quant_tensors t;
    std::memset(&t, 0, sizeof t);
    t.x = tx.in();
    t.smooth_scales = tsm.in();
    t.group_index = tg.in();
    t.y = ty.out();
    t.scale = tsc.out();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_dynamic_quant_plan(c, &t, &p, pl, ws);
    });
}

// ---- cache writes (fia/cache.h) and the MLA prolog (fia/prolog.h) ----

nb::object op_scatter_update(nb::handle ctx, bool make_plan, nb::handle data, nb::handle indices,
                             nb::handle updates, int64_t axis)
{
    Tn d, i, u;
    load_out(data, "self", d);
    load_in(indices, "indices", i);
    load_in(updates, "updates", u);
    fia_scatter_update_params p;
    fia_scatter_update_params_init(&p);
    p.axis = axis;
    fia_scatter_update_tensors t;
    std::memset(&t, 0, sizeof t);
    t.data = d.out();
    t.indices = i.in();
    t.updates = u.in();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_scatter_update_plan(c, &t, &p, pl, ws);
    });
}

nb::object op_scatter_nd_update(nb::handle ctx, bool make_plan, nb::handle input, nb::handle indices,
                                nb::handle updates, const char *cache_mode)
{
    Tn d, i, u;
    load_out(input, "self", d);
    load_in(indices, "indices", i);
    load_in(updates, "updates", u);
    fia_scatter_nd_update_params p;
    fia_scatter_nd_update_params_init(&p);
    p.cache_mode = parse_layout(cache_mode, "cache_mode");
    fia_scatter_nd_update_tensors t;
    std::memset(&t, 0, sizeof t);
    t.input = d.out();
    t.indices = i.in();
    t.updates = u.in();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_scatter_nd_update_plan(c, &t, &p, pl, ws);
    });
}

nb::object op_gather_selection_kv_cache(nb::handle ctx, bool make_plan, nb::handle selection_k_rope,
                                        nb::handle selection_kv_cache, nb::handle selection_kv_block_table,
                                        nb::handle selection_kv_block_status, nb::handle selection_topk_indices,
                                        nb::handle full_k_rope, nb::handle full_kv_cache,
                                        nb::handle full_kv_block_table, nb::handle full_kv_actual_seq,
                                        nb::handle full_q_actual_seq, nb::handle selection_kv_actual_seq,
                                        int64_t selection_topk_block_size)
{
    Tn sr, skv, st, ss, tk, fr, fkv, ft, kl, ql, out;
    load_out(selection_k_rope, "selection_k_rope", sr);
    load_out(selection_kv_cache, "selection_kv_cache", skv);
    load_in(selection_kv_block_table, "selection_kv_block_table", st);
    load_out(selection_kv_block_status, "selection_kv_block_status", ss);
    load_in(selection_topk_indices, "selection_topk_indices", tk);
    load_in(full_k_rope, "full_k_rope", fr);
    load_in(full_kv_cache, "full_kv_cache", fkv);
    load_in(full_kv_block_table, "full_kv_block_table", ft);
    load_in(full_kv_actual_seq, "full_kv_actual_seq", kl);
    load_in(full_q_actual_seq, "full_q_actual_seq", ql);
    load_out(selection_kv_actual_seq, "selection_kv_actual_seq", out);
    fia_gather_selection_kv_cache_params p;
    fia_gather_selection_kv_cache_params_init(&p);
    p.selection_topk_block_size = selection_topk_block_size;
    fia_gather_selection_kv_cache_tensors t;
    std::memset(&t, 0, sizeof t);
    t.selection_k_rope = sr.out();
    t.selection_kv_cache = skv.out();
    t.selection_kv_block_table = st.in();
    t.selection_kv_block_status = ss.out();
    t.selection_topk_indices = tk.in();
    t.full_k_rope = fr.in();
    t.full_kv_cache = fkv.in();
    t.full_kv_block_table = ft.in();
    t.full_kv_actual_seq = kl.in();
    t.full_q_actual_seq = ql.in();
    t.selection_kv_actual_seq = out.out();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_gather_selection_kv_cache_plan(c, &t, &p, pl, ws);
    });
}

nb::object op_mla_prolog_v3(nb::handle ctx, bool make_plan, nb::handle token_x, nb::handle weight_dq,
                            nb::handle weight_uq_qr, nb::handle weight_uk, nb::handle weight_dkv_kr,
                            nb::handle gamma_cq, nb::handle gamma_ckv, nb::handle rope_sin, nb::handle rope_cos,
                            nb::handle kv_cache, nb::handle kr_cache, nb::handle cache_index,
                            nb::handle query_out, nb::handle query_rope_out, nb::handle query_norm,
                            nb::handle quant_scale_ckv, nb::handle quant_scale_ckr,
                            nb::handle k_nope_clip_alpha, nb::handle dequant_scale_q_nope,
                            double eps_cq, double eps_ckv, const char *cache_mode, bool query_norm_flag,
                            int32_t weight_quant_mode, int32_t kv_cache_quant_mode, int32_t query_quant_mode,
                            int32_t ckvkr_repo_mode, int32_t quant_scale_repo_mode, int64_t tile_size,
                            double qc_qr_scale, double kc_scale)
{
    Tn x, wdq, wuq, wuk, wdkv, gcq, gckv, sn, cs, kv, kr, ci, qo, qro, qn, qsv, qsr, alpha, dqn;
    load_in(token_x, "token_x", x);
    load_in(weight_dq, "weight_dq", wdq);
    load_in(weight_uq_qr, "weight_uq_qr", wuq);
    load_in(weight_uk, "weight_uk", wuk);
    load_in(weight_dkv_kr, "weight_dkv_kr", wdkv);
    load_in(gamma_cq, "rmsnorm_gamma_cq", gcq);
    load_in(gamma_ckv, "rmsnorm_gamma_ckv", gckv);
    load_in(rope_sin, "rope_sin", sn);
    load_in(rope_cos, "rope_cos", cs);
    load_out(kv_cache, "kv_cache", kv);
    load_out(kr_cache, "kr_cache", kr);
    load_in(cache_index, "cache_index", ci);
    load_out(query_out, "query_out", qo);
    load_out(query_rope_out, "query_rope_out", qro);
    load_out(query_norm, "query_norm", qn);
    load_in(quant_scale_ckv, "quant_scale_ckv", qsv);
    load_in(quant_scale_ckr, "quant_scale_ckr", qsr);
    load_in(k_nope_clip_alpha, "k_nope_clip_alpha", alpha);
    load_out(dequant_scale_q_nope, "dequant_scale_q_nope", dqn);
    fia_mla_prolog_v3_params p;
    fia_mla_prolog_v3_params_init(&p);
    p.rmsnorm_epsilon_cq = eps_cq;
    p.rmsnorm_epsilon_ckv = eps_ckv;
    p.cache_mode = parse_layout(cache_mode, "cache_mode");
    p.query_norm_flag = query_norm_flag ? 1 : 0;
    p.weight_quant_mode = weight_quant_mode;
    p.kv_cache_quant_mode = kv_cache_quant_mode;
    p.query_quant_mode = query_quant_mode;
    p.ckvkr_repo_mode = ckvkr_repo_mode;
    p.quant_scale_repo_mode = quant_scale_repo_mode;
    p.tile_size = tile_size;
    p.qc_qr_scale = qc_qr_scale;
    p.kc_scale = kc_scale;
    fia_mla_prolog_v3_tensors t;
    std::memset(&t, 0, sizeof t);
    t.token_x = x.in();
    t.weight_dq = wdq.in();
    t.weight_uq_qr = wuq.in();
    t.weight_uk = wuk.in();
    t.weight_dkv_kr = wdkv.in();
    t.rmsnorm_gamma_cq = gcq.in();
    t.rmsnorm_gamma_ckv = gckv.in();
    t.rope_sin = sn.in();
    t.rope_cos = cs.in();
    t.kv_cache = kv.out();
    t.kr_cache = kr.out();
    t.cache_index = ci.in();
    t.query_out = qo.out();
    t.query_rope_out = qro.out();
    t.query_norm = qn.out();
    t.quant_scale_ckv = qsv.in();
    t.quant_scale_ckr = qsr.in();
    t.k_nope_clip_alpha = alpha.in();
    t.dequant_scale_q_nope = dqn.out();
    return run(ctx, make_plan, [&](fia_context *c, fia_plan **pl, size_t *ws) {
        return fia_mla_prolog_v3_plan(c, &t, &p, pl, ws);
    });
}

// Binds an operator with every argument accepting None (tensors and lengths are optional; the
// Python wrapper passes all arguments positionally).
template <typename R, typename... A> void def_op(nb::module_ &m, const char *name, R (*f)(A...))
{
    m.def(name, f, ((void)sizeof(A), nb::arg().none())...);
}

} // namespace

NB_MODULE(_fia, m)
{
    m.doc() = "fia C API binding (internal: use the fia package)";

    g_error = PyErr_NewException("fia.FiaError", PyExc_RuntimeError, nullptr);
    PyObject *b1 = PyTuple_Pack(2, g_error, PyExc_ValueError);
    g_invalid = PyErr_NewException("fia.FiaInvalidArgument", b1, nullptr);
    Py_DECREF(b1);
    PyObject *b2 = PyTuple_Pack(2, g_error, PyExc_NotImplementedError);
    g_unsupported = PyErr_NewException("fia.FiaUnsupported", b2, nullptr);
    Py_DECREF(b2);
    m.attr("FiaError") = nb::borrow(g_error);
    m.attr("FiaInvalidArgument") = nb::borrow(g_invalid);
    m.attr("FiaUnsupported") = nb::borrow(g_unsupported);

    m.attr("version") = fia_version_string();

    nb::class_<Context>(m, "Context")
        .def(nb::init<int32_t, const char *>(), nb::arg("num_threads") = 0, nb::arg("isa") = "auto")
        .def_prop_ro("num_threads", [](const Context &c) { return fia_context_num_threads(c.ctx); })
        .def_prop_ro("isa", [](const Context &c) { return fia_isa_name(fia_context_isa(c.ctx)); });

    nb::class_<Plan>(m, "Plan")
        .def_prop_ro("workspace_size", [](const Plan &p) { return p.ws_bytes; })
        .def("execute", &Plan::execute, nb::arg("workspace").none() = nb::none());

    def_op(m, "fused_infer_attention_score", &op_fused_infer_attention_score);
    def_op(m, "smallq_flash_attention", &op_smallq_flash_attention);
    def_op(m, "sparse_flash_attention", &op_sparse_flash_attention);
    def_op(m, "kv_quant_sparse_flash_attention", &op_kv_quant_sparse_flash_attention);
    def_op(m, "lightning_indexer", &op_lightning_indexer);
    def_op(m, "rms_norm", &op_rms_norm);
    def_op(m, "rotary_mul", &op_rotary_mul);
    def_op(m, "dynamic_quant", &op_dynamic_quant);
    def_op(m, "scatter_update", &op_scatter_update);
    def_op(m, "scatter_nd_update", &op_scatter_nd_update);
    def_op(m, "mla_prolog_v3", &op_mla_prolog_v3);
    def_op(m, "gather_selection_kv_cache", &op_gather_selection_kv_cache);
}
