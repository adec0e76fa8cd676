"""CPU numerics, opcheck, torch.compile and error paths of the installed ops.

Hidden sizes 1, 7, 33 and 4097 are deliberately not multiples of the vector
width (8 floats with AVX2), so the ragged-tail paths run as well.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import reference_ops as ref
import torch
from reference_ops import (
    DTYPES,
    RotaryCase,
    RotaryInputs,
    assert_matches_reference,
    rotary_inputs,
)
from torch._dynamo.eval_frame import is_dynamo_supported

import compat_kernels

HIDDEN_SIZES = (1, 7, 33, 4097)
LEADING_SHAPES = ((), (5,), (2, 3))
EPS = 1e-6

ROTARY_CASES = (
    RotaryCase(num_tokens=1, num_heads=1, num_kv_heads=1, head_size=2, rot_dim=2),
    RotaryCase(num_tokens=5, num_heads=4, num_kv_heads=2, head_size=64, rot_dim=64),
    # embed_dim 9 and 33: vector main loop plus a ragged tail
    RotaryCase(num_tokens=3, num_heads=2, num_kv_heads=2, head_size=18, rot_dim=18),
    RotaryCase(num_tokens=4, num_heads=3, num_kv_heads=1, head_size=66, rot_dim=66, heads_dim=True),
    # partial rotary: the last head_size - rot_dim dims pass through
    RotaryCase(num_tokens=7, num_heads=3, num_kv_heads=1, head_size=80, rot_dim=32),
)

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))


def _randn(*shape: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(dtype)


def _assert_unchanged(inputs: tuple[torch.Tensor, ...], run: Callable[[], object]) -> None:
    """Run `run` and check it left `inputs` untouched (the ops are functional)."""
    before = [t.clone() for t in inputs]
    run()
    for original, now in zip(before, inputs):
        assert torch.equal(original, now), "op modified an input"


# ---------------------------------------------------------------- numerics


@dtypes
@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
@pytest.mark.parametrize("lead", LEADING_SHAPES, ids=str)
def test_rms_norm(dtype: torch.dtype, hidden: int, lead: tuple[int, ...]) -> None:
    x = _randn(*lead, hidden, dtype=dtype, seed=hidden)
    weight = _randn(hidden, dtype=dtype, seed=hidden + 1)
    out = compat_kernels.rms_norm(x, weight, EPS)
    assert out.dtype == dtype and out.shape == x.shape
    assert_matches_reference(out, ref.rms_norm(x, weight, EPS))


@dtypes
@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
@pytest.mark.parametrize("lead", LEADING_SHAPES, ids=str)
def test_fused_add_rms_norm(dtype: torch.dtype, hidden: int, lead: tuple[int, ...]) -> None:
    x = _randn(*lead, hidden, dtype=dtype, seed=hidden)
    residual = _randn(*lead, hidden, dtype=dtype, seed=hidden + 1)
    weight = _randn(hidden, dtype=dtype, seed=hidden + 2)
    out, total = compat_kernels.fused_add_rms_norm(x, residual, weight, EPS)
    expected_out, expected_total = ref.fused_add_rms_norm(x, residual, weight, EPS)
    # The sum is rounded exactly as `x + residual` in the input dtype...
    assert torch.equal(total, expected_total)
    # ...and the output is rms_norm of that rounded sum, bit for bit.
    assert torch.equal(out, compat_kernels.rms_norm(total, weight, EPS))
    assert_matches_reference(out, expected_out)


@dtypes
@pytest.mark.parametrize("d", HIDDEN_SIZES)
@pytest.mark.parametrize("lead", LEADING_SHAPES, ids=str)
def test_silu_and_mul(dtype: torch.dtype, d: int, lead: tuple[int, ...]) -> None:
    x = _randn(*lead, 2 * d, dtype=dtype, seed=d)
    out = compat_kernels.silu_and_mul(x)
    assert out.dtype == dtype and out.shape == (*lead, d)
    assert_matches_reference(out, ref.silu_and_mul(x))


@dtypes
def test_silu_and_mul_saturates(dtype: torch.dtype) -> None:
    # Large |a| drives exp(-a) to its clamp/overflow on the two sides.
    a = torch.tensor([-100.0, -30.0, -5.0, 0.0, 5.0, 30.0, 100.0, 1.0, -1.0])
    x = torch.cat((a, torch.full_like(a, 0.5))).to(dtype)
    out = compat_kernels.silu_and_mul(x)
    assert torch.isfinite(out).all()
    assert_matches_reference(out, ref.silu_and_mul(x))


@dtypes
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize("case", ROTARY_CASES, ids=str)
def test_rotary_embedding(dtype: torch.dtype, is_neox: bool, case: RotaryCase) -> None:
    positions, query, key, cache = rotary_inputs(case, dtype)
    q_out, k_out = compat_kernels.rotary_embedding(
        positions, query, key, cache, case.head_size, is_neox
    )
    q_ref, k_ref = ref.rotary_embedding(positions, query, key, cache, case.head_size, is_neox)
    assert_matches_reference(q_out, q_ref)
    assert_matches_reference(k_out, k_ref)
    # Dimensions past rot_dim are copied, not recomputed.
    heads = (case.num_tokens, -1, case.head_size)
    rot = case.rot_dim
    assert torch.equal(q_out.reshape(heads)[..., rot:], query.reshape(heads)[..., rot:])


def test_ops_do_not_modify_inputs() -> None:
    x = _randn(4, 33, dtype=torch.bfloat16, seed=0)
    residual = _randn(4, 33, dtype=torch.bfloat16, seed=1)
    weight = _randn(33, dtype=torch.bfloat16, seed=2)
    _assert_unchanged((x, weight), lambda: compat_kernels.rms_norm(x, weight))
    _assert_unchanged(
        (x, residual, weight), lambda: compat_kernels.fused_add_rms_norm(x, residual, weight)
    )
    gate_up = x[:, :32].contiguous()
    _assert_unchanged((gate_up,), lambda: compat_kernels.silu_and_mul(gate_up))
    rotary = rotary_inputs(ROTARY_CASES[1], torch.bfloat16)
    _assert_unchanged(rotary, lambda: compat_kernels.rotary_embedding(*rotary, 64, False))


# ------------------------------------------------------- .out overloads


def _nan_like(t: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    return torch.full(shape or tuple(t.shape), float("nan"), dtype=t.dtype)


@dtypes
@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
def test_out_overloads_write_every_element(dtype: torch.dtype, hidden: int) -> None:
    """Outputs start as NaN, so an unwritten element would show; the results
    equal the functional overloads' bit for bit."""
    ops = torch.ops.compat_kernels
    x = _randn(3, hidden, dtype=dtype, seed=hidden)
    residual = _randn(3, hidden, dtype=dtype, seed=hidden + 1)
    weight = _randn(hidden, dtype=dtype, seed=hidden + 2)
    out = _nan_like(x)
    assert ops.rms_norm.out(x, weight, EPS, out=out) is out
    assert torch.equal(out, compat_kernels.rms_norm(x, weight, EPS))
    out, total = _nan_like(x), _nan_like(x)
    ops.fused_add_rms_norm.out(x, residual, weight, EPS, out=out, sum=total)
    expected = compat_kernels.fused_add_rms_norm(x, residual, weight, EPS)
    assert torch.equal(out, expected[0]) and torch.equal(total, expected[1])
    gate_up = torch.cat((x, residual), dim=-1)
    act = _nan_like(x)
    ops.silu_and_mul.out(gate_up, out=act)
    assert torch.equal(act, compat_kernels.silu_and_mul(gate_up))


