"""The package's C API layer against the library it ships (no GPU, no torch needed): the version
agrees, an offline context compiles a kernel through the packaged templates and NVRTC, and the
library's errors arrive as DmError with its message naming the argument."""
import pytest

import dmattn
from dmattn import capi


def test_the_packaged_library_has_the_packages_version():
    assert dmattn.version_string() == dmattn.__version__
    major, minor, patch = (int(x) for x in dmattn.__version__.split("."))
    assert dmattn.version() == major * 10000 + minor * 100 + patch


def test_an_offline_context_compiles_a_kernel_then_finds_it_cached(tmp_path):
    with dmattn.Context(dmattn.DM_NO_DEVICE, cache_dir=tmp_path, arch="sm80") as ctx:
        assert ctx.arch == "sm80"
        assert ctx.prebuild("combine.d64.f16.sm80") is False
        assert ctx.prebuild("combine.d64.f16.sm80") is True
    assert any(tmp_path.iterdir())


def test_a_malformed_variant_raises_the_librarys_message_naming_the_field(tmp_path):
    with dmattn.Context(dmattn.DM_NO_DEVICE, cache_dir=tmp_path) as ctx:
        with pytest.raises(dmattn.DmError) as e:
            ctx.prebuild("fwd.d128.fp16.mask-none.bias-none.w0.sm80")
    assert e.value.status == "DM_ERR_INVALID_ARG"
    assert "dtype" in str(e.value)


def test_a_bad_arch_is_refused_by_name(tmp_path):
    with pytest.raises(dmattn.DmError) as e:
        dmattn.Context(dmattn.DM_NO_DEVICE, arch="sm70")
    assert "sm70" in str(e.value)


def test_the_library_path_can_be_overridden(monkeypatch):
    monkeypatch.setenv("DMATTN_LIBRARY", "/nonexistent/libdmattn.so")
    assert capi.library_path() == "/nonexistent/libdmattn.so"


def test_set_allocator_takes_both_callbacks_or_neither():
    with dmattn.Context() as ctx:
        ctx.set_allocator(lambda n, s: 0, lambda p, n, s: None)
        ctx.set_allocator()
        with pytest.raises(ValueError, match="both"):
            ctx.set_allocator(alloc=lambda n, s: 0)
