"""Reading manifest files: multi-document YAML with file/document positions for messages."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Document:
    """One YAML document and where it came from."""

    source: str
    index: int
    body: Any

    @property
    def label(self) -> str:
        """`file.yaml` for single-document files' first document, else `file.yaml#2`."""
        kind = self.body.get("kind", "?") if isinstance(self.body, dict) else "?"
        name = ""
        if isinstance(self.body, dict) and isinstance(self.body.get("metadata"), dict):
            name = self.body["metadata"].get("name") or self.body["metadata"].get(
                "generateName", ""
            )
        return f"{self.source}#{self.index + 1} ({kind} {name})".rstrip()


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so `on:` and `no` stay strings.

    YAML 1.1 reads a bare `on:` key (as in `retry.on`) as the boolean true.
    """


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def parse(text: str) -> list[Any]:
    """Every document in a YAML text, with YAML 1.2 booleans."""
    return list(yaml.load_all(text, Loader=Loader))


class ManifestError(Exception):
    """A file that cannot be read or is not YAML."""


def load(path: str | Path) -> list[Document]:
    """Every non-empty document in a file (`-` reads standard input)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    except OSError as err:
        raise ManifestError(f"{path}: cannot read: {err.strerror}") from err
    try:
        bodies = parse(text)
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML: {err}") from err
    return [Document(str(path), i, b) for i, b in enumerate(bodies) if b is not None]
