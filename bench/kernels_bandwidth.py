"""Memory bandwidth of compat_kernels' CUDA kernels, against the GPU's peak.

Every op is memory-bound, so the figure that matters is bytes moved per second: the bytes
each op must read and write at least once (inputs read, outputs written; the small weight and
cos/sin rows counted once), divided by the kernel's time. The peak is the device's own
(memory clock x bus width x 2, from torch.cuda.get_device_properties), or --peak-gbps.

Run it with the Python of an environment holding a CUDA torch and the compat_kernels wheel,
for example a cell's venv after `compatmatrix run --cell py3.11-torch2.13.0-cu130`:

    .compatmatrix/envs/py3.11-torch2.13.0-cu130/bin/python bench/kernels_bandwidth.py
    ... --dtypes bfloat16 float16 float32 --tokens 4096 --json bench-h100.json

Times are CUDA-event medians over --iters launches after --warmup, with the L2 cache
flushed before each launch so that every byte comes from HBM. The "torch" column times the
same computation written with plain torch ops, for scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Case:
    op: str
    shape: str
    nbytes: int  # the least that must move through memory
    kernel: Callable[[], object]
    reference: Callable[[], object]


@dataclass(frozen=True)
class Result:
    op: str
    dtype: str
    shape: str
    mbytes: float
    kernel_us: float
    kernel_gbps: float
    percent_of_peak: float
    torch_us: float
    torch_gbps: float


def peak_gbps(device: torch.device) -> float:
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if not clock_khz or not bus_bits:
        sys.exit("this torch does not report the memory clock and bus width: pass --peak-gbps")
    return clock_khz * 1e3 * 2 * bus_bits / 8 / 1e9  # double data rate


def cases(dtype: torch.dtype, tokens: int, hidden: int, intermediate: int,
          heads: tuple[int, int, int], device: torch.device) -> list[Case]:
    ops = torch.ops.compat_kernels
    size = torch.tensor([], dtype=dtype).element_size()
    x = torch.randn(tokens, hidden, dtype=dtype, device=device)
    residual = torch.randn_like(x)
    weight = torch.randn(hidden, dtype=dtype, device=device)
    out, total = torch.empty_like(x), torch.empty_like(x)
    gate_up = torch.randn(tokens, 2 * intermediate, dtype=dtype, device=device)
    act = torch.empty(tokens, intermediate, dtype=dtype, device=device)
    num_heads, num_kv_heads, head_size = heads
    query = torch.randn(tokens, num_heads * head_size, dtype=dtype, device=device)
    key = torch.randn(tokens, num_kv_heads * head_size, dtype=dtype, device=device)
    max_position = 4096
    cache = torch.randn(max_position, head_size, dtype=dtype, device=device)
    positions = torch.randint(0, max_position, (tokens,), device=device)
    q_out, k_out = torch.empty_like(query), torch.empty_like(key)
    qk = query.numel() + key.numel()

    def torch_rms(t: torch.Tensor) -> torch.Tensor:
        f = t.float()
        return (f * torch.rsqrt(f.pow(2).mean(-1, keepdim=True) + 1e-6) * weight.float()).to(dtype)

    def torch_rotary() -> object:
        cos, sin = cache[positions].float().chunk(2, dim=-1)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        results = []
        for t in (query, key):
            h = t.float().view(tokens, -1, head_size)
            a, b = h.chunk(2, dim=-1)
            results.append(torch.cat((a * cos - b * sin, b * cos + a * sin), -1).to(dtype))
        return results

    return [
        Case("rms_norm", f"{tokens}x{hidden}", (2 * x.numel() + hidden) * size,
             lambda: ops.rms_norm.out(x, weight, 1e-6, out=out), lambda: torch_rms(x)),
        Case("fused_add_rms_norm", f"{tokens}x{hidden}", (4 * x.numel() + hidden) * size,
             lambda: ops.fused_add_rms_norm.out(x, residual, weight, 1e-6, out=out, sum=total),
             lambda: torch_rms(x + residual)),
        Case("silu_and_mul", f"{tokens}x2x{intermediate}", 3 * act.numel() * size,
             lambda: ops.silu_and_mul.out(gate_up, out=act),
             lambda: F.silu(gate_up[:, :intermediate]) * gate_up[:, intermediate:]),
        Case("rotary_embedding (neox)",
             f"{tokens}x({num_heads}+{num_kv_heads})x{head_size}",
             2 * qk * size + tokens * (8 + head_size * size),
             lambda: ops.rotary_embedding.out(positions, query, key, cache, head_size, True,
                                              query_out=q_out, key_out=k_out),
             torch_rotary),
    ]


def time_us(fn: Callable[[], object], *, warmup: int, iters: int, flush: torch.Tensor) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        flush.zero_()  # evicts the L2 cache: the next launch reads from device memory
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)


def measure(args: argparse.Namespace, device: torch.device, peak: float) -> list[Result]:
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    flush = torch.empty(max(4 * l2, 1 << 26), dtype=torch.uint8, device=device)
    results = []
    for name in args.dtypes:
        for case in cases(DTYPES[name], args.tokens, args.hidden, args.intermediate,
                          (args.heads, args.kv_heads, args.head_size), device):
            kernel = time_us(case.kernel, warmup=args.warmup, iters=args.iters, flush=flush)
            reference = time_us(case.reference, warmup=args.warmup, iters=args.iters,
                                flush=flush)
            gbps = case.nbytes / kernel / 1e3
            results.append(Result(case.op, name, case.shape, case.nbytes / 1e6, kernel, gbps,
                                  100 * gbps / peak, reference, case.nbytes / reference / 1e3))
    return results


def table(results: list[Result], device_name: str, peak: float) -> str:
    lines = [f"{device_name}, peak {peak:.0f} GB/s", "",
             "| op | dtype | shape | MB moved | kernel µs | kernel GB/s | % of peak | "
             "torch µs | torch GB/s |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.op} | {r.dtype} | {r.shape} | {r.mbytes:.1f} | {r.kernel_us:.1f} | "
                     f"{r.kernel_gbps:.0f} | {r.percent_of_peak:.0f} % | {r.torch_us:.1f} | "
                     f"{r.torch_gbps:.0f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["bfloat16"])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=8192, help="rms_norm width")
    parser.add_argument("--intermediate", type=int, default=14336, help="silu_and_mul width")
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--head-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--peak-gbps", type=float, help="instead of the device's own figure")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    import compat_kernels  # loads the ops

    device = torch.device("cuda", args.device)
    torch.cuda.set_device(device)
    peak = args.peak_gbps or peak_gbps(device)
    name = torch.cuda.get_device_name(device)
    results = measure(args, device, peak)
    print(table(results, name, peak))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": name, "peak_gbps": peak, "torch": torch.__version__,
                       "build": compat_kernels.build_info(),
                       "results": [asdict(r) for r in results]}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
