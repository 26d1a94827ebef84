"""The two ways YAML reaches kopflow: 1.2 (kopflow itself) and 1.1 (kubectl, Helm).

kopflow reads manifests as YAML 1.2 (core schema). kubectl and Helm read the same text with
go-yaml v2, a YAML 1.1 reader: there a plain `on`, `off`, `yes`, `no`, `y`, `n` is a boolean,
`0755` is octal, `1_000` and `1:30` are integers. A plain scalar that the two read differently
means something else on the cluster than in `kopflow run`; this module tells which ones.

Nothing here imports the rest of kopflow: the CRD generator and the manifest loader both use it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

STR = "tag:yaml.org,2002:str"
TIMESTAMP = "tag:yaml.org,2002:timestamp"
MERGE = "tag:yaml.org,2002:merge"

_RESOLVERS = yaml.resolver.Resolver.yaml_implicit_resolvers


def _without(tags: set[str]) -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    return {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in tags]
        for first, resolvers in _RESOLVERS.items()
    }


class Yaml11Loader(yaml.SafeLoader):
    """YAML 1.1 as kubectl reads it: PyYAML's SafeLoader plus go-yaml v2's y/Y/n/N booleans.

    It keeps PyYAML's octal (`0755`) and sexagesimal (`1:30`) integers and its timestamps,
    which is stricter than go-yaml v2 (it hands timestamps on as strings).
    """


Yaml11Loader.yaml_implicit_resolvers = _without({"tag:yaml.org,2002:value"})  # go-yaml: a string
Yaml11Loader.bool_values = {**yaml.SafeLoader.bool_values, "y": True, "n": False}
Yaml11Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN")
)


class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 core schema: booleans are only true/false; no octal `0755`, `1_000`, `1:30`,
    timestamps or `=`; `0o17` is octal and `0x1F` hexadecimal. Everything else is a string."""


Yaml12Loader.yaml_implicit_resolvers = _without(
    {
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:null",
        TIMESTAMP,
        "tag:yaml.org,2002:value",
    }
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _construct_int12(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)  # `0755` is decimal in YAML 1.2


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int12)


_L11, _L12 = Yaml11Loader(""), Yaml12Loader("")


def _reading(loader: yaml.SafeLoader, text: str) -> tuple[str, Any]:
    """(tag, value) of `text` as a plain scalar."""
    tag: str = loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if tag not in loader.yaml_constructors:
        return tag, text  # `<<`: a merge key, the same to both
    # A scalar constructor only reads the node: no loader state changes (safe across threads).
    return tag, loader.yaml_constructors[tag](loader, yaml.ScalarNode(tag, text))


def reading11(text: str) -> tuple[str, Any]:
    """What YAML 1.1 (kubectl) makes of `text` written plain: (tag, value)."""
    return _reading(_L11, text)


def reading12(text: str) -> tuple[str, Any]:
    """What YAML 1.2 (kopflow) makes of `text` written plain: (tag, value)."""
    return _reading(_L12, text)


def same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    """Two readings are the same value of the same type (1 is not True, 1 is not 1.0)."""
    if a[0] != b[0] or type(a[1]) is not type(b[1]):
        return False
    return bool(a[1] == b[1] or (a[1] != a[1] and b[1] != b[1]))  # .nan is .nan


def plain_is_safe(text: str) -> bool:
    """`text` may be written plain: both YAML versions read it as this very string."""
    return reading11(text) == (STR, text) and reading12(text) == (STR, text)


def describe(reading: tuple[str, Any]) -> str:
    """A reading for people: `the boolean false`, `the number 1.1`, `null`."""
    tag, value = reading
    kind = tag.rsplit(":", 1)[-1]
    if kind == "bool":
        return f"the boolean {str(value).lower()}"
    if kind in ("int", "float"):
        return f"the number {value}"
    if kind == "null":
        return "null"
    if kind == STR.rsplit(":", 1)[-1]:
        return f'the string "{value}"'
    return f"a {kind} ({value})"


class Dumper(yaml.SafeDumper):
    """SafeDumper that double-quotes every string YAML 1.1 or 1.2 would read as something else.

    PyYAML's own dumper quotes what YAML 1.1 (as PyYAML knows it) misreads, but not go-yaml
    v2's `y`/`n` booleans nor YAML 1.2's `0o17`.
    """

    def represent_str(self, data: str) -> yaml.ScalarNode:
        if not plain_is_safe(data):
            return self.represent_scalar(STR, data, style='"')
        return super().represent_str(data)


Dumper.add_representer(str, Dumper.represent_str)
