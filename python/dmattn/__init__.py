"""dmattn: dynamic mask attention with generated, JIT-compiled CUDA kernels.

A thin layer over the C library shipped inside this package (dmattn/lib/libdmattn.so). Today it
offers the C API through ctypes (`dmattn.capi`): contexts, ahead-of-time builds, the library's
errors as `DmError` carrying its message. The PyTorch functions of issue 17 (flash_dmattn_func,
flash_dmattn_varlen_func, maybe_create_mask, the transformers attention function) build on it.
"""
from .capi import DM_NO_DEVICE, Context, DmError, library_path, version, version_string

__version__ = "0.1.0"

__all__ = ["Context", "DmError", "DM_NO_DEVICE", "library_path", "version", "version_string"]
