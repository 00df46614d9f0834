"""dmattn: dynamic mask attention with generated, JIT-compiled CUDA kernels.

A thin layer over the C library shipped inside this package (dmattn/lib/libdmattn.so): the C API
through ctypes (`dmattn.capi`: contexts, ahead-of-time builds, the library's errors as `DmError`
carrying its message) and, importing torch only when first used, flash_dmattn_func (and its
alias flash_sparse_attn_func) with autograd, maybe_create_mask and create_mask (`dmattn.ops`),
flash_dmattn_varlen_func (alias flash_sparse_attn_varlen_func; `dmattn.ops_varlen`) with autograd
through dm_bwd_varlen, and the transformers attention function
(`dmattn.transformers_attention`: dmattn_attention_forward, register_transformers_attention).
"""
from .capi import DM_NO_DEVICE, Context, DmError, library_path, version, version_string

__version__ = "0.1.0"

__all__ = ["Context", "DmError", "DM_NO_DEVICE", "library_path", "version", "version_string"]

_TORCH_NAMES = ("flash_dmattn_func", "flash_sparse_attn_func", "maybe_create_mask", "create_mask",
                "flash_dmattn_varlen_func", "flash_sparse_attn_varlen_func",
                "dmattn_attention_forward", "register_transformers_attention")


def __getattr__(name):
    # the torch functions import torch on first use: `import dmattn` works without it
    if name in _TORCH_NAMES:
        if name.endswith("_varlen_func"):
            from . import ops_varlen as module
        elif name in ("dmattn_attention_forward", "register_transformers_attention"):
            from . import transformers_attention as module
        else:
            from . import ops as module

        return getattr(module, name)
    raise AttributeError("module 'dmattn' has no attribute %r" % name)
