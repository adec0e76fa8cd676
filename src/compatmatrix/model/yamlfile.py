"""YAML loading that keeps where every value came from.

PyYAML's events carry line and column marks; we turn them into small located values so that
validation can point at the exact place of a mistake. Scalars keep their raw text:
``python: [3.10]`` must mean "3.10", not 3.1.

Whatever the file holds, loading ends in values or a SpecError at a place inside the file:
the file is read only when it is a regular UTF-8 file of at most 4 MiB; nesting deeper than
MAX_DEPTH and aliases expanding to more than MAX_ALIAS_VALUES values are refused while the
events are read (recursion-free, nothing is expanded); tags other than ``!!str``, NUL
characters and lone surrogates are refused; and so are YAML 1.1's other ways of writing
numbers (``017``, ``0x1F``, ``0b11``, ``1:30``, ``1_000``), which YAML 1.1 parsers such as
PyYAML read as numbers a person did not mean, and other parsers as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from compatmatrix.errors import Location, SpecError
from compatmatrix.host.safeio import MiB, UnreadableFile, read_bounded

__all__ = ["MAX_ALIAS_VALUES", "MAX_BYTES", "MAX_DEPTH", "YMap", "YScalar", "YSeq", "YValue",
           "line_column", "load", "read_text"]


@dataclass(frozen=True)
class YScalar:
    """A scalar with its raw text and the type YAML would give it (str, int, float, bool, null)."""

    text: str
    kind: str
    at: Location


@dataclass(frozen=True)
class YSeq:
    items: tuple[YValue, ...]
    at: Location


@dataclass(frozen=True)
class YMap:
    """A mapping with string keys; ``keys`` keeps each key's own location."""

    entries: tuple[tuple[YScalar, YValue], ...]
    at: Location

    def get(self, name: str) -> YValue | None:
        for key, value in self.entries:
            if key.text == name:
                return value
        return None

    def names(self) -> list[str]:
        return [key.text for key, _ in self.entries]


YValue = YScalar | YSeq | YMap

_TAG_KIND = {
    "tag:yaml.org,2002:str": "str",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:null": "null",
}


# Bounds on what a matrix.yaml may make this process do. Real files are a few kilobytes,
# nest a handful of levels and use anchors (if at all) for a few repeated values.
MAX_BYTES = 4 * MiB
MAX_DEPTH = 64
MAX_ALIAS_VALUES = 10_000  # values that aliases may add by expansion, all aliases together

_STR_TAG = "tag:yaml.org,2002:str"
_COLLECTION_TAGS = ("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")
# YAML's line breaks, as PyYAML counts lines for its marks
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")


def read_text(path: Path) -> str:
    """The text of ``path``: a regular UTF-8 file of at most MAX_BYTES (else a SpecError)."""
    try:
        data = read_bounded(path, MAX_BYTES)
    except UnreadableFile as exc:
        raise SpecError(Location(path, 1, 1), f"cannot read the file: {exc}",
                        "pass --matrix FILE (a matrix.yaml), or run from the folder that "
                        "holds matrix.yaml") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = data[:exc.start].decode("utf-8", errors="replace")
        line, column = line_column(prefix, len(prefix))
        raise SpecError(Location(path, line, column),
                        f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} here)",
                        "save it as UTF-8") from None


