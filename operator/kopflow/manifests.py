"""Reading manifest files: multi-document YAML with file/document positions for messages.

kopflow reads YAML 1.2; kubectl and Helm read the same file as YAML 1.1. `load()` also reports,
for each document, every plain scalar the two read differently (`on:`, `default: no`), and every
unquoted number or boolean where the CRD expects a string (`value: 1.10`): on a cluster either
would mean something else than in `kopflow run`, or be refused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kopflow import yamlspec
from kopflow.engine.validation import Issue, format_loc, renamed

Loader = yamlspec.Yaml12Loader
"""The YAML 1.2 (core schema) loader kopflow reads manifests with."""


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Loader with libyaml's parser when PyYAML has it (several times faster: `kopflow
    validate` starts in a blink), resolving and constructing exactly as Loader does."""

    yaml_implicit_resolvers = Loader.yaml_implicit_resolvers
    yaml_constructors = Loader.yaml_constructors


@dataclass(frozen=True)
class Document:
    """One YAML document and where it came from."""

    source: str
    index: int
    body: Any
    yaml_issues: tuple[Issue, ...] = field(default=())
    """Scalars YAML 1.1 (kubectl, Helm) reads differently, or as a non-string in a string field."""

    @property
    def label(self) -> str:
        """`file.yaml#1 (Kind name)`: the file, the document's position, what it is."""
        kind = self.body.get("kind", "?") if isinstance(self.body, dict) else "?"
        name = ""
        if isinstance(self.body, dict) and isinstance(self.body.get("metadata"), dict):
            name = self.body["metadata"].get("name") or self.body["metadata"].get(
                "generateName", ""
            )
        return f"{self.source}#{self.index + 1} ({kind} {name})".rstrip()


def parse(text: str) -> list[Any]:
    """Every document in a YAML text, read as YAML 1.2."""
    return [body for _, body in _documents(text)]


def _documents(text: str) -> list[tuple[yaml.Node, Any]]:
    """(node, value) of every document: parsed once, the nodes kept for line numbers."""
    loader = _FastLoader(text)
    try:
        out = []
        while loader.check_node():
            node = loader.get_node()
            out.append((node, loader.construct_document(node)))
        return out
    finally:
        loader.dispose()


class ManifestError(Exception):
    """A file that cannot be read or is not YAML."""


def load(path: str | Path) -> list[Document]:
    """Every non-empty document in a file (`-` reads standard input)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    except OSError as err:
        raise ManifestError(f"{path}: cannot read: {err.strerror}") from err
    try:
        documents = _documents(text)
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML: {err}") from err
    return [
        Document(str(path), i, body, tuple(yaml11_issues(node, _schema_of(body))))
        for i, (node, body) in enumerate(documents)
        if body is not None
    ]


def with_yaml_issues(doc: Document, issues: list[Issue]) -> list[Issue]:
    """A document's YAML 1.1 issues, then the other issues at paths they do not already name."""
    named = {i.path for i in doc.yaml_issues}
    return [*doc.yaml_issues, *(i for i in issues if i.path not in named)]


# --- YAML 1.1 versus 1.2 ----------------------------------------------------------------------

Schema = dict[str, Any]


@cache
def _schemas() -> dict[str, Schema]:
    """The CRD schemas: the file `kopflow crds` writes (a test fails when it drifts), else
    generated from the models (slow: it doubles `kopflow validate`'s start-up)."""
    import json

    shipped = Path(__file__).parent / "api" / "schemas.json"
    if shipped.exists():
        loaded: dict[str, Schema] = json.loads(shipped.read_text())
        return loaded
    from kopflow.api import crd

    return crd.schemas()


def _schema_of(body: Any) -> Schema | None:
    kind = body.get("kind") if isinstance(body, dict) else None
    return _schemas().get(kind) if isinstance(kind, str) else None


def _child(schema: Schema | None, key: str) -> Schema | None:
    if schema is None:
        return None
    if key in schema.get("properties", {}):
        return schema["properties"][key]  # type: ignore[no-any-return]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _line(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


def _kubectl_reading(text: str) -> tuple[str, Any]:
    """YAML 1.1 as go-yaml v2 hands it to kubectl: timestamps stay strings."""
    tag, value = yamlspec.reading11(text)
    return (yamlspec.STR, text) if tag == yamlspec.TIMESTAMP else (tag, value)


def _fix(text: str, schema: Schema | None) -> str:
    kind = (schema or {}).get("type")
    if kind == "boolean":
        return "write true or false"
    if kind in ("integer", "number"):
        return "write the number in plain decimal"
    return f'quote it: "{text}"'


def yaml11_issues(
    node: yaml.Node, schema: Schema | None, loc: tuple[int | str, ...] = ()
) -> Iterator[Issue]:
    """Every plain key or value of a composed document that YAML 1.1 reads differently from
    YAML 1.2, or that is not a string where the schema wants one; with its path and fix."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            path = format_loc((*loc, key.value))
            r11, r12 = _kubectl_reading(key.value), yamlspec.reading12(key.value)
            misread = {r11[0], r12[0]} - {yamlspec.STR, yamlspec.MERGE}
            if not key.style and misread:  # plain: None (PyYAML) or "" (libyaml)
                if loc and (message := renamed(str(loc[-1]), key.value)):
                    yield Issue(path, f"{message} ({_line(key)})")
                else:
                    yield Issue(
                        path,
                        f"YAML 1.1 (kubectl, Helm) reads the key {key.value} as "
                        f'{yamlspec.describe(r11)} ({_line(key)}); quote it: "{key.value}"',
                    )
            yield from yaml11_issues(value, _child(schema, key.value), (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        items = schema.get("items") if schema else None
        for i, item in enumerate(node.value):
            yield from yaml11_issues(item, items if isinstance(items, dict) else None, (*loc, i))
    elif isinstance(node, yaml.ScalarNode) and not node.style:
        text, path = node.value, format_loc(loc)
        r11, r12 = _kubectl_reading(text), yamlspec.reading12(text)
        if not yamlspec.same(r11, r12):
            yield Issue(
                path,
                f"YAML 1.1 (kubectl, Helm) reads {text} as {yamlspec.describe(r11)}, YAML 1.2 "
                f"(kopflow) as {yamlspec.describe(r12)} ({_line(node)}); {_fix(text, schema)}",
            )
        elif (schema or {}).get("type") == "string" and r12[0] not in (
            yamlspec.STR,
            "tag:yaml.org,2002:null",
        ):
            yield Issue(
                path,
                f"YAML reads {text} as {yamlspec.describe(r12)} but this field is a string "
                f'({_line(node)}); quote it: "{text}"',
            )
