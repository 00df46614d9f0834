"""ctypes binding of runtime/dmattn.h for the library shipped in this package.

Every call whose status is not DM_OK raises DmError with the status's name and the context's
message (the C library names the argument and what it expected); nothing here re-checks what the
library checks. $DMATTN_LIBRARY overrides which libdmattn.so is loaded (a build tree's).
"""
import ctypes
import os
import threading

DM_OK = 0
DM_NO_DEVICE = -1
DM_DTYPE_NONE, DM_F16, DM_BF16, DM_F32, DM_BOOL, DM_I32 = 0, 1, 2, 3, 4, 5
DM_MAX_RANK = 4


class DmTensor(ctypes.Structure):
    """dm_tensor: device pointer, dtype, rank, shape and strides (in elements)."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("rank", ctypes.c_int),
        ("shape", ctypes.c_int64 * DM_MAX_RANK),
        ("strides", ctypes.c_int64 * DM_MAX_RANK),
    ]


assert ctypes.sizeof(DmTensor) == 80, ctypes.sizeof(DmTensor)


class DmError(RuntimeError):
    """A dmattn call failed: .status is the dm_status name ("DM_ERR_INVALID_ARG", ...), the
    message the library's (which argument, what was expected)."""

    def __init__(self, status, message):
        super().__init__("%s: %s" % (status, message))
        self.status = status


def library_path():
    """The libdmattn.so this package loads: $DMATTN_LIBRARY, else the one inside the package."""
    env = os.environ.get("DMATTN_LIBRARY")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "libdmattn.so")


_lib = None
_lib_lock = threading.Lock()


def _load():
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        path = library_path()
        if not os.path.exists(path):
            raise OSError("dmattn: no C library at %s (build the package with pip install ./python, "
                          "or set DMATTN_LIBRARY)" % path)
        lib = ctypes.CDLL(path)
        vp, ci = ctypes.c_void_p, ctypes.c_int
        sigs = {
            "dm_version": ([], ci),
            "dm_version_string": ([], ctypes.c_char_p),
            "dm_status_name": ([ci], ctypes.c_char_p),
            "dm_ctx_create": ([ctypes.POINTER(vp), ci], ci),
            "dm_ctx_destroy": ([vp], None),
            "dm_errmsg": ([vp], ctypes.c_char_p),
            "dm_ctx_set_cache_dir": ([vp, ctypes.c_char_p], ci),
            "dm_ctx_set_arch": ([vp, ctypes.c_char_p], ci),
            "dm_ctx_arch": ([vp], ctypes.c_char_p),
            "dm_prebuild": ([vp, ctypes.c_char_p, ctypes.POINTER(ci)], ci),
            "dm_ctx_set_allocator": ([vp, ALLOC_FN, FREE_FN, vp], ci),
        }
        for name, (args, res) in sigs.items():
            f = getattr(lib, name)
            f.argtypes, f.restype = args, res
        _bind_calls(lib)
        _lib = lib
        return lib


def version():
    """DM_VERSION_NUM of the loaded library (major * 10000 + minor * 100 + patch)."""
    return _load().dm_version()


def version_string():
    return _load().dm_version_string().decode()


# dm_alloc_fn / dm_free_fn (dmattn.h): the scratch allocator's C signatures
ALLOC_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                            ctypes.c_void_p, ctypes.c_void_p)
FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_void_p)


