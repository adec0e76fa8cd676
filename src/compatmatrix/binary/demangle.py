"""Demangle C++ symbol names (Itanium ABI) for ``compatmatrix doctor``.

``c++filt`` (binutils) is used when it is installed. Otherwise a small fallback demangles the
names an extension typically dies on: functions and variables in namespaces and classes,
constructors and destructors, templates, abi tags and the usual parameter types. It gives up
on anything rarer (lambdas, local names, expressions) and returns the mangled name unchanged:
an honest mangled name is better than a wrong demangled one.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence

from compatmatrix.host import cmd as _cmd

__all__ = ["demangle", "demangle_all"]

_BUILTINS = {
    "v": "void", "w": "wchar_t", "b": "bool", "c": "char", "a": "signed char",
    "h": "unsigned char", "s": "short", "t": "unsigned short", "i": "int", "j": "unsigned int",
    "l": "long", "m": "unsigned long", "x": "long long", "y": "unsigned long long",
    "n": "__int128", "o": "unsigned __int128", "f": "float", "d": "double",
    "e": "long double", "g": "__float128", "z": "...",
}
_BUILTINS_D = {"n": "decltype(nullptr)", "s": "char16_t", "i": "char32_t", "u": "char8_t",
               "h": "half", "f": "decimal32", "d": "decimal64", "F": "_Float16"}
# Abbreviations that are never added to the substitution table.
_STD_SUBSTITUTIONS = {
    "a": "std::allocator", "b": "std::basic_string",
    "s": "std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
    "i": "std::basic_istream<char, std::char_traits<char> >",
    "o": "std::basic_ostream<char, std::char_traits<char> >",
    "d": "std::basic_iostream<char, std::char_traits<char> >",
}
_OPERATORS = {
    "nw": "new", "na": "new[]", "dl": "delete", "da": "delete[]", "ps": "+", "ng": "-",
    "ad": "&", "de": "*", "co": "~", "pl": "+", "mi": "-", "ml": "*", "dv": "/", "rm": "%",
    "an": "&", "or": "|", "eo": "^", "aS": "=", "pL": "+=", "mI": "-=", "mL": "*=",
    "dV": "/=", "rM": "%=", "aN": "&=", "oR": "|=", "eO": "^=", "ls": "<<", "rs": ">>",
    "lS": "<<=", "rS": ">>=", "eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=",
    "ge": ">=", "ss": "<=>", "nt": "!", "aa": "&&", "oo": "||", "pp": "++", "mm": "--",
    "cm": ",", "pm": "->*", "pt": "->", "cl": "()", "ix": "[]",
}
_LITERAL_SUFFIXES = {"int": "", "unsigned int": "u", "long": "l", "unsigned long": "ul",
                     "long long": "ll", "unsigned long long": "ull"}
_SPECIAL = {"TV": "vtable for ", "TI": "typeinfo for ", "TS": "typeinfo name for ",
            "TT": "VTT for "}


class _Unsupported(Exception):
    """The symbol uses a part of the grammar the fallback does not cover."""


def demangle_all(symbols: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """Each symbol's demangled name: from ``c++filt`` when it is on PATH, else the fallback."""
    names = sorted(set(symbols))
    found = _with_cxxfilt(names, env) if names else None
    return found if found is not None else {name: demangle(name) for name in names}


def _with_cxxfilt(names: list[str], env: Mapping[str, str]) -> dict[str, str] | None:
    tool = shutil.which("c++filt", path=env.get("PATH"))
    if tool is None:
        return None
    result = _cmd.run([tool], env=env, timeout=10, input_text="\n".join(names) + "\n")
    lines = result.output.splitlines()
    if not result.ok or len(lines) != len(names):
        return None
    return dict(zip(names, lines, strict=False))


def demangle(symbol: str) -> str:
    """The fallback demangler; returns ``symbol`` itself when it cannot demangle it."""
    core, dot, clone = symbol.partition(".")  # GCC clone suffixes: .constprop.0, .cold
    if not core.startswith("_Z"):
        return symbol
    try:
        parser = _Parser(core[2:])
        text = parser.encoding()
        if parser.rest:
            raise _Unsupported(parser.rest)
    except (_Unsupported, IndexError, ValueError):
        return symbol
    return text + (f" [clone .{clone}]" if dot else "")