@dtypes
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
def test_rotary_out_overload_writes_every_element(dtype: torch.dtype, is_neox: bool) -> None:
    case = ROTARY_CASES[4]  # partial rotary: the copied dims must be written too
    positions, query, key, cache = rotary_inputs(case, dtype)
    q_out, k_out = _nan_like(query), _nan_like(key)
    torch.ops.compat_kernels.rotary_embedding.out(
        positions, query, key, cache, case.head_size, is_neox, query_out=q_out, key_out=k_out
    )
    expected = compat_kernels.rotary_embedding(
        positions, query, key, cache, case.head_size, is_neox
    )
    assert torch.equal(q_out, expected[0]) and torch.equal(k_out, expected[1])


OUT_ERROR_CASES: dict[str, tuple[Callable[[], object], str]] = {
    "shape": (
        lambda: torch.ops.compat_kernels.rms_norm.out(
            torch.randn(4, 8), torch.randn(8), EPS, out=torch.empty(4, 7)
        ),
        r"rms_norm: out must have shape \[4, 8\], got \[4, 7\]",
    ),
    "dtype": (
        lambda: torch.ops.compat_kernels.silu_and_mul.out(
            torch.randn(4, 8), out=torch.empty(4, 4, dtype=torch.bfloat16)
        ),
        r"silu_and_mul: out and the inputs must have the same dtype",
    ),
    "non-contiguous": (
        lambda: torch.ops.compat_kernels.fused_add_rms_norm.out(
            torch.randn(4, 8), torch.randn(4, 8), torch.randn(8), EPS,
            out=torch.empty(4, 8), sum=torch.empty(8, 4).t(),
        ),
        r"fused_add_rms_norm: sum must be contiguous",
    ),
}