class Context:
    """A dm_ctx: one per device (it uses the CUDA context current on the calling thread, else the
    device's primary context, as PyTorch does), or offline with DM_NO_DEVICE (code generation and
    ahead-of-time builds, no launches). One thread at a time per context."""

    def __init__(self, device=DM_NO_DEVICE, cache_dir=None, arch=None):
        lib = _load()
        self._lib = lib
        self._ctx = ctypes.c_void_p()
        st = lib.dm_ctx_create(ctypes.byref(self._ctx), int(device))
        if st != DM_OK:
            err = self._error("dm_ctx_create(%d)" % device, st)
            self.close()
            raise err
        if cache_dir is not None:
            self._check("dm_ctx_set_cache_dir", lib.dm_ctx_set_cache_dir(self._ctx,
                                                                        os.fsencode(cache_dir)))
        if arch is not None:
            self._check("dm_ctx_set_arch", lib.dm_ctx_set_arch(self._ctx, arch.encode()))

    def _error(self, call, st):
        name = self._lib.dm_status_name(st).decode()
        return DmError(name, self._lib.dm_errmsg(self._ctx).decode(errors="replace") or call)

    def _check(self, call, st):
        if st != DM_OK:
            raise self._error(call, st)

    @property
    def arch(self):
        """The target arch kernels are built for ("sm90a")."""
        return self._lib.dm_ctx_arch(self._ctx).decode()

    def prebuild(self, variant):
        """Compiles variant (its canonical key, e.g. "fwd.d128.bf16.mask-k.bias-none.w0.sm90a")
        into the disk cache, as `dmgen build` does. Returns True when it was already cached."""
        cached = ctypes.c_int(0)
        self._check("dm_prebuild", self._lib.dm_prebuild(self._ctx, variant.encode(),
                                                         ctypes.byref(cached)))
        return bool(cached.value)

    def set_allocator(self, alloc=None, free=None):
        """dm_ctx_set_allocator: the scratch a call needs (split-KV partials, the backward's rows,
        window masks) from alloc(nbytes, stream) -> device address (an int; raise on failure: the
        call then fails with DM_ERR_NOMEM), given back by free(address, nbytes, stream), both in
        the stream's order (stream: the CUstream as an int, 0 the legacy one). Neither (the
        default): cuMemAllocAsync / cuMemFreeAsync. The callbacks are kept alive here."""
        if (alloc is None) != (free is None):
            raise ValueError("dmattn: set_allocator: give both alloc and free, or neither")
        if alloc is None:
            c_alloc, c_free = ALLOC_FN(), FREE_FN()  # NULL function pointers
        else:
            def c_alloc_py(ptr, nbytes, stream, user):
                try:
                    ptr[0] = int(alloc(nbytes, stream or 0))
                    return 0 if ptr[0] else 1
                except Exception:  # noqa: BLE001  (an exception cannot cross the C frames)
                    return 1

            def c_free_py(address, nbytes, stream, user):
                try:
                    free(address, nbytes, stream or 0)
                except Exception:  # noqa: BLE001
                    pass

            c_alloc, c_free = ALLOC_FN(c_alloc_py), FREE_FN(c_free_py)
        self._check("dm_ctx_set_allocator",
                    self._lib.dm_ctx_set_allocator(self._ctx, c_alloc, c_free, None))
        self._allocator = (c_alloc, c_free)

    def close(self):
        """Destroys the context (idempotent)."""
        if self._ctx:
            self._lib.dm_ctx_destroy(self._ctx)
            self._ctx = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown: the library may be gone)
            pass


