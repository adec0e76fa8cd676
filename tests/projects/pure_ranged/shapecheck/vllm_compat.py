"""Contracts for vLLM's custom ops; needs the ``vllm`` extra (pip install shapecheck[vllm])."""

from __future__ import annotations

try:
    import vllm  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("shapecheck.vllm_compat needs vLLM: pip install 'shapecheck[vllm]'") from exc

from . import contract

rms_norm_contract = contract(out="t, h", input="t, h", weight="h")
