"""Fixtures of the example client's tests: its input files, a server with the quadrant model, certificates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ...helpers.example_client import LABELS, NAMES, quadrant_images, serve_quadrants
from ...helpers.server import RunningServer, Serve
from ...helpers.tls import Certs, make_certs


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """imgs.npy (10 images), lbs.npy, names.txt in a directory."""
    np.save(tmp_path / "imgs.npy", quadrant_images(LABELS))
    np.save(tmp_path / "lbs.npy", np.array(LABELS, dtype=np.int64))
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    return tmp_path


@pytest.fixture
def quad(serve: Serve, tmp_path: Path) -> RunningServer:
    """A real server with the quadrant model."""
    return serve_quadrants(serve, tmp_path)


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    """A CA with a server and a client certificate, and a client certificate from another CA."""
    return make_certs(tmp_path / "certs")