class DmFwdArgs(ctypes.Structure):
    """dm_fwd_args (dmattn.h): zero means the documented default."""

    _fields_ = [
        ("q", DmTensor),
        ("k", DmTensor),
        ("v", DmTensor),
        ("mask", DmTensor),
        ("bias", DmTensor),
        ("o", DmTensor),
        ("lse", DmTensor),
        ("scale", ctypes.c_float),
        ("softcap", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("window", ctypes.c_int),
        ("path", ctypes.c_int),
        ("num_splits", ctypes.c_int),
    ]


class DmBwdArgs(ctypes.Structure):
    """dm_bwd_args (dmattn.h)."""

    _fields_ = [
        ("dout", DmTensor),
        ("q", DmTensor),
        ("k", DmTensor),
        ("v", DmTensor),
        ("o", DmTensor),
        ("lse", DmTensor),
        ("mask", DmTensor),
        ("bias", DmTensor),
        ("dq", DmTensor),
        ("dk", DmTensor),
        ("dv", DmTensor),
        ("dbias", DmTensor),
        ("scale", ctypes.c_float),
        ("softcap", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("deterministic", ctypes.c_int),
    ]


DM_PATH_AUTO, DM_PATH_TILED, DM_PATH_DECODE = 0, 1, 2  # dm_fwd_path


class DmFwdVarlenArgs(ctypes.Structure):
    """dm_fwd_varlen_args (dmattn.h)."""

    _fields_ = [
        ("q", DmTensor),
        ("k", DmTensor),
        ("v", DmTensor),
        ("cu_seqlens_q", DmTensor),
        ("cu_seqlens_k", DmTensor),
        ("max_seqlen_q", ctypes.c_int64),
        ("max_seqlen_k", ctypes.c_int64),
        ("mask", DmTensor),
        ("bias", DmTensor),
        ("o", DmTensor),
        ("lse", DmTensor),
        ("scale", ctypes.c_float),
        ("softcap", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("window", ctypes.c_int),
        ("path", ctypes.c_int),
        ("num_splits", ctypes.c_int),
    ]


class DmBwdVarlenArgs(ctypes.Structure):
    """dm_bwd_varlen_args (dmattn.h)."""

    _fields_ = [
        ("dout", DmTensor),
        ("q", DmTensor),
        ("k", DmTensor),
        ("v", DmTensor),
        ("o", DmTensor),
        ("lse", DmTensor),
        ("cu_seqlens_q", DmTensor),
        ("cu_seqlens_k", DmTensor),
        ("max_seqlen_q", ctypes.c_int64),
        ("max_seqlen_k", ctypes.c_int64),
        ("mask", DmTensor),
        ("bias", DmTensor),
        ("dq", DmTensor),
        ("dk", DmTensor),
        ("dv", DmTensor),
        ("dbias", DmTensor),
        ("scale", ctypes.c_float),
        ("softcap", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("deterministic", ctypes.c_int),
    ]


class DmWindowMaskVarlenArgs(ctypes.Structure):
    """dm_window_mask_varlen_args (dmattn.h): SPEC 4's window mask per varlen sequence."""

    _fields_ = [
        ("bias", DmTensor),
        ("mask", DmTensor),
        ("out", DmTensor),
        ("cu_seqlens_q", DmTensor),
        ("cu_seqlens_k", DmTensor),
        ("total_q", ctypes.c_int64),
        ("total_k", ctypes.c_int64),
        ("max_seqlen_q", ctypes.c_int64),
        ("max_seqlen_k", ctypes.c_int64),
        ("window", ctypes.c_int),
        ("has_min_value", ctypes.c_int),
        ("min_value", ctypes.c_double),
        ("relu", ctypes.c_int),
        ("block_size", ctypes.c_int),
    ]


class DmWindowMaskArgs(ctypes.Structure):
    """dm_window_mask_args (dmattn.h): SPEC 4's top-k window mask."""

    _fields_ = [
        ("bias", DmTensor),
        ("mask", DmTensor),
        ("out", DmTensor),
        ("B", ctypes.c_int64),
        ("Lq", ctypes.c_int64),
        ("Lk", ctypes.c_int64),
        ("window", ctypes.c_int),
        ("has_min_value", ctypes.c_int),
        ("min_value", ctypes.c_double),
        ("relu", ctypes.c_int),
        ("block_size", ctypes.c_int),
    ]


assert ctypes.sizeof(DmFwdArgs) == 7 * 80 + 24, ctypes.sizeof(DmFwdArgs)
assert ctypes.sizeof(DmWindowMaskArgs) == 3 * 80 + 3 * 8 + 8 + 8 + 8, ctypes.sizeof(DmWindowMaskArgs)
assert ctypes.sizeof(DmFwdVarlenArgs) == 9 * 80 + 2 * 8 + 24, ctypes.sizeof(DmFwdVarlenArgs)
assert ctypes.sizeof(DmBwdArgs) == 12 * 80 + 16, ctypes.sizeof(DmBwdArgs)
assert ctypes.sizeof(DmBwdVarlenArgs) == 14 * 80 + 2 * 8 + 16, ctypes.sizeof(DmBwdVarlenArgs)
assert ctypes.sizeof(DmWindowMaskVarlenArgs) == 5 * 80 + 4 * 8 + 8 + 8 + 8, \
    ctypes.sizeof(DmWindowMaskVarlenArgs)


def _bind_calls(lib):
    """The entry points that take argument structs and a stream (bound on first use)."""
    for name, args_type in (("dm_fwd", DmFwdArgs), ("dm_fwd_varlen", DmFwdVarlenArgs),
                            ("dm_bwd", DmBwdArgs), ("dm_bwd_varlen", DmBwdVarlenArgs)):
        f = getattr(lib, name)
        f.argtypes = [ctypes.c_void_p, ctypes.POINTER(args_type), ctypes.c_void_p]
        f.restype = ctypes.c_int
    for name, args_type in (("dm_window_mask", DmWindowMaskArgs),
                            ("dm_window_mask_varlen", DmWindowMaskVarlenArgs)):
        f = getattr(lib, name)
        f.argtypes = [ctypes.c_void_p, ctypes.POINTER(args_type), ctypes.POINTER(ctypes.c_int),
                      ctypes.c_void_p]
        f.restype = ctypes.c_int


def window_mask(ctx, args, stream):
    """dm_window_mask(ctx, args, &applied, stream): args a DmWindowMaskArgs; True when the
    kernel was queued (out written), False when the mask stands unchanged (no window, or Lk <=
    window: out untouched)."""
    applied = ctypes.c_int(0)
    ctx._check("dm_window_mask", ctx._lib.dm_window_mask(ctx._ctx, ctypes.byref(args),
                                                         ctypes.byref(applied), stream))
    return bool(applied.value)


def window_mask_varlen(ctx, args, stream):
    """dm_window_mask_varlen(ctx, args, &applied, stream): as window_mask."""
    applied = ctypes.c_int(0)
    ctx._check("dm_window_mask_varlen", ctx._lib.dm_window_mask_varlen(
        ctx._ctx, ctypes.byref(args), ctypes.byref(applied), stream))
    return bool(applied.value)


def fwd(ctx, args, stream):
    """dm_fwd(ctx, args, stream): args a DmFwdArgs, stream an int CUstream (0: the legacy one)."""
    ctx._check("dm_fwd", ctx._lib.dm_fwd(ctx._ctx, ctypes.byref(args), stream))


def fwd_varlen(ctx, args, stream):
    """dm_fwd_varlen(ctx, args, stream): args a DmFwdVarlenArgs, stream as for fwd."""
    ctx._check("dm_fwd_varlen", ctx._lib.dm_fwd_varlen(ctx._ctx, ctypes.byref(args), stream))


def bwd(ctx, args, stream):
    """dm_bwd(ctx, args, stream): args a DmBwdArgs."""
    ctx._check("dm_bwd", ctx._lib.dm_bwd(ctx._ctx, ctypes.byref(args), stream))


def bwd_varlen(ctx, args, stream):
    """dm_bwd_varlen(ctx, args, stream): args a DmBwdVarlenArgs."""
    ctx._check("dm_bwd_varlen", ctx._lib.dm_bwd_varlen(ctx._ctx, ctypes.byref(args), stream))