@pytest.mark.parametrize("case", list(OUT_ERROR_CASES))
def test_invalid_out_raises(case: str) -> None:
    call, message = OUT_ERROR_CASES[case]
    with pytest.raises(RuntimeError, match=message):
        call()


def test_empty_inputs() -> None:
    weight = torch.ones(16)
    assert compat_kernels.rms_norm(torch.empty(0, 16), weight).shape == (0, 16)
    out, total = compat_kernels.fused_add_rms_norm(torch.empty(0, 16), torch.empty(0, 16), weight)
    assert out.shape == total.shape == (0, 16)
    assert compat_kernels.silu_and_mul(torch.empty(0, 16)).shape == (0, 8)
    q, k = compat_kernels.rotary_embedding(
        torch.empty(0, dtype=torch.long),
        torch.empty(0, 32),
        torch.empty(0, 16),
        torch.empty(8, 16),
        16,
        True,
    )
    assert q.shape == (0, 32) and k.shape == (0, 16)


def test_multithreaded_rows_match_single_thread() -> None:
    # Enough rows that parallel_for splits them across threads.
    x = _randn(512, 1024, dtype=torch.float32, seed=0)
    weight = _randn(1024, dtype=torch.float32, seed=1)
    parallel = compat_kernels.rms_norm(x, weight)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = compat_kernels.rms_norm(x, weight)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(parallel, serial)


# ------------------------------------------------------- ISA dispatch


def test_kernels_use_atens_cpu_capability() -> None:
    aten = torch.backends.cpu.get_cpu_capability()
    avx2_built = sys.platform == "linux" and platform.machine() == "x86_64"
    expected = "avx2" if avx2_built and aten in ("AVX2", "AVX512") else "default"
    assert torch.ops.compat_kernels.cpu_capability() == expected


BASELINE_SCRIPT = textwrap.dedent(
    """
    import sys, torch, compat_kernels
    assert torch.ops.compat_kernels.cpu_capability() == "default"
    inputs = torch.load(sys.argv[1])
    outputs = {
        "rms_norm": compat_kernels.rms_norm(inputs["x"], inputs["weight"]),
        "fused_add_rms_norm": compat_kernels.fused_add_rms_norm(
            inputs["x"], inputs["residual"], inputs["weight"]),
        "silu_and_mul": compat_kernels.silu_and_mul(inputs["x"]),
        "rotary_embedding": compat_kernels.rotary_embedding(*inputs["rotary"], 18, False),
    }
    torch.save(outputs, sys.argv[2])
    """
)