class _Parser:
    def __init__(self, text: str) -> None:
        self.rest = text
        self.subs: list[str] = []
        self.template_args: list[str] = []

    # -- reading ------------------------------------------------------------------------

    def peek(self, count: int = 1) -> str:
        return self.rest[:count]

    def take(self, count: int = 1) -> str:
        head, self.rest = self.rest[:count], self.rest[count:]
        if len(head) != count:
            raise _Unsupported("unexpected end")
        return head

    def number(self) -> int:
        digits = len(self.rest) - len(self.rest.lstrip("0123456789"))
        if not digits:
            raise _Unsupported(self.rest)
        return int(self.take(digits))

    # -- grammar --------------------------------------------------------------------------

    def encoding(self) -> str:
        special = _SPECIAL.get(self.peek(2))
        if special:
            self.take(2)
            return special + self.type()
        name, const, templated, structor = self.name()
        if not self.rest or self.peek() == "E":
            return name  # a variable
        returns = self.type() + " " if templated and not structor else ""
        params = self.parameters()
        return f"{returns}{name}({params}){const}"

    def parameters(self) -> str:
        types = []
        while self.rest and self.peek() not in ("E", "."):
            types.append(self.type())
        return "" if types == ["void"] else ", ".join(types)

    def name(self) -> tuple[str, str, bool, bool]:
        """(qualified name, " const" or "", ends in template args, is a ctor/dtor)."""
        if self.peek() == "N":
            return self.nested_name()
        if self.peek() == "Z":
            raise _Unsupported("local name")
        if self.peek(2) == "St":
            self.take(2)
            name = "std::" + self.unqualified(None)[0]
        elif self.peek() == "S":
            name = self.substitution()
        else:
            name = self.unqualified(None)[0]
        if self.peek() == "I":
            self.subs.append(name)
            name = self.templated(name, outer=True)
            return name, "", True, False
        return name, "", False, False

    def nested_name(self) -> tuple[str, str, bool, bool]:
        self.take()  # N
        quals = []
        while self.peek() in ("K", "V", "r"):
            quals.append({"K": " const", "V": " volatile", "r": " restrict"}[self.take()])
        while self.peek() in ("R", "O"):
            quals.append({"R": " &", "O": " &&"}[self.take()])
        parts: list[str] = []
        templated = structor = pending = False
        while self.peek() != "E":
            if pending:  # every prefix is a substitution candidate, the whole name is not
                self.subs.append("::".join(parts))
            pending = True
            if self.peek() == "I":  # a templated constructor stays a constructor
                parts[-1] = self.templated(parts[-1], outer=True)
                templated = True
                continue
            templated = structor = False
            if self.peek(2) == "St":
                self.take(2)
                parts.append("std::" + self.unqualified(None)[0])
            elif self.peek() == "S":
                parts.append(self.substitution())
                pending = False  # already in the table
            else:
                piece, structor = self.unqualified(parts[-1] if parts else None)
                parts.append(piece)
        self.take()  # E
        return "::".join(parts), "".join(quals), templated, structor

    def unqualified(self, enclosing: str | None) -> tuple[str, bool]:
        """A source name, constructor, destructor or operator; True for ctors and dtors."""
        head = self.peek()
        if head.isdigit():
            name = self.source_name()
        elif head in ("C", "D") and self.peek(2)[1:2].isdigit():
            self.take(2)
            base = (enclosing or "").split("<", 1)[0].rsplit("::", 1)[-1]
            return ("~" if head == "D" else "") + base, True
        elif self.peek(2) == "cv":
            self.take(2)
            name = "operator " + self.type()
        elif self.peek(2) in _OPERATORS:
            symbol = _OPERATORS[self.take(2)]
            name = "operator" + (" " if symbol[0].isalpha() else "") + symbol
        else:
            raise _Unsupported(self.rest)
        while self.peek() == "B":  # abi tag: [abi:cxx11]
            self.take()
            name += f"[abi:{self.source_name()}]"
        return name, False

    def source_name(self) -> str:
        text = self.take(self.number())
        return "(anonymous namespace)" if text.startswith("_GLOBAL__N") else text

    def substitution(self) -> str:
        self.take()  # S
        head = self.peek()
        if head in _STD_SUBSTITUTIONS:
            self.take()
            return _STD_SUBSTITUTIONS[head]
        if head == "_":
            self.take()
            return self.subs[0]
        seq = ""
        while self.peek() != "_":
            seq += self.take()
        self.take()
        return self.subs[int(seq, 36) + 1]

    def template_arguments(self, *, outer: bool = False) -> str:
        self.take()  # I
        args = []
        while self.peek() != "E":
            args.append(self.template_argument())
        self.take()
        if outer:
            self.template_args = args
        text = ", ".join(args)
        return f"<{text} >" if text.endswith(">") else f"<{text}>"

    def templated(self, name: str, *, outer: bool = False) -> str:
        # "operator<< <T>", not "operator<<<T>"
        return name + (" " if name.endswith("<") else "") + self.template_arguments(outer=outer)

    def template_argument(self) -> str:
        if self.peek() == "L":  # a literal: L <type> <value> E
            self.take()
            kind = self.type()
            negative = self.peek() == "n"
            if negative:
                self.take()
            value = self.number()
            self.take()  # E
            if kind == "bool":
                return "true" if value else "false"
            number = f"{'-' if negative else ''}{value}"
            suffix = _LITERAL_SUFFIXES.get(kind)
            return number + suffix if suffix is not None else f"({kind}){number}"
        if self.peek() == "J":  # an argument pack
            self.take()
            items = []
            while self.peek() != "E":
                items.append(self.template_argument())
            self.take()
            return ", ".join(items)
        return self.type()

    def type(self) -> str:
        head = self.peek()
        if head in _BUILTINS:
            return _BUILTINS[self.take()]
        if head == "D" and self.peek(2)[1:] in _BUILTINS_D:
            self.take()
            return _BUILTINS_D[self.take()]
        if head in ("P", "R", "O", "K", "V"):
            return self.modified_type()
        if head == "F":
            return self.function_type("")
        if head == "T":
            return self.template_param()
        if head == "S" and self.peek(2) != "St":
            return self.substituted_type()
        return self.class_type()

    def modified_type(self) -> str:
        head = self.take()
        if head in ("P", "R", "O") and self.peek() == "F":
            suffix = {"P": "(*)", "R": "(&)", "O": "(&&)"}[head]
            return self.function_type(suffix)
        inner = self.type()
        text = inner + {"P": "*", "R": "&", "O": "&&", "K": " const", "V": " volatile"}[head]
        if (head in ("R", "O") and inner.endswith("&")) or (head == "K" and
                                                            inner.endswith(" const")):
            text = inner  # reference collapsing; a template parameter that is already const
        self.subs.append(text)
        return text

    def function_type(self, declarator: str) -> str:
        self.take()  # F
        returns = self.type()
        params = self.parameters()
        self.take()  # E
        text = f"{returns} ({params})"
        self.subs.append(text)  # the function type itself, then the pointer or reference to it
        if declarator:
            text = f"{returns} {declarator}({params})"
            self.subs.append(text)
        return text

    def template_param(self) -> str:
        self.take()  # T
        seq = ""
        while self.peek() != "_":
            seq += self.take()
        self.take()
        text = self.template_args[int(seq) + 1 if seq else 0]
        self.subs.append(text)
        return text

    def substituted_type(self) -> str:
        text = self.substitution()
        if self.peek() == "I":
            text += self.template_arguments()
            self.subs.append(text)
        return text

    def class_type(self) -> str:
        if self.peek() == "N":
            saved = self.template_args
            text = self.nested_name()[0]
            self.template_args = saved  # a type's own template args are not the function's
        else:
            std = self.peek(2) == "St"
            if std:
                self.take(2)
            text = ("std::" if std else "") + self.unqualified(None)[0]
            self.subs.append(text)
            if self.peek() == "I":
                saved = self.template_args
                text += self.template_arguments()
                self.template_args = saved
                self.subs.append(text)
            return text
        self.subs.append(text)
        return text
