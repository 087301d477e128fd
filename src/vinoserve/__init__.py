"""vinoserve: an OpenVINO model server with TF Serving and KServe v2 APIs."""

from __future__ import annotations

__version__ = "0.1.0"
