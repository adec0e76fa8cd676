"""Fuzzing matrix.yaml: whatever the file holds, the parser returns a Matrix or raises a
SpecError (exit code 2) that points inside the file and says something; nothing else, ever.

Documents are generated three ways: structured (random trees of mappings, lists and scalars
built from the real keys, with plausible values, implausible ones and the valid keys with
wrong types), mutated (a structured document with characters inserted, deleted or replaced)
and raw (any text, any bytes). A sample of them also goes through ``compatmatrix plan``.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compatmatrix.cli import main
from compatmatrix.errors import SpecError
from compatmatrix.model.spec import STAGES, TOP_KEYS, Matrix, load_matrix, parse_matrix

# --- the documents -------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A scalar as written in the YAML source (plain, quoted, tagged, anchored, an alias)."""

    text: str


Tree = Union[Raw, list["Tree"], dict[str, "Tree"]]  # noqa: UP007 (a recursive alias)

SCALARS = (  # plausible values and implausible ones, as they would be written
    "1", "2", "0", "-1", "900", "90", "pkg", ".", "..", '"pkg"', "3.11", '"3.10"', "3.10",
    '"3.12"', "3.9", "cpu", "cu130", "cu128", "cu12*", "rocm6.3", "none", "None", "~", "null",
    "preinstalled", '"2.13.0"', "2.9.0", '">=2.9,<2.10"', '"<2.10"', '"2.13.*"', '">=3.12"',
    "true", "false", "yes", "no", "on", "off", "auto", "pypi", "h100", "H100", "a100", '"9.0"',
    '"9.0a"', '"8.0+PTX"', "sm_90", "dev", "test", '"a+b"', "2027-01-31", "2027-13-45",
    "https://download.pytorch.org/whl/cpu", "pip-config", '"$HOME/wheels"', "compatmatrix",
    '"compatmatrix @ git+https://github.com/ORG/compatmatrix@v0.1.0"', '"x; rm -rf /"',
    "pytest>=8", '"numpy"', "pkg.__torch__", "tests/unit", "-x", "/usr/bin/nvcc",
    '"/nonexistent/python3.11"', "ubuntu-latest", "self-hosted", "default",
    # YAML 1.1 numbers, floats, odd strings
    "017", "00", "0x1F", "0b101", "1_000", "1:30", "-1:30", "1:30.5", "1_0.5", "0o17", ".inf",
    "-.inf", ".nan", "1e3", "1.0e+3", "+5", "10" * 30, "9" * 500, '""', "''", '" "', '"\\0"',
    '"a\\0b"', '"\\t"', '"a\\nb"', '"3.11\\n"', '"\\ud800"', '"\\U0001F600"', "é", "🙂",
    '"3.\u0661\u0661"', '"²"', "'it''s'", '"' + "x" * 300 + '"',
    # tags, anchors, aliases, merge keys
    "!!str 017", "!!int 5", '!!int "abc"', "!!float 1", "!!binary aGVsbG8=", "!!bool yes",
    "!!python/object:os.system x", "!custom x", "&a 1", "*a", "&b pkg", "*b", "<<", "=",
)
KEY_WORDS = (  # keys as they would be written: real ones, misspelt ones, odd ones
    *TOP_KEYS, "path", "import", "abi3", "build_torch_attr", "test_requires", "cuda_archs",
    "nvcc", "python", "cuda", "extras", "torch", "vllm", "paths", "workers", "requires", "gpu",
    "args", "timeout", "required", "fail_on_incompatible", "fail_on_new", "quarantine", "test",
    "reason", "expires", "runners", "timeout_minutes", "install", "github", "buildkite", "cpu",
    "h100", "find_links", "cu130", *STAGES, '"3.11"', "3.11", "versoin", "toch", "Torch",
    '"torch\\n"', "1", "017", "~", '""', "<<", "? [a]", "a b", "é",
)
PROJECT_PATHS = ("pkg", '"pkg/"', ".", "..", "nope", '"/"', '"p\\0kg"', "a" * 5000, "a" * 300,
                 '"' + "a/" * 3000 + '"', "pkg/pyproject.toml")

