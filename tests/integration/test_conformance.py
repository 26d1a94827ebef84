"""The emulator answers the recorded conformance sequence as a real kube-apiserver v1.36 does.

tests/conformance/api_diff.py (vendored) runs a fixed sequence of requests and writes a
normalized transcript; kube-apiserver-v1.36.json (sections `core`, `gc`) and
kube-apiserver-v1.36-crd.json (section `crd`, recorded from ../shared/k8s with
`--no-controllers`) are those transcripts from a real server. Sections `core` and `crd` run
against emulators with no controllers (as they were recorded), section `gc` against one with its
garbage collector on; all three at once, each as the emulator's admin (a bearer token). Every
step must match, except the steps in IGNORED, each with the reason kopflow never relies on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.apiserver import ADMIN_TOKEN, ApiServer

HERE = Path(__file__).resolve().parents[1] / "conformance"
SCRIPT = HERE / "api_diff.py"
GOLDEN = HERE / "kube-apiserver-v1.36.json"
GOLDEN_CRD = HERE / "kube-apiserver-v1.36-crd.json"
NOT_COMPARED = {"message", "warning"}  # wording of errors and warnings (as the script's README)

# step name -> why kopflow never relies on that behaviour. Empty: every recorded step matches.
IGNORED: dict[str, str] = {}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in NOT_COMPARED}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _run_section(server: ApiServer, section: str, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--server",
            server.url,
            "--token",
            ADMIN_TOKEN,
            "--out",
            str(out),
            "--section",
            section,
            "--wait",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_transcript_matches_kube_apiserver(tmp_path: Path) -> None:
    servers = {
        "core": ApiServer(crd_dir=None, controllers=False),
        "gc": ApiServer(crd_dir=None),
        "crd": ApiServer(crd_dir=None, controllers=False),
    }
    outputs = {section: tmp_path / f"{section}.json" for section in servers}
    try:
        procs = {s: _run_section(server.start(), s, outputs[s]) for s, server in servers.items()}
        logs = {s: p.communicate(timeout=90)[0] for s, p in procs.items()}
    finally:
        for server in servers.values():
            server.stop()
    for section, proc in procs.items():
        assert proc.returncode == 0, logs[section][-3000:]

    golden = {
        **json.loads(GOLDEN.read_text())["sections"],
        **json.loads(GOLDEN_CRD.read_text())["sections"],
    }
    total, matching, differing = 0, 0, []
    for section in servers:
        ours = {s["step"]: s for s in json.loads(outputs[section].read_text())["sections"][section]}
        for step in golden[section]:
            total += 1
            mine = ours.get(step["step"])
            if mine is not None and _strip(mine) == _strip(step):
                matching += 1
            else:
                differing.append((f"{section}:{step['step']}", step, mine))
    print(f"conformance: {matching} of {total} steps match kube-apiserver v1.36")
    unexpected = [d for d in differing if d[0].split(":", 1)[1] not in IGNORED]
    assert not unexpected, "\n".join(
        f"{name}\n  real: {json.dumps(want)}\n  emu:  {json.dumps(got)}"
        for name, want, got in unexpected
    )
    stale = set(IGNORED) - {d[0].split(":", 1)[1] for d in differing}
    assert not stale, f"ignored steps that now match (remove them from IGNORED): {sorted(stale)}"
