"""Label and field selectors with the real API server's grammar and error messages.

Lists, watches and deletecollection of the emulator filter with these, so an operator that
relies on `job-name=...` or `metadata.name=...` sees exactly the objects a cluster would give it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .apiserver_types import Obj, ResourceType, bad_request

_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: key, operator, values."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        try:
            number, bound = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return number > bound if self.op == ">" else number < bound


class LabelSelector:
    """A parsed `labelSelector` query parameter; empty matches everything."""

    def __init__(self, requirements: list[Requirement]) -> None:
        self.requirements = requirements

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def equalities(self) -> list[tuple[str, str]]:
        """key=value clauses, for an index lookup before the full match."""
        return [(r.key, r.values[0]) for r in self.requirements if r.op == "=" and r.values]

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """Parse with the messages of k8s.io/apimachinery/pkg/labels (400 BadRequest on error)."""
        if not text or not text.strip():
            return cls([])
        tokens = [t for t in _TOKEN.findall(text)]
        reqs: list[Requirement] = []
        i = 0

        def fail(msg: str) -> None:
            raise bad_request(f"unable to parse requirement: {msg}")

        def values_list() -> tuple[str, ...]:
            nonlocal i
            if i >= len(tokens) or tokens[i] != "(":
                found = tokens[i] if i < len(tokens) else ""
                fail(f"found '{found}' expected: '('")
            i += 1
            vals: list[str] = []
            while i < len(tokens) and tokens[i] != ")":
                if tokens[i] != ",":
                    vals.append(tokens[i])
                i += 1
            if i >= len(tokens):
                fail("found '', expected: ')'")
            i += 1
            return tuple(vals)

        while i < len(tokens):
            tok = tokens[i]
            if tok == "!":
                i += 1
                if i >= len(tokens):
                    fail("found '', expected: identifier")
                reqs.append(Requirement(tokens[i], "!"))
                i += 1
            else:
                key = tok
                if not _KEY.match(key):
                    fail(f"invalid label key {key!r}")
                i += 1
                if i >= len(tokens) or tokens[i] == ",":
                    reqs.append(Requirement(key, "exists"))
                elif tokens[i] in ("=", "==", "!=", ">", "<"):
                    op = {"==": "="}.get(tokens[i], tokens[i])
                    i += 1
                    value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                    if value:
                        i += 1
                    reqs.append(Requirement(key, op, (value,)))
                elif tokens[i] in ("in", "notin"):
                    op = tokens[i]
                    i += 1
                    reqs.append(Requirement(key, op, values_list()))
                else:
                    fail(f"found '{tokens[i]}', expected: in, notin, =, ==, !=, gt, lt")
            if i < len(tokens):
                if tokens[i] != ",":
                    fail(f"found '{tokens[i]}', expected: ','")
                i += 1
        return cls(reqs)


def object_field(obj: Obj, name: str, rt: ResourceType) -> str:
    """The value a field selector compares for `name` (metadata.* or a type-specific getter)."""
    metadata = obj.get("metadata") or {}
    if name == "metadata.name":
        return str(metadata.get("name") or "")
    if name == "metadata.namespace":
        return str(metadata.get("namespace") or "")
    getter = rt.field_getters[name]
    return getter(obj)


class FieldSelector:
    """A parsed `fieldSelector`: `a=b,c!=d` over the fields the resource type supports."""

    def __init__(self, clauses: list[tuple[str, str, str]], rt: ResourceType) -> None:
        self.clauses, self.rt = clauses, rt

    def matches(self, obj: Obj) -> bool:
        for name, op, value in self.clauses:
            actual = object_field(obj, name, self.rt)
            if (actual == value) != (op == "="):
                return False
        return True

    def name(self) -> str | None:
        """The single metadata.name this selector pins, if any (a fast path for lookups)."""
        for name, op, value in self.clauses:
            if name == "metadata.name" and op == "=":
                return value
        return None

    @classmethod
    def parse(cls, text: str | None, rt: ResourceType) -> FieldSelector:
        clauses: list[tuple[str, str, str]] = []
        if not text or not text.strip():
            return cls(clauses, rt)
        for part in _split_unescaped(text, ","):
            m = re.match(r"^([^=!]+)(==|!=|=)(.*)$", part.strip())
            if not m:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
            name, op, value = m.group(1).strip(), m.group(2), m.group(3)
            if name not in ("metadata.name", "metadata.namespace") and name not in rt.field_getters:
                if rt.field_getters:
                    raise bad_request(f"field label not supported: {name}")
                raise bad_request(
                    f'"{name}" is not a known field selector: only "metadata.name", '
                    '"metadata.namespace"'
                )
            clauses.append((name, "!=" if op == "!=" else "=", value.replace("\\,", ",")))
        return cls(clauses, rt)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += "\\" + ch if ch != sep else "\\" + sep
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


Matcher = Callable[[Obj], bool]