# A schema of matrix.yaml, for the generator: what each key holds when it is right.
#   ("scalar", good, bad)          one of ``good``; outside clean documents also ``bad``
#   ("list", item, max)            a list of 1..max distinct items
#   ("map", {key: schema}, required)   a mapping with (some of) these keys
#   ("dict", keys, value, max)     a mapping of 0..max keys drawn from the scalar ``keys``
Schema = tuple[Any, ...]


def one(*good: str, bad: tuple[str, ...] = ()) -> Schema:
    return ("scalar", good, bad)


PYTHON = one('"3.10"', '"3.11"', "3.12", '"3.13"', bad=("3.9", "3.1", "017", "2.7"))
PACKAGE = one('"2.13.0"', '"2.9.0"', "none", '">=2.9,<2.10"', '"2.13.*"', "2.13",
              bad=("preinstalled", "latest", "1:30"))
CUDA = one("cpu", "cu130", "cu128", "rocm6.3", bad=("cuda12", "gpu", "cu12*"))
EXTRA = one("none", "dev", "test", '"a+b"', bad=("'bad name'",))
AXES = {"python": ("list", PYTHON, 3), "cuda": ("list", CUDA, 3),
        "extras": ("list", EXTRA, 3), "torch": ("list", PACKAGE, 3),
        "vllm": ("list", PACKAGE, 2), "transformers": ("list", PACKAGE, 2)}
ENTRY = ("dict", one("python", "cuda", "torch", bad=("vllm", "extras", "toch", "Bad_Axis!")),
         one('"3.11"', '"3.12"', "cpu", "cu130", '"2.13.0"', '"<2.10"', '">=3.12"', "none",
             "dev", bad=("cu12*", "3.1", "017")), 3)
SUITE = ("map", {"paths": ("list", one("tests/unit", "tests/import"), 2),
                 "workers": one("auto", "1", "4", bad=("0", "many", '"²"', "99999")),
                 "requires": ("map", {"gpu": one("h100", "H100", bad=("a100", "tpu"))},
                              ("gpu",)),
                 "args": ("list", one("-x", '"-k not slow"'), 2),
                 "timeout": one("900", bad=("0", "1:30", "10" * 40, '"900"'))}, ("paths",))
RUNNER = ("map", {"github": ("list", one("ubuntu-latest", "self-hosted", "h100"), 3),
                  "buildkite": one("default", "h100")}, ())
MATRIX: Schema = ("map", {
    "version": one("1", bad=("2", '"1"', "1.0", "01")),
    "project": ("map", {
        "path": one("pkg", bad=PROJECT_PATHS),
        "import": one("pkg", "compat_kernels", bad=('""',)),
        "abi3": one("true", "false", '">=2.6"', bad=("yes", '"not a spec"')),
        "build_torch_attr": one("pkg.__torch__"),
        "test_requires": ("list", one("pytest>=8", "numpy", bad=('"bad req ]"',)), 2),
        "cuda_archs": ("list", one('"9.0"', '"9.0a"', '"8.0+PTX"',
                                   bad=("sm_90", '"90a"', "9.0", '"9.1"')), 2),
        "nvcc": one("auto", "pypi", "/usr/local/cuda/bin/nvcc", bad=("Auto", "nvcc")),
        "cuda_code": one("required", "optional", bad=("maybe",)),
        "torch_abi": one("unstable", "stable", bad=("Stable", "abi3")),
    }, ("path", "import")),
    "axes": ("map", AXES, ("python", "cuda", "torch")),
    "include": ("list", ENTRY, 2),
    "exclude": ("list", ENTRY, 2),
    "indexes": ("map", {"cpu": one("https://download.pytorch.org/whl/cpu", "pypi"),
                        "cu130": one("pypi"), "find_links": ("list", one("pip-config"), 2)},
                ()),
    "suites": ("dict", one("unit", "import", bad=('"bad name!"',)), SUITE, 3),
    "gate": ("map", {
        "required": ("list", ENTRY, 2),
        "fail_on_incompatible": one("true", "false", bad=("maybe",)),
        "fail_on_new": one("true", "false"),
        "quarantine": ("list", ("map", {
            "test": one("tests/unit/test_x.py::test_y"), "reason": one("flaky"),
            "expires": one("2027-01-31", bad=("2027-13-45", "tomorrow"))},
            ("test", "reason", "expires")), 2)}, ()),
    "ci": ("map", {"runners": ("dict", one("cpu", "h100", bad=("tpu",)), RUNNER, 2),
                   "timeout_minutes": one("90", bad=("0", "10" * 200, "1_000")),
                   "install": one(".", "compatmatrix", bad=('"x; rm -rf /"', '"-e ."'))}, ()),
    "interpreters": ("dict", one('"3.11"', "3.12", bad=("python",)),
                     one('"/nonexistent/python3.11"', '"$HOME/py/bin/python"'), 2),
    "timeouts": ("dict", one(*STAGES, bad=("compile",)),
                 one("600", bad=("0", "-5", "1:30", "0x10", "10" * 300)), 3),
}, ("version", "project", "axes"))

