"""YAML loading that keeps where every value came from.

PyYAML's node graph carries line and column marks; we turn it into small
located values so that validation can point at the exact place of a mistake.
Scalars keep their raw text: ``python: [3.10]`` must mean "3.10", not 3.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import yaml

from .errors import Location, SpecError

__all__ = ["YMap", "YScalar", "YSeq", "YValue", "load"]


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


YValue = Union[YScalar, YSeq, YMap]

_TAG_KIND = {
    "tag:yaml.org,2002:str": "str",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:null": "null",
}


def load(path: Path, text: str | None = None) -> YValue | None:
    """Parse ``path`` (or ``text``, reported as ``path``) into located values."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(Location(path, 1, 1), f"cannot read the file: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            Location(path, line, col),
            f"YAML syntax error: {problem}",
            "check indentation and quoting near this position",
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(Location(path, 1, 1), f"YAML error: {exc}") from None
    return None if node is None else _convert(node, path)


def _at(node: yaml.Node, path: Path) -> Location:
    return Location(path, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node: yaml.Node, path: Path) -> YValue:
    if isinstance(node, yaml.ScalarNode):
        return YScalar(str(node.value), _TAG_KIND.get(node.tag, "str"), _at(node, path))
    if isinstance(node, yaml.SequenceNode):
        return YSeq(tuple(_convert(item, path) for item in node.value), _at(node, path))
    if isinstance(node, yaml.MappingNode):
        entries: list[tuple[YScalar, YValue]] = []
        seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, path)
            if not isinstance(key, YScalar):
                raise SpecError(key.at, "a mapping key must be a plain name")
            if key.text in seen:
                raise SpecError(
                    key.at,
                    f"duplicate key {key.text!r} (first defined at line {seen[key.text].line})",
                    "remove one of them",
                )
            seen[key.text] = key.at
            entries.append((key, _convert(value_node, path)))
        return YMap(tuple(entries), _at(node, path))
    raise SpecError(_at(node, path), "unsupported YAML node (aliases and tags are not allowed)")
