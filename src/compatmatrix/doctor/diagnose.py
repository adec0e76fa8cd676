"""``compatmatrix doctor``: why does ``import vllm`` (or ``import my_ext``) fail here?

It inspects one environment, the current interpreter's or the one given with ``--python``,
and reports findings by check, each with a severity, an explanation and, where something must
change, the command that changes it:

- ``requirements``: installed distributions whose declared requirements are not met;
- ``torch``: version, CUDA/ROCm variant, C++ ABI, whether torch.compile's modules import;
- ``cuda``: the nvcc a build would use against torch's CUDA, and the GPUs visible;
- ``extensions``: compiled extensions that link libtorch, loaded in a subprocess;
- ``wheels``: extension modules built only for another Python.

Metadata is read from files in this process. Only the checks that need it import torch, in
subprocesses that run in parallel, each with a timeout. Exit codes: 0 when no finding is an
error (warnings do not fail: they say what may break later, not what is broken now), 1 when
one is, 2 when the interpreter could not be inspected.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from compatmatrix.doctor.environment import (
    CannotInspect,
    Distribution,
    Environment,
    probe,
    read_distributions,
)
from compatmatrix.doctor.extensions import (
    MAX_BATCHES,
    Extension,
    Loaded,
    extension_findings,
    find_extensions,
    load_batches,
    load_extensions,
    variant_findings,
)
from compatmatrix.doctor.finding import CHECKS, ERROR, SEVERITIES, WARNING, DoctorFinding
from compatmatrix.doctor.requirements import check_requirements
from compatmatrix.doctor.torchcheck import (
    NvccFacts,
    TorchCheck,
    cuda_findings,
    nvcc_facts,
    torch_facts,
    torch_findings,
)
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.gpu import Capabilities, gpu_capabilities
from compatmatrix.host.safeio import dumps_strict

__all__ = [
    "SCHEMA",
    "CannotInspect",
    "DoctorFinding",
    "DoctorReport",
    "diagnose",
    "format_report",
    "run_doctor",
]

SCHEMA = 1
_WIDTH = 100


@dataclass(frozen=True)
class DoctorReport:
    environment: Environment
    findings: tuple[DoctorFinding, ...]  # sorted: by check, severity, subject, message
    facts: Mapping[str, object]

    @property
    def exit_code(self) -> int:
        return 1 if any(f.severity == ERROR for f in self.findings) else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def to_json(self) -> dict[str, object]:
        return {"schema": SCHEMA, "python": self.environment.to_json(),
                "status": "problems" if self.exit_code else "healthy",
                "exit_code": self.exit_code, "counts": self.counts(),
                "findings": [f.to_json() for f in self.findings], "facts": dict(self.facts)}


@dataclass(frozen=True)
class _Pending:
    """The subprocess checks, started before the in-process ones run."""

    torch: Future[TorchCheck] | None
    nvcc: Future[NvccFacts]
    gpus: Future[Capabilities]
    batches: list[Future[tuple[list[Loaded], str]]]


def diagnose(python: Path | None, env: Mapping[str, str],
             current: str = sys.executable) -> DoctorReport:
    """Inspect ``python`` (``current`` when None); :class:`CannotInspect` when it cannot."""
    environment = probe(python, env, current)
    dists = read_distributions(environment.site)
    with ThreadPoolExecutor(max_workers=3 + MAX_BATCHES) as pool:
        try:
            return _run_checks(pool, environment, dists, env)
        except KeyboardInterrupt:
            # the checks run in their own process groups, which Ctrl-C does not reach, and
            # leaving this block waits for them
            _cmd.stop_all()
            raise


def _run_checks(pool: ThreadPoolExecutor, environment: Environment,
                dists: Sequence[Distribution], env: Mapping[str, str]) -> DoctorReport:
    installed = {d.key: d for d in dists}
    has_torch = "torch" in installed
    # the slowest check (importing torch) starts first; the rest overlaps with it
    torch = pool.submit(torch_facts, environment, env) if has_torch else None
    nvcc, gpus = pool.submit(nvcc_facts, env), pool.submit(gpu_capabilities, env)
    extensions = find_extensions(environment, dists) if has_torch else []
    batches = [pool.submit(load_extensions, environment, batch, env)
               for batch in load_batches(extensions, os.cpu_count() or 2)]
    findings = check_requirements(dists, environment) + variant_findings(dists, environment)
    return _finish(environment, installed, extensions, _Pending(torch, nvcc, gpus, batches),
                   findings, env)


def _finish(environment: Environment, installed: Mapping[str, Distribution],
            extensions: Sequence[Extension], pending: _Pending, findings: list[DoctorFinding],
            env: Mapping[str, str]) -> DoctorReport:
    facts = pending.torch.result() if pending.torch is not None else None
    nvcc, gpus = pending.nvcc.result(), pending.gpus.result()
    torch = installed.get("torch")
    findings += torch_findings(facts, environment, torch.version if torch else None)
    findings += cuda_findings(facts, nvcc, gpus)
    loaded: list[Loaded] = []
    torch_error = ""
    for batch in pending.batches:
        results, error = batch.result()
        loaded += results
        torch_error = torch_error or error
    if facts is not None and facts.version is not None and extensions:
        findings += extension_findings(loaded, torch_error, facts, environment, installed, env)
    return DoctorReport(environment, tuple(sorted(findings, key=DoctorFinding.sort_key)), {
        "distributions": len(installed),
        "torch": facts.to_json() if facts is not None else None,
        "nvcc": nvcc.to_json(),
        "gpus": [{"name": name, "capability": cap} for name, cap in gpus],
        "extensions": [_loaded_json(item) for item in sorted(
            loaded, key=lambda i: i.extension.relative)],
    })


def _loaded_json(item: Loaded) -> dict[str, object]:
    dist = item.extension.dist
    return {"file": str(item.extension.path), "module": item.extension.module or None,
            "distribution": dist.label if dist else None, "loaded": item.error is None,
            "error": item.error}


# -- output -----------------------------------------------------------------------------------


def format_report(report: DoctorReport) -> str:
    env = report.environment
    lines = [f"compatmatrix doctor: {env.python} ({env.implementation} {env.version}, "
             f"{report.facts.get('distributions', 0)} distributions)"]
    for check in CHECKS:
        found = [f for f in report.findings if f.check == check]
        if found:
            lines += ["", check, *(line for f in found for line in _finding_lines(f))]
    counts = report.counts()
    summary = ", ".join(f"{n} {severity}{'s' if n != 1 and severity != 'info' else ''}"
                        for severity, n in counts.items())
    lines += ["", ("problems found: " if report.exit_code else "healthy: ") + summary]
    return "\n".join(lines)


def _finding_lines(finding: DoctorFinding) -> list[str]:
    head = f"  {finding.severity}: "
    indent = " " * 4
    lines = textwrap.wrap(finding.message, _WIDTH, initial_indent=head,
                          subsequent_indent=indent, break_on_hyphens=False,
                          break_long_words=False)
    if finding.severity in (ERROR, WARNING) and finding.explanation:
        lines += textwrap.wrap(finding.explanation, _WIDTH, initial_indent=indent,
                               subsequent_indent=indent, break_on_hyphens=False,
                               break_long_words=False)
    if finding.fix:
        lines.append(f"{indent}fix: {finding.fix}")  # never wrapped: it is copied and pasted
    return lines


def run_doctor(python: Path | None, as_json: bool, env: Mapping[str, str],
               out: IO[str] | None = None) -> int:
    """The command: print the report (to stdout), return the exit code (2: CannotInspect)."""
    out = out or sys.stdout
    try:
        report = diagnose(python, env)
    except CannotInspect as error:
        if as_json:  # machines get an answer on stdout too; people read stderr
            print(dumps_strict({"schema": SCHEMA, "status": "cannot-inspect", "exit_code": 2,
                              "error": str(error)}, indent=2, sort_keys=True), file=out)
        raise
    if as_json:
        print(dumps_strict(report.to_json(), indent=2, sort_keys=True), file=out)
    else:
        print(format_report(report), file=out)
    return report.exit_code