_CHARACTERS = [(0x20, 0x7E)] * 24 + [(0x00, 0x1F), (0x7F, 0xFF), (0x100, 0xD7FF),
                                    (0xD800, 0xDFFF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]


class Generator:
    """One structured document from a seeded random.Random (one Hypothesis draw per
    document: drawing every decision from Hypothesis makes 2,000 documents take minutes).

    Each document has a mistake rate: none (plausible values only, the right shapes, no
    stray keys: valid matrices and the checks between sections are reached), a mistake or
    two (the checks of later sections are reached with one), or many."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.rate = rnd.choice((0.0, 0.0, 0.02, 0.02, 0.05, 0.2))

    def chance(self, p: float) -> bool:
        return self.rnd.random() < p

    def value(self, schema: Schema) -> Tree:
        if self.chance(self.rate):
            return self.tree(2)  # the wrong type: a mapping where a list belongs, ...
        kind = schema[0]
        if kind == "scalar":
            good, bad = schema[1], schema[2]
            if not self.chance(2 * self.rate):
                return Raw(self.rnd.choice(good))
            return Raw(self.rnd.choice(bad)) if bad and self.chance(0.6) else self.scalar()
        if kind == "list":
            items: dict[str, Tree] = {}
            for _ in range(self.rnd.randint(1, schema[2])):
                item = self.value(schema[1])
                items.setdefault(repr(item), item)  # distinct: a duplicate is found early
            return list(items.values())
        if kind == "map":
            fields, required = schema[1], schema[2]
            result = {name: self.value(sub) for name, sub in fields.items()
                      if self.chance((1 - self.rate / 2) if name in required else 0.35)}
        else:  # "dict"
            result = {}
            for _ in range(self.rnd.randint(0, schema[3])):
                key = self.value(schema[1])
                result[key.text if isinstance(key, Raw) else self.key()] = self.value(schema[2])
        if self.chance(self.rate):
            result[self.key()] = self.tree(1)  # a key that does not belong there
        return result

    def tree(self, depth: int) -> Tree:
        """A random tree of mappings, lists and scalars."""
        roll = self.rnd.random()
        if depth <= 0 or roll < 0.6:
            return self.scalar()
        size = self.rnd.randint(0, 3)
        if roll < 0.8:
            return [self.tree(depth - 1) for _ in range(size)]
        return {self.key(): self.tree(depth - 1) for _ in range(size)}

    def scalar(self) -> Raw:
        roll = self.rnd.random()
        if roll < 0.55:
            return Raw(self.rnd.choice(SCALARS))
        if roll < 0.75:
            return Raw(json.dumps(self.text(), ensure_ascii=self.chance(0.5)))
        if roll < 0.85:
            return Raw(self.text().replace("\n", " "))  # plain: may be anything at all
        return Raw(str(self.rnd.randint(-(10**30), 10**30)))

    def key(self) -> str:
        return self.rnd.choice(KEY_WORDS) if self.chance(0.7) else json.dumps(self.text())

    def text(self) -> str:
        chars = []
        for _ in range(self.rnd.randint(0, 10)):
            low, high = self.rnd.choice(_CHARACTERS)
            chars.append(chr(self.rnd.randint(low, high)))
        return "".join(chars)

    def document(self) -> str:
        text = emit(self.value(MATRIX), self.rnd.choice(("block", "flow", "mixed")))
        if not self.chance(self.rate * 2):
            return text
        for _ in range(self.rnd.randint(1, 4)):  # mutated: characters in, out, replaced
            at = self.rnd.randint(0, len(text))
            text = text[:at] + self.rnd.choice(MUTATIONS) + text[at + self.rnd.randint(0, 3):]
        return text


MUTATIONS = ("", ":", "-", " ", "\n", "[", "{", "]", "}", "'", '"', "#", "&a ", "*a", "!!",
             "\t", "\x00", "\ufeff", "\r", "---\n", "%YAML 1.1\n", "...", "? ", "|", ">")


def emit(tree: Tree, style: str) -> str:
    """YAML source for ``tree``: ``block``, ``flow`` (one flow mapping) or ``mixed`` (block
    at the top, flow below). Scalars and keys are written as drawn."""
    if style == "flow" or not isinstance(tree, dict):
        return _flow(tree) + "\n"
    return "".join(_block(tree, 0, style))


def _flow(tree: Tree) -> str:
    if isinstance(tree, Raw):
        return tree.text
    if isinstance(tree, list):
        return "[" + ", ".join(_flow(item) for item in tree) + "]"
    return "{" + ", ".join(f"{key}: {_flow(value)}" for key, value in tree.items()) + "}"


def _block(tree: Tree, indent: int, style: str) -> list[str]:
    pad = " " * indent
    nested = style == "mixed" and indent > 0
    lines = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(value, Raw) or not value or nested:
                lines.append(f"{pad}{key}: {_flow(value)}\n")
            else:
                lines += [f"{pad}{key}:\n", *_block(value, indent + 2, style)]
    elif isinstance(tree, list):
        for item in tree:
            if isinstance(item, Raw) or not item or nested:
                lines.append(f"{pad}- {_flow(item)}\n")
            else:
                lines += [f"{pad}-\n", *_block(item, indent + 2, style)]
    else:
        lines.append(f"{pad}{tree.text}\n")
    return lines


def _document(rnd: random.Random) -> str:
    return Generator(rnd).document()


documents = st.builds(_document, st.randoms(use_true_random=True))
# one document in four is raw: any text (a Hypothesis string) or any bytes (read from a file)
inputs = st.one_of(documents, documents, documents, st.text(max_size=300),
                   st.binary(max_size=300))


# --- the property --------------------------------------------------------------------------

_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # YAML's line breaks


def _inside(text: str, line: int, column: int) -> bool:
    lines = _LINE_BREAK.split(text)
    return 1 <= line <= len(lines) and 1 <= column <= len(lines[line - 1]) + 1


def check_parse(document: str | bytes, folder: Path) -> Matrix | None:
    """parse_matrix (text) or load_matrix (bytes, from a file): a Matrix or a located
    SpecError; any other exception fails the test."""
    path = folder / "matrix.yaml"
    text = document.decode("utf-8", errors="replace") if isinstance(document, bytes) \
        else document
    try:
        if isinstance(document, bytes):
            path.write_bytes(document)
            return load_matrix(path)
        return parse_matrix(document, path)
    except SpecError as error:
        assert error.exit_code == 2
        assert error.message.strip(), "an empty message"
        where = error.location
        if where.file == path:
            assert _inside(text, where.line, where.column), \
                f"{where.line}:{where.column} is outside the document"
        else:  # a mistake in the package's own files (pkg/pyproject.toml)
            assert where.file.is_relative_to(folder), where.file
            assert where.line >= 1 and where.column >= 1
        return None


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "pkg").mkdir()
    (folder / "pkg" / "pyproject.toml").write_text(
        '[project]\nname = "pkg"\nversion = "1.0"\n', encoding="utf-8")
    return folder


FUZZ = settings(max_examples=2000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(document=inputs)
def test_any_document_parses_or_fails_with_a_located_spec_error(
        project: Path, document: str | bytes) -> None:
    check_parse(document, project)


@settings(FUZZ, max_examples=150)
@given(document=documents)
def test_plan_on_any_document_exits_0_or_2_without_a_traceback(
        project: Path, document: str) -> None:
    path = project / "plan.yaml"
    path.write_text(document, encoding="utf-8", errors="surrogatepass")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["plan", "--matrix", str(path)])
    assert code in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert err.getvalue().startswith("compatmatrix: "), err.getvalue()


def test_the_generator_reaches_valid_matrices(project: Path) -> None:
    """The structured documents are not all refused at the first key: some are valid
    (about one in six), so the checks between sections and planning are reached too."""
    valid = 0

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(document=documents)
    def count(document: str) -> None:
        nonlocal valid
        valid += check_parse(document, project) is not None

    count()
    assert valid >= 15, f"only {valid} of 300 structured documents are valid matrices"