def test_baseline_kernels_match_reference(tmp_path: Path) -> None:
    """The baseline (non-AVX2) build, forced with ATEN_CPU_CAPABILITY=default in
    a fresh process since the choice is made once per process."""
    dtype = torch.float16  # the dtype whose conversions differ most by ISA
    x = _randn(3, 66, dtype=dtype, seed=0)
    residual = _randn(3, 66, dtype=dtype, seed=1)
    weight = _randn(66, dtype=dtype, seed=2)
    rotary = rotary_inputs(ROTARY_CASES[2], dtype)
    inputs = {"x": x, "residual": residual, "weight": weight, "rotary": rotary}
    torch.save(inputs, tmp_path / "inputs.pt")
    subprocess.run(
        [sys.executable, "-c", BASELINE_SCRIPT, str(tmp_path / "inputs.pt"), "out.pt"],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
        check=True,
        cwd=tmp_path,
    )
    outputs = torch.load(tmp_path / "out.pt")
    assert_matches_reference(outputs["rms_norm"], ref.rms_norm(x, weight, EPS))
    out, total = outputs["fused_add_rms_norm"]
    assert torch.equal(total, x + residual)
    assert_matches_reference(out, ref.rms_norm(total, weight, EPS))
    assert_matches_reference(outputs["silu_and_mul"], ref.silu_and_mul(x))
    expected_rotary = ref.rotary_embedding(*rotary, 18, False)
    for actual, expected in zip(outputs["rotary_embedding"], expected_rotary):
        assert_matches_reference(actual, expected)


# --------------------------------------------------- opcheck / compile


def _opcheck_samples() -> list[pytest.ParameterSet]:
    samples = []
    for dtype in (torch.float32, torch.bfloat16):
        x = _randn(3, 33, dtype=dtype, seed=0)
        residual = _randn(3, 33, dtype=dtype, seed=1)
        weight = _randn(33, dtype=dtype, seed=2)
        args = {
            "rms_norm": (x, weight, EPS),
            "fused_add_rms_norm": (x, residual, weight, EPS),
            "silu_and_mul": (_randn(2, 3, 18, dtype=dtype, seed=3),),
            "rotary_embedding": (*rotary_inputs(ROTARY_CASES[3], dtype), 66, True),
        }
        dtype_id = str(dtype).removeprefix("torch.")
        samples += [pytest.param(name, a, id=f"{name}-{dtype_id}") for name, a in args.items()]
    return samples


@pytest.mark.parametrize(("name", "args"), _opcheck_samples())
def test_opcheck(name: str, args: tuple[object, ...]) -> None:
    op = getattr(torch.ops.compat_kernels, name).default
    torch.library.opcheck(op, args)


def _block(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    gate_up: torch.Tensor,
    rotary: RotaryInputs,
) -> tuple[torch.Tensor, ...]:
    normed, residual = compat_kernels.fused_add_rms_norm(x, residual, weight)
    hidden = compat_kernels.silu_and_mul(normed @ gate_up)
    q, k = compat_kernels.rotary_embedding(*rotary, 18, True)
    return compat_kernels.rms_norm(hidden, weight), residual, q, k