def line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``, counting line breaks as YAML does."""
    breaks = list(_LINE_BREAK.finditer(text, 0, index))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, index - start + 1


def load(path: Path, text: str | None = None) -> YValue | None:
    """Parse ``path`` (or ``text``, reported as ``path``) into located values.

    Never more than MAX_DEPTH levels deep and never more than MAX_ALIAS_VALUES values added
    by aliases: both are refused while the events are read, before anything is built.
    """
    if text is None:
        text = read_text(path)
    if len(text) > MAX_BYTES:
        raise SpecError(Location(path, 1, 1), "the file is larger than 4 MiB",
                        "a matrix.yaml is a few kilobytes: is this the right file?")
    try:
        return _Composer(path, text).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            Location(path, line, col),
            f"YAML syntax error: {problem}",
            "check indentation and quoting near this position",
        ) from None
    except yaml.reader.ReaderError as exc:
        line, col = line_column(text, min(max(exc.position, 0), len(text)))
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise SpecError(Location(path, line, col),
                        f"the character {character!a} is not allowed in YAML",
                        "remove it, or write it as an escape in a double-quoted string "
                        "if it belongs to a value") from None
    except yaml.YAMLError as exc:
        raise SpecError(Location(path, 1, 1), f"YAML error: {exc}") from None


def _at(mark: Any, path: Path) -> Location:
    """The location of a PyYAML mark (typed loosely: pure Python and libyaml marks alike)."""
    if mark is None:
        return Location(path, 1, 1)
    return Location(path, int(mark.line) + 1, int(mark.column) + 1)


class _Frame:
    """A sequence or mapping being read: its values so far and its size with expansions."""

    def __init__(self, event: yaml.CollectionStartEvent, at: Location) -> None:
        self.mapping = isinstance(event, yaml.MappingStartEvent)
        self.anchor: str | None = event.anchor
        self.at = at
        self.size = 1
        self.items: list[YValue] = []
        self.entries: list[tuple[YScalar, YValue]] = []
        self.key: YScalar | None = None
        self.seen: dict[str, Location] = {}

    def add(self, value: YValue, size: int) -> None:
        self.size += size
        if not self.mapping:
            self.items.append(value)
        elif self.key is not None:
            self.entries.append((self.key, value))
            self.key = None
        elif not isinstance(value, YScalar):
            raise SpecError(value.at, "a mapping key must be a plain name")
        elif value.text in self.seen:
            raise SpecError(
                value.at,
                f"duplicate key {value.text!r} (first defined at line "
                f"{self.seen[value.text].line})",
                "remove one of them",
            )
        else:
            self.seen[value.text] = value.at
            self.key = value

    def value(self) -> YValue:
        if self.mapping:
            return YMap(tuple(self.entries), self.at)
        return YSeq(tuple(self.items), self.at)


class _Composer:
    """PyYAML's events -> located values, without recursion (a deep file cannot exhaust the
    stack) and with aliases counted as they are met (an alias bomb is refused at its first
    alias past the budget, never expanded)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.events = yaml.parse(text, Loader=yaml.SafeLoader)
        self.resolver = yaml.resolver.Resolver()
        self.anchors: dict[str, tuple[YValue, int]] = {}
        self.open: set[str] = set()  # anchors of collections still being read
        self.expanded = 0

    def document(self) -> YValue | None:
        next(self.events)  # StreamStartEvent
        if isinstance(next(self.events), yaml.StreamEndEvent):
            return None  # nothing but comments and blank lines
        value = self.node()
        next(self.events)  # DocumentEndEvent
        extra = next(self.events)
        if not isinstance(extra, yaml.StreamEndEvent):
            raise SpecError(_at(extra.start_mark, self.path),
                            "the file holds more than one YAML document",
                            "a matrix.yaml is one document: remove this '---' and what follows, "
                            "or move it to its own file")
        return value

    def node(self) -> YValue:
        stack: list[_Frame] = []
        while True:
            event = next(self.events)
            if isinstance(event, yaml.AliasEvent):
                value, size = self.alias(event)
            elif isinstance(event, yaml.ScalarEvent):
                value, size = self.scalar(event), 1
                if event.anchor is not None:
                    self.check_new_anchor(event.anchor, event.start_mark)
                    self.anchors[event.anchor] = (value, size)
            elif isinstance(event, yaml.CollectionStartEvent):
                at = _at(event.start_mark, self.path)
                if len(stack) >= MAX_DEPTH:
                    raise SpecError(at, f"values nested more than {MAX_DEPTH} levels deep",
                                    "a matrix.yaml nests a few levels; is this the right file?")
                self.check_collection_tag(event, at)
                if event.anchor is not None:
                    self.check_new_anchor(event.anchor, event.start_mark)
                    self.open.add(event.anchor)
                stack.append(_Frame(event, at))
                continue
            elif isinstance(event, yaml.CollectionEndEvent):
                frame = stack.pop()
                if frame.mapping and frame.key is not None:  # the parser never does this
                    raise SpecError(frame.key.at, "a mapping key without a value")
                value, size = frame.value(), frame.size
                if frame.anchor is not None:
                    self.open.discard(frame.anchor)
                    self.anchors[frame.anchor] = (value, size)
            else:  # the parser never does this either
                raise SpecError(_at(event.start_mark, self.path), "unexpected YAML structure")
            if not stack:
                return value
            stack[-1].add(value, size)

    def scalar(self, event: yaml.ScalarEvent) -> YScalar:
        at = _at(event.start_mark, self.path)
        text = event.value
        if event.tag is None or event.tag == "!":
            tag = self.resolver.resolve(  # type: ignore[no-untyped-call]
                yaml.ScalarNode, text, event.implicit)
            kind = _TAG_KIND.get(tag, "str")
        elif event.tag == _STR_TAG:
            kind = "str"
        else:
            raise SpecError(at, f"the YAML tag {event.tag.replace('tag:yaml.org,2002:', '!!')} "
                            "is not supported in matrix.yaml",
                            "remove the tag; quote the value if it is text")
        if "\0" in text:
            raise SpecError(at, "a value holds a NUL character (\\0)", "remove it")
        if not text.isascii() and _SURROGATE.search(text) is not None:
            text = _join_surrogates(text, at)
        if kind in ("int", "float") and not _plain_number(text, kind):
            raise _yaml11_number(text, kind, at)
        return YScalar(text, kind, at)

    def check_collection_tag(self, event: yaml.CollectionStartEvent, at: Location) -> None:
        if event.tag is not None and event.tag != "!" and event.tag not in _COLLECTION_TAGS:
            raise SpecError(at, f"the YAML tag {event.tag.replace('tag:yaml.org,2002:', '!!')} "
                            "is not supported in matrix.yaml", "remove the tag")

    def check_new_anchor(self, anchor: str, mark: Any) -> None:
        if anchor in self.anchors or anchor in self.open:
            raise SpecError(_at(mark, self.path), f"the anchor &{anchor} is defined twice",
                            "give each anchor its own name")

    def alias(self, event: yaml.AliasEvent) -> tuple[YValue, int]:
        at = _at(event.start_mark, self.path)
        if event.anchor in self.open:
            raise SpecError(at, f"the alias *{event.anchor} refers to a value that contains it "
                            "(a recursive alias)", "aliases may only repeat a finished value")
        if event.anchor not in self.anchors:
            raise SpecError(at, f"the alias *{event.anchor} has no anchor &{event.anchor} "
                            "before it", "define the anchor before using it")
        value, size = self.anchors[event.anchor]
        self.expanded += size
        if self.expanded > MAX_ALIAS_VALUES:
            raise SpecError(at, f"aliases expand to more than {MAX_ALIAS_VALUES:,} values "
                            f"(here: *{event.anchor})",
                            "matrix.yaml reads anchors and aliases (&name, *name) with a small "
                            "budget; write the values out instead")
        return value, size


