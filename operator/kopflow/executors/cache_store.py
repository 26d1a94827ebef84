"""A file-per-key cache of task outputs for `kopflow run` (default `~/.cache/kopflow`)."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

_KEY = re.compile(r"^[0-9a-f]{16,128}$")


def default_dir() -> Path:
    """`$KOPFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/kopflow`, else `~/.cache/kopflow`."""
    if env := os.environ.get("KOPFLOW_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kopflow"


class FileCache:
    """Entries are JSON files named by the engine's hex cache key; expired ones read as misses."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_dir()

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.directory / f"{key}.json"

    def get(self, key: str, now: datetime) -> tuple[dict[str, str], datetime] | None:
        """(outputs, expires_at) of a live entry, or None; unreadable entries are misses."""
        path = self._path(key)
        try:
            data = json.loads(path.read_text())
            expires = datetime.fromisoformat(data["expiresAt"])
            outputs = {str(k): str(v) for k, v in data["outputs"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return (outputs, expires) if expires > now else None

    def put(self, key: str, outputs: dict[str, str], expires_at: datetime) -> None:
        """Store atomically (write then rename) so a crash never leaves half an entry."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"outputs": outputs, "expiresAt": expires_at.isoformat()}))
        tmp.replace(path)
