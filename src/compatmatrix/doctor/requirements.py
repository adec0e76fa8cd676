"""Doctor check 1: installed distributions whose declared requirements are not met.

Read from metadata only (Requires-Dist), like ``pip check``, with markers evaluated for the
inspected interpreter. An extra's requirements count only when something installed asks for
that extra (``fastapi[standard]``), followed transitively; everything else is a base
requirement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from compatmatrix.doctor.environment import Distribution, Environment, applies
from compatmatrix.doctor.finding import ERROR, INFO, DoctorFinding

__all__ = ["check_requirements", "plain", "torch_index_args"]

TORCH_FAMILY = frozenset({"torch", "torchvision", "torchaudio"})
_SHOWN = 6  # missing requirements named in the message; the fix names them all


@dataclass(frozen=True)
class _Demand:
    dist: Distribution
    req: Requirement
    extra: str  # "" for a base requirement
    via: str  # who asked for the extra, e.g. "vllm 0.10.1.1 requires fastapi[standard]"


def check_requirements(dists: Sequence[Distribution], env: Environment) -> list[DoctorFinding]:
    installed = {d.key: d for d in dists}
    findings: list[DoctorFinding] = []
    missing: dict[tuple[str, str], list[_Demand]] = {}
    for demand in _demands(dists, installed, env.markers):
        target = installed.get(canonicalize_name(demand.req.name))
        if target is None:
            missing.setdefault((demand.dist.key, demand.extra), []).append(demand)
        elif not _satisfied(demand.req, target.version):
            findings.append(_conflict(demand, target, installed, env))
    findings += [_missing(demands, env) for demands in missing.values()]
    if not findings:
        findings.append(DoctorFinding("requirements", INFO, "distributions",
                                f"the requirements of all {len(dists)} installed "
                                "distributions are met"))
    return findings


def _demands(dists: Sequence[Distribution], installed: Mapping[str, Distribution],
             markers: Mapping[str, str]) -> list[_Demand]:
    """Every requirement in force: base ones, plus those of each extra someone asks for."""
    queue = [(dist, "", "") for dist in dists]
    asked: set[tuple[str, str]] = set()
    found = []
    while queue:
        dist, extra, via = queue.pop()
        for req in _parsed(dist.requires):
            if not applies(req, markers, extra):
                continue
            if extra and applies(req, markers, ""):
                continue  # a base requirement, already counted without the extra
            found.append(_Demand(dist, req, extra, via))
            target = installed.get(canonicalize_name(req.name))
            for wanted in sorted(canonicalize_name(e) for e in req.extras):
                if target is not None and (target.key, wanted) not in asked:
                    asked.add((target.key, wanted))
                    queue.append((target, wanted, f"{dist.label} requires {plain(req)}"))
    return found


def _parsed(lines: Sequence[str]) -> list[Requirement]:
    found = []
    for line in lines:
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            continue  # installers refuse such metadata too; nothing to reconcile
    return found


def _satisfied(req: Requirement, version: str) -> bool:
    if req.url:
        return True  # a direct reference names one build, not a version range
    try:
        parsed = Version(version)
    except InvalidVersion:
        return True  # a legacy version cannot be judged against a specifier
    return req.specifier.contains(parsed, prereleases=True)


def plain(req: Requirement) -> str:
    """The requirement as an install argument: name, extras, version or URL, no marker."""
    copy = Requirement(str(req))
    copy.marker = None
    return str(copy)


def torch_index_args(installed: Mapping[str, Distribution]) -> list[str]:
    """Where the installed torch variant comes from, so a fix keeps it (``+cpu``, ``+cu128``)."""
    torch = installed.get("torch")
    local = torch.version.partition("+")[2] if torch is not None else ""
    if not local:
        return []
    return ["--extra-index-url", f"https://download.pytorch.org/whl/{local}"]


def _owner(demand: _Demand) -> str:
    extra = f" [{demand.extra}]" if demand.extra else ""
    return f"{demand.dist.label}{extra}"


def _conflict(demand: _Demand, target: Distribution, installed: Mapping[str, Distribution],
              env: Environment) -> DoctorFinding:
    wanted = plain(demand.req)
    dist = demand.dist
    explanation = (
        f"{target.label} does not satisfy {wanted}: it was installed without checking "
        f"{dist.name}'s requirements, typically by an install with --no-deps or by "
        f"installing another {target.name} afterwards.")
    if demand.via:
        explanation += f" The requirement comes with the extra, because {demand.via}."
    if target.key == "torch" and dist.record:
        explanation += (f" {dist.name} ships compiled extensions: built against torch's C++ "
                        "ABI, they only load under the torch they were built for.")
    explanation += (f" Either install what {dist.name} asks for (the fix), or a release of "
                    f"{dist.name} whose requirements admit {target.label}.")
    index = torch_index_args(installed) if target.key in TORCH_FAMILY else []
    return DoctorFinding("requirements", ERROR, dist.label,
                   f"{_owner(demand)} requires {wanted}, but {target.label} is installed",
                   explanation, env.installer.command(*index, wanted))


def _missing(demands: list[_Demand], env: Environment) -> DoctorFinding:
    first = demands[0]
    wanted = sorted({plain(d.req) for d in demands}, key=str.lower)
    shown = ", ".join(wanted[:_SHOWN]) + (f" and {len(wanted) - _SHOWN} more"
                                          if len(wanted) > _SHOWN else "")
    verb = "is" if len(wanted) == 1 else "are"
    explanation = (f"{first.dist.name} declares {'this' if len(wanted) == 1 else 'these'} as "
                   f"requirements, but nothing provides {'it' if len(wanted) == 1 else 'them'}"
                   ": typically the result of an install with --no-deps. Importing "
                   f"{first.dist.name} may fail with ModuleNotFoundError.")
    if first.via:
        explanation += f" They come with the extra, because {first.via}."
    return DoctorFinding("requirements", ERROR, first.dist.label,
                   f"{_owner(first)} requires {shown}, which {verb} not installed",
                   explanation, env.installer.command(*wanted))