def _join_surrogates(text: str, at: Location) -> str:
    """JSON writes a character beyond U+FFFF as two escapes ("\\ud83d\\ude00"), which PyYAML
    reads as two halves: join them; a half without its other half is not a character."""
    try:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        lone = _SURROGATE.search(text)
        half = lone.group() if lone else text
        raise SpecError(at, f"a value holds {half!a}, half of "
                        "a surrogate pair, which is not a character",
                        "write the character itself, or its \\U escape (\\U0001F600)") from None


def _plain_number(text: str, kind: str) -> bool:
    """A number that every YAML version reads the same way (YAML 1.1's octal, hexadecimal,
    binary, base 60 and 1_000 forms are not)."""
    if kind == "int":
        return _DECIMAL.match(text) is not None
    return "_" not in text and ":" not in text


def _yaml11_number(text: str, kind: str, at: Location) -> SpecError:
    body = text.lstrip("+-").replace("_", "")
    form = ("base 60" if ":" in body else "with '_' separators" if "_" in text else
            "binary" if body.startswith("0b") else "hexadecimal" if body.startswith("0x")
            else "octal")
    value = _yaml11_value(text, kind)
    number = f"the {form} number {value}" if value is not None else f"a {form} number"
    return SpecError(at, f"{text!r} is {number} to YAML 1.1 parsers such as PyYAML, "
                     "and plain text to others",
                     f"quote it (\"{text}\") if it is text, such as a version"
                     + (f"; write {value} if it is that number" if value is not None else
                        "; write a plain number if it is one"))


def _yaml11_value(text: str, kind: str) -> int | float | None:
    """What PyYAML makes of a YAML 1.1 number (its construct_yaml_int/float)."""
    if len(text) > 40:
        return None
    value = text.replace("_", "").lower()
    sign = -1 if value.startswith("-") else 1
    value = value.lstrip("+-")
    try:
        if ":" in value:
            digits = [float(part) if kind == "float" else int(part)
                      for part in value.split(":")]
            total: int | float = 0
            for digit in digits:
                total = total * 60 + digit
            return sign * total
        if kind == "float":
            return sign * float(value)
        if value.startswith("0b"):
            return sign * int(value[2:], 2)
        if value.startswith("0x"):
            return sign * int(value[2:], 16)
        if value.startswith("0") and value != "0":
            return sign * int(value, 8)
        return sign * int(value)
    except ValueError:
        return None