# torch 2.11's torch.jit.script_method warns that it is deprecated each time
# it is applied, and torch's own torch/utils/mkldnn.py applies it when that
# module is imported (torch._inductor.compile_fx imports it, through
# fx_passes.pre_grad and torch.fx.experimental.optimization). Where this
# compile imports it (seen with torch 2.11.0+cu130 on an H200 image; not with
# the same torch on a CPU-only machine), filterwarnings=error failed the test
# on torch's warning about torch's own code. Only that warning, raised in
# torch.jit._script, is ignored; any other warning still fails the test.
@pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.script_method` is deprecated:DeprecationWarning:torch\.jit\._script"
)
def test_torch_compile_fullgraph() -> None:
    if not is_dynamo_supported():
        pytest.skip(f"torch.compile is not supported on Python {sys.version.split()[0]}")
    compiled = torch.compile(_block, backend="aot_eager", fullgraph=True, dynamic=True)
    try:
        for tokens in (3, 5):  # a second shape exercises the symbolic-shape fakes
            x = _randn(tokens, 32, dtype=torch.float32, seed=tokens)
            residual = _randn(tokens, 32, dtype=torch.float32, seed=tokens + 1)
            weight = _randn(32, dtype=torch.float32, seed=0)
            gate_up = _randn(32, 64, dtype=torch.float32, seed=1)
            case = RotaryCase(
                num_tokens=tokens, num_heads=2, num_kv_heads=1, head_size=18, rot_dim=18
            )
            args = (x, residual, weight, gate_up, rotary_inputs(case, torch.float32))
            for got, want in zip(compiled(*args), _block(*args)):
                torch.testing.assert_close(got, want)
    finally:
        torch._dynamo.reset()


# ------------------------------------------------------------- errors


def _rotary(**overrides: torch.Tensor) -> RotaryInputs:
    """Valid rotary inputs (head_size 64) with some of them replaced."""
    names = ("positions", "query", "key", "cos_sin_cache")
    valid = dict(zip(names, rotary_inputs(ROTARY_CASES[1], torch.float32)))
    valid.update(overrides)
    positions, query, key, cache = (valid[name] for name in names)
    return positions, query, key, cache


ERROR_CASES: dict[str, tuple[Callable[[], object], str]] = {
    "rms_norm-weight-size": (
        lambda: compat_kernels.rms_norm(torch.randn(4, 8), torch.randn(7)),
        r"weight must have shape \[8\]",
    ),
    "rms_norm-dtype-mismatch": (
        lambda: compat_kernels.rms_norm(torch.randn(4, 8), torch.randn(8).bfloat16()),
        r"must have the same dtype",
    ),
    "rms_norm-float64": (
        lambda: compat_kernels.rms_norm(torch.randn(4, 8).double(), torch.randn(8).double()),
        r"must be float32, bfloat16 or float16",
    ),
    "rms_norm-non-contiguous": (
        lambda: compat_kernels.rms_norm(torch.randn(8, 4).t(), torch.randn(8)),
        r"x must be contiguous",
    ),
    "fused_add_rms_norm-residual-shape": (
        lambda: compat_kernels.fused_add_rms_norm(
            torch.randn(4, 8), torch.randn(3, 8), torch.randn(8)
        ),
        r"residual must have the same shape",
    ),
    "silu_and_mul-odd": (
        lambda: compat_kernels.silu_and_mul(torch.randn(4, 7)),
        r"last dimension of x must be even",
    ),
    "rotary-positions-dtype": (
        lambda: compat_kernels.rotary_embedding(
            *_rotary(positions=torch.zeros(5, dtype=torch.int32)), 64
        ),
        r"positions must be a 1-D int64 tensor",
    ),
    "rotary-head-split": (
        lambda: compat_kernels.rotary_embedding(*_rotary(key=torch.randn(5, 100)), 64),
        r"key of shape \[5, 100\] does not split into heads of size 64",
    ),
    "rotary-rot-dim": (
        lambda: compat_kernels.rotary_embedding(*_rotary(cos_sin_cache=torch.randn(64, 66)), 64),
        r"rot_dim\) must be even and in \[2, head_size=64\]",
    ),
    "rotary-position-range": (
        lambda: compat_kernels.rotary_embedding(
            *_rotary(positions=torch.tensor([0, 1, 64, 2, 3])), 64
        ),
        r"positions\[2\] = 64 is outside the cos_sin_cache rows \[0, 64\)",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_invalid_inputs_raise(case: str) -> None:
    call, message = ERROR_CASES[case]
    with pytest.raises(RuntimeError, match=message):
        call()
