"""`--env-file [NAME=]PATH`: local stand-ins for the Secrets and ConfigMaps of `envFrom`."""

from __future__ import annotations

from pathlib import Path


class EnvFileError(Exception):
    """An env file that cannot be read or parsed; the message names file and line."""


def parse_env_text(text: str, source: str) -> dict[str, str]:
    """`KEY=VALUE` lines; blank lines and `#` comments skipped; one level of quotes removed."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EnvFileError(f"{source}:{lineno}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def load_env_files(specs: list[str]) -> dict[str, dict[str, str]]:
    """Secret/ConfigMap name -> its keys. `NAME=PATH`, or `PATH` named by the file's stem."""
    sources: dict[str, dict[str, str]] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise EnvFileError(f"--env-file {spec}: cannot read {path}: {err.strerror}") from err
        sources.setdefault(name, {}).update(parse_env_text(text, path))
    return sources
