"""On a real cluster: the generated CRDs install and the examples pass server-side validation.

The same checks run on every test session against the real control plane
(tests/integration/real/test_crds_real.py); this one runs them on whatever cluster the current
kubeconfig reaches (kind, a cloud cluster).
"""

from __future__ import annotations

import pytest
from tests.support import kubectl

pytestmark = pytest.mark.e2e


def test_crds_install_and_examples_dry_run() -> None:
    kubectl.install_crds(None)
    assert kubectl.dry_run_examples(None, "default") == {}
