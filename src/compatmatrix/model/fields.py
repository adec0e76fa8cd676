"""Small typed readers over located YAML values; each raises a SpecError at the right place."""

from __future__ import annotations

from collections.abc import Iterable

from compatmatrix.errors import SpecError, did_you_mean
from compatmatrix.model.yamlfile import YMap, YScalar, YSeq, YValue

__all__ = [
    "as_bool",
    "as_int",
    "as_list",
    "as_map",
    "as_scalar_text",
    "as_str_list",
    "check_keys",
]

_KIND_WORD = {YMap: "a mapping", YSeq: "a list", YScalar: "a scalar"}


def _describe(value: YValue) -> str:
    if isinstance(value, YScalar):
        return f"{value.kind} {value.text!r}" if value.kind != "null" else "nothing (null)"
    return _KIND_WORD[type(value)]


def as_map(value: YValue, what: str) -> YMap:
    if not isinstance(value, YMap):
        raise SpecError(value.at, f"{what} must be a mapping, got {_describe(value)}")
    return value


def as_list(value: YValue, what: str, *, allow_empty: bool = True) -> YSeq:
    if not isinstance(value, YSeq):
        raise SpecError(value.at, f"{what} must be a list, got {_describe(value)}")
    if not allow_empty and not value.items:
        raise SpecError(value.at, f"{what} must not be empty", "list at least one value")
    return value


def as_scalar_text(value: YValue, what: str) -> str:
    """The raw text of a scalar (numbers stay as written: 3.10 is "3.10")."""
    if not isinstance(value, YScalar) or value.kind == "null":
        raise SpecError(value.at, f"{what} must be a single value, got {_describe(value)}")
    if not value.text.strip():
        raise SpecError(value.at, f"{what} must not be empty")
    return value.text.strip()


def as_str_list(value: YValue, what: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    if isinstance(value, YScalar) and value.kind == "str":
        return (as_scalar_text(value, what),)
    seq = as_list(value, what, allow_empty=allow_empty)
    return tuple(as_scalar_text(item, f"each entry of {what}") for item in seq.items)


def as_bool(value: YValue, what: str) -> bool:
    if not isinstance(value, YScalar) or value.kind != "bool":
        raise SpecError(value.at, f"{what} must be true or false, got {_describe(value)}")
    return value.text.lower() in ("true", "yes", "on")


def as_int(value: YValue, what: str, *, minimum: int = 0, maximum: int, unit: str = "") -> int:
    """A plain decimal whole number (the loader refuses YAML 1.1's other forms) within
    ``minimum``..``maximum``; ``unit`` ("s") only words the error."""
    if not isinstance(value, YScalar) or value.kind != "int":
        raise SpecError(value.at, f"{what} must be a whole number, got {_describe(value)}")
    text = value.text.strip()
    digits = text.lstrip("+-")
    if not digits.isascii() or not digits.isdigit():  # never a kind "int" from the loader
        raise SpecError(value.at, f"{what} must be a whole number, got {text!r}")
    suffix = f" {unit}" if unit else ""
    significant = digits.lstrip("0") or "0"
    sign = -1 if text.startswith("-") else 1
    if len(significant) > len(str(maximum)):  # not even converted: 10**400 is a mistake
        bound = f"at least {minimum}" if sign < 0 else f"at most {maximum}"
        raise SpecError(value.at, f"{what} must be {bound}{suffix}, got a number of "
                        f"{len(significant)} digits")
    number = sign * int(significant)
    if number < minimum:
        raise SpecError(value.at, f"{what} must be at least {minimum}{suffix}, got {text}")
    if number > maximum:
        raise SpecError(value.at, f"{what} must be at most {maximum}{suffix}, got {number}")
    return number


def check_keys(
    mapping: YMap,
    what: str,
    allowed: Iterable[str],
    required: Iterable[str] = (),
) -> None:
    """Unknown keys fail with the nearest valid one; missing required keys name the mapping."""
    allowed = list(allowed)
    for key, _ in mapping.entries:
        if key.text not in allowed:
            raise SpecError(key.at, f"unknown key {key.text!r} in {what}",
                            did_you_mean(key.text, allowed))
    for name in required:
        if mapping.get(name) is None:
            raise SpecError(mapping.at, f"{what} needs the key {name!r}")
