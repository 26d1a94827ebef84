"""The local cache store and env files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kopflow.executors.cache_store import FileCache
from kopflow.executors.envfiles import EnvFileError, load_env_files

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
KEY = "ab" * 32


def test_cache_round_trip_and_ttl(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    assert cache.get(KEY, NOW) is None
    cache.put(KEY, {"rows": "42"}, NOW + timedelta(hours=1))
    assert cache.get(KEY, NOW) == ({"rows": "42"}, NOW + timedelta(hours=1))
    assert cache.get(KEY, NOW + timedelta(hours=2)) is None
    assert [p.name for p in tmp_path.iterdir()] == [f"{KEY}.json"]


def test_corrupt_entry_is_a_miss_and_keys_cannot_escape(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    (tmp_path / f"{KEY}.json").write_text("{not json")
    assert cache.get(KEY, NOW) is None
    with pytest.raises(ValueError, match="not a cache key"):
        cache.get("../../etc/passwd", NOW)


def test_env_files_by_stem_or_name(tmp_path: Path) -> None:
    f = tmp_path / "warehouse.env"
    f.write_text("# creds\nUSER=etl\nexport PASSWORD='s3 cret=1'\n\n")
    other = tmp_path / "x.env"
    other.write_text("TOKEN=abc\n")
    assert load_env_files([str(f), f"api={other}"]) == {
        "warehouse": {"USER": "etl", "PASSWORD": "s3 cret=1"},
        "api": {"TOKEN": "abc"},
    }


def test_env_file_errors_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.env"
    f.write_text("OK=1\nthis is not an assignment\n")
    with pytest.raises(EnvFileError, match=r"bad.env:2: expected KEY=VALUE"):
        load_env_files([str(f)])
    with pytest.raises(EnvFileError, match="cannot read"):
        load_env_files([str(tmp_path / "missing.env")])
