"""Which given wheel a cell tests: tags, Requires-Dist, local version labels."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging import tags
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from compatmatrix.host.uv import Sources, uv_command
from compatmatrix.stages.select import (
    GivenWheel,
    cell_tags,
    fetch_release,
    label_problem,
    read_wheel,
    select_wheel,
    sha_file,
    wheel_problem,
)
from tests.localindex import make_wheel

LINUX = sysconfig.get_platform().startswith("linux-x86_64")
PLATFORM = "manylinux_2_28_x86_64"


def wheel_file(folder: Path, file: str, requires: tuple[str, ...] = ()) -> Path:
    """A wheel named ``file`` whose METADATA lists ``requires``."""
    name, version = file.split("-")[:2]
    dist = f"{name}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        archive.writestr(f"{dist}.dist-info/METADATA",
                         f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                         + "".join(f"Requires-Dist: {r}\n" for r in requires))
    return path


def choose(wheels: list[GivenWheel], *, python: str = "3.12", variant: str | None = "cu130",
           torch: str | None = "2.13.0", known: bool = True) -> tuple[str | None, str]:
    found = select_wheel(wheels, where="wheels/", python=python, variant=variant, torch=torch,
                         torch_known=known)
    return (found.wheel.file if found.wheel else None), found.reason


def test_cell_tags_are_those_cpython_installs_on_this_platform() -> None:
    supported = cell_tags("3.12")
    assert tags.Tag("cp312", "cp312", "linux_x86_64") in supported or not LINUX
    assert tags.Tag("cp39", "abi3", "linux_x86_64") in supported or not LINUX
    assert tags.Tag("py3", "none", "any") in supported
    assert not any(t.interpreter == "cp313" for t in supported)
    assert tags.Tag("cp311", "cp311", "linux_x86_64") not in supported


@pytest.mark.skipif(not LINUX, reason="manylinux x86_64 tags")
def test_an_abi3_wheel_installs_on_every_later_python_a_cpXY_only_on_its_own(
        tmp_path: Path) -> None:
    abi3 = read_wheel(wheel_file(tmp_path, f"k-1.0-cp39-abi3-{PLATFORM}.whl"))
    cp311 = read_wheel(wheel_file(tmp_path, f"k-1.0-cp311-cp311-{PLATFORM}.whl"))
    for python in ("3.10", "3.12", "3.13"):
        assert wheel_problem(abi3, python=python, variant="cpu", torch=None,
                             torch_known=False) is None
    assert wheel_problem(cp311, python="3.11", variant="cpu", torch=None,
                         torch_known=False) is None
    problem = wheel_problem(cp311, python="3.12", variant="cpu", torch=None, torch_known=False)
    assert problem is not None and "does not install on cp312" in problem
    macos = read_wheel(wheel_file(tmp_path, "k-1.0-cp312-cp312-macosx_11_0_arm64.whl"))
    assert wheel_problem(macos, python="3.12", variant="cpu", torch=None,
                         torch_known=False) is not None


@pytest.mark.skipif(not LINUX, reason="manylinux x86_64 tags")
def test_requires_dist_must_admit_the_cells_torch(tmp_path: Path) -> None:
    old = read_wheel(wheel_file(tmp_path / "a", f"compat_kernels-1.0-cp39-abi3-{PLATFORM}.whl",
                                ("torch<2.14,>=2.13",)))
    assert choose([old], torch="2.13.0")[0] == old.file
    assert choose([old], torch="2.13.0+cu130")[0] == old.file  # a local label is the same
    file, reason = choose([old], torch="2.12.0")
    assert file is None
    assert reason == (
        f"no wheel in wheels/ for cp312 {sysconfig.get_platform().replace('-', ' ')} (cu130) "
        "whose requirements admit torch 2.12.0: compat_kernels-1.0-cp39-abi3-"
        f"{PLATFORM}.whl requires torch<2.14,>=2.13")
    # markers are evaluated for the cell's Python; extras' requirements do not count
    marked = read_wheel(wheel_file(tmp_path / "b", "m-1.0-py3-none-any.whl", (
        "torch>=2.13; python_version >= '3.12'", "torch<2.9; python_version < '3.12'",
        "torch<1; extra == 'old'")))
    assert choose([marked], python="3.12", torch="2.13.0")[0] == marked.file
    assert choose([marked], python="3.11", torch="2.13.0")[0] is None
    assert choose([marked], python="3.11", torch="2.8.0")[0] == marked.file


def test_a_cell_without_torch_takes_only_a_wheel_that_does_not_need_it(tmp_path: Path) -> None:
    needs = read_wheel(wheel_file(tmp_path, "n-1.0-py3-none-any.whl", ("torch>=2",)))
    file, reason = choose([needs], torch=None)
    assert file is None
    assert "that does not require torch" in reason and "requires torch>=2, the cell has no " \
        "torch" in reason
    free = read_wheel(wheel_file(tmp_path / "f", "f-1.0-py3-none-any.whl", ("numpy",)))
    assert choose([free], torch=None)[0] == free.file
    labelled = read_wheel(wheel_file(tmp_path / "l", "l-1.0+torch2.13-py3-none-any.whl"))
    file, reason = choose([labelled], torch=None, variant="cpu")
    assert file is None and reason.endswith("is built for a torch (+torch2.13), the cell has "
                                            "no torch")


def test_an_unknown_torch_is_checked_after_resolve_not_here(tmp_path: Path) -> None:
    needs = read_wheel(wheel_file(tmp_path, "n-1.0-py3-none-any.whl", ("torch<2",)))
    assert choose([needs], torch=">=2.9", known=False)[0] == needs.file


@pytest.mark.parametrize(("label", "variant", "torch", "fits"), [
    ("cu130", "cu130", "2.13.0", True),
    ("cu130", "cu128", "2.13.0", False),
    ("cu128", "cu130", "2.13.0", False),
    ("cu12", "cu128", "2.13.0", True),      # a major names every variant of it
    ("cu12", "cu130", "2.13.0", False),
    ("cu13", "cu130", "2.13.0", True),
    ("cpu", "cpu", "2.13.0", True),
    ("cpu", "cu130", "2.13.0", False),
    ("cu130", "cpu", "2.13.0", False),
    # flash-attention: CUDA major 12, torch 2.9, C++11 ABI
    ("cu12torch2.9cxx11abitrue", "cu128", "2.9.1", True),
    ("cu12torch2.9cxx11abitrue", "cu128", "2.10.0", False),
    ("cu12torch2.9cxx11abitrue", "cu130", "2.9.1", False),
    ("cu12torch2.9cxx11abitrue", "cu126", None, True),  # torch not known yet: later
    ("torch2.13", "cpu", "2.13.0", True),
    ("torch2.13", "cpu", "2.12.0", False),
    ("local1", "cu130", "2.13.0", True),    # says nothing of either: every cell
    (None, "cu130", "2.13.0", True),
    ("rocm6.4", "rocm6.4", "2.13.0", True),
    ("rocm6.4", "cu130", "2.13.0", False),
])
def test_local_labels_name_the_variant_and_the_torch_minor(
        label: str | None, variant: str, torch: str | None, fits: bool) -> None:
    assert (label_problem(label, variant, torch) is None) is fits


@given(st.sampled_from(["cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130"]),
       st.sampled_from(["cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130", "cpu"]),
       st.booleans())
def test_a_cuda_label_names_the_variants_it_is_a_prefix_of(
        label: str, variant: str, major_only: bool) -> None:
    named = label[:4] if major_only else label
    fits = label_problem(named, variant, None) is None
    assert fits is variant.startswith(named)


@pytest.mark.skipif(not LINUX, reason="manylinux x86_64 tags")
def test_flash_attention_style_wheels_one_per_cell(tmp_path: Path) -> None:
    names = [f"flash_attn-2.8.3+cu12torch{t}cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"
             for t in ("2.8", "2.9")]
    wheels = [read_wheel(wheel_file(tmp_path, n, ("torch",))) for n in names]
    assert choose(wheels, variant="cu128", torch="2.9.1")[0] == names[1]
    assert choose(wheels, variant="cu128", torch="2.8.0")[0] == names[0]
    file, reason = choose(wheels, variant="cu130", torch="2.9.1")
    assert file is None and "is built for cu12" in reason


@pytest.mark.skipif(not LINUX, reason="manylinux x86_64 tags")
def test_two_fitting_wheels_are_ambiguous_and_named(tmp_path: Path) -> None:
    a = read_wheel(wheel_file(tmp_path, f"k-1.0-cp39-abi3-{PLATFORM}.whl"))
    b = read_wheel(wheel_file(tmp_path, f"k-1.0-cp312-cp312-{PLATFORM}.whl"))
    found = select_wheel([b, a], where="w/", python="3.12", variant="cpu", torch="2.13.0",
                         torch_known=True)
    assert found.wheel is None and found.ambiguous == (b.file, a.file)  # sorted


def test_a_file_that_is_not_a_wheel_is_named_with_why(tmp_path: Path) -> None:
    broken = tmp_path / "k-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    badname = tmp_path / "k.whl"
    badname.write_bytes(b"")
    assert choose([read_wheel(broken), read_wheel(badname)], torch=None)[0] is None
    found = select_wheel([read_wheel(broken), read_wheel(badname)], where="w/", python="3.12",
                         variant=None, torch=None, torch_known=True)
    assert sorted(found.details) == [
        "k-1.0-py3-none-any.whl not a zip file (File is not a zip file)",
        "k.whl not a wheel file name (Invalid wheel filename (wrong number of parts): 'k')"]
    assert choose([], torch=None)[1].endswith(": it holds no wheel")


def test_sha_file_is_the_files_sha256(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"abc" * 100_000)
    assert sha_file(path) == hashlib.sha256(b"abc" * 100_000).hexdigest()


def test_a_published_release_is_fetched_from_a_folder_index_and_checked(
        tmp_path: Path) -> None:
    index = tmp_path / "index"
    made = make_wheel(index, "relpkg", "1.2", ["packaging"])
    make_wheel(index, "relpkg", "1.3")
    env = {**os.environ, "UV_NO_INDEX": "1", "UV_CACHE_DIR": str(tmp_path / "cache")}
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    fetched = fetch_release("relpkg", "1.2", python=python, variant="cpu", torch=None,
                            uv=uv_command(env), interpreter=Path(sys.executable),
                            sources=Sources(None, (str(index),)), folder=tmp_path / "got",
                            log=tmp_path / "select.log", env=env, timeout=120)
    assert fetched.wheel is not None, fetched
    assert fetched.wheel.file == made.name
    assert sha_file(fetched.wheel.path) == sha_file(made)
    assert fetched.wheel.path.is_relative_to(tmp_path / "got")
    missing = fetch_release("relpkg", "9.9", python=python, variant="cpu", torch=None,
                            uv=uv_command(env), interpreter=Path(sys.executable),
                            sources=Sources(None, (str(index),)), folder=tmp_path / "got",
                            log=tmp_path / "select.log", env=env, timeout=120)
    assert missing.wheel is None and missing.unavailable
    assert "could not list the files of relpkg==9.9" in missing.reason


_TAGS = ["cp310-cp310", "cp311-cp311", "cp312-cp312", "cp39-abi3", "py3-none"]
_BOUNDS = ["", "torch", "torch>=2.13,<2.14", "torch<2.13", "torch>=2.9,<2.10"]
_LABELS = ["", "+cpu", "+cu130", "+cu12", "+cu12torch2.9cxx11abiTRUE", "+torch2.13"]


@pytest.mark.skipif(not LINUX, reason="manylinux x86_64 tags")
@given(st.lists(st.tuples(st.sampled_from(_TAGS), st.sampled_from(_BOUNDS),
                          st.sampled_from(_LABELS)), max_size=6, unique=True),
       st.sampled_from(["3.10", "3.11", "3.12"]), st.sampled_from(["cpu", "cu128", "cu130"]),
       st.sampled_from(["2.9.1", "2.12.0", "2.13.0", None]))
def test_a_chosen_wheel_installs_admits_the_torch_and_names_the_variant(
        specs: list[tuple[str, str, str]], python: str, variant: str,
        torch: str | None) -> None:
    wheels = []
    for tag, bound, label in specs:
        platform = "any" if tag.startswith("py3") else PLATFORM
        _, version, _, wheel_tags = parse_wheel_filename(f"k-1.0{label}-{tag}-{platform}.whl")
        wheels.append(GivenWheel(Path(f"k-1.0{label}-{tag}-{platform}.whl"), "k", version,
                                 wheel_tags, (bound,) if bound else ()))
    found = select_wheel(wheels, where="w/", python=python, variant=variant, torch=torch,
                         torch_known=True)
    fits = [w for w in wheels if wheel_problem(w, python=python, variant=variant, torch=torch,
                                               torch_known=True) is None]
    if found.wheel is None:
        assert len(fits) != 1 and (bool(found.ambiguous) is (len(fits) > 1))
        assert found.ambiguous or found.reason.startswith("no wheel in w/ for cp")
        return
    wheel = found.wheel
    assert fits == [wheel]
    assert wheel.tags & cell_tags(python)
    if wheel.requires_dist:
        assert torch is not None
        assert Requirement(wheel.requires_dist[0]).specifier.contains(torch)
    label = wheel.label or ""
    if cuda := re.match(r"cu[0-9]+", label):
        assert variant.startswith(cuda[0])
    if label == "cpu":
        assert variant == "cpu"
    if minor := re.search(r"torch([0-9]+\.[0-9]+)", label):
        assert torch is not None and torch.startswith(minor[1] + ".")
