"""Client-safe error texts: what went wrong, without the server's file system or OpenVINO's sources.

SPEC §6: errors shown to clients (a model's load error in status included) name models and
versions, never absolute paths. OpenVINO's exception texts start with C++ source locations
(``Exception from src/inference/src/cpp/core.cpp:84:``, ``Check '...' failed at src/core/...:``)
and often quote the model file's absolute path. The full text goes to the log where the error is
translated; clients get the first line that says something, with paths reduced to file names.
"""

from __future__ import annotations

import logging
import re

from ..errors import StatusCode, VinoserveError

log = logging.getLogger(__name__)

MAX_LEN = 300
# Lines that only locate the failure in OpenVINO's sources or repeat its inputs.
_NOISE = re.compile(
    r"^(?:Exception from \S+|Check '.*' failed at \S+|While validating node .*|"
    r"Shape inference input shapes .*|\[ ?\w+ ?\])\s*$"
)
# OpenVINO source locations (relative to its source tree), with their line numbers.
_SOURCE = re.compile(r"\b(?:src|openvino|thirdparty|include)/[\w./+-]*\.(?:cpp|hpp|cc|c|h)(?::\d+)*:?")
# An absolute POSIX path: a slash after a non-word start, then path characters.
_ABSOLUTE = re.compile(r"(?<![\w.~-])/[^\s\"'`:;,()\[\]{}<>]+")


def scrub(text: str) -> str:
    """``text`` with OpenVINO source locations removed and absolute paths cut to their last part."""
    text = _SOURCE.sub("", text)
    return _ABSOLUTE.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", text).strip()


def client_text(error: BaseException | str, fallback: str) -> str:
    """The first meaningful line of ``error``, scrubbed and bounded; ``fallback`` when none is left."""
    for line in str(error).splitlines():
        line = line.strip()
        if not line or _NOISE.match(line):
            continue
        cleaned = scrub(line)
        if cleaned:
            return cleaned[:MAX_LEN]
    return fallback


def translate(exc: Exception, code: StatusCode, what: str, fallback: str) -> VinoserveError:
    """Log OpenVINO's full text; the error for the client says ``what``: its first clean line."""
    log.warning("%s: %s", what, str(exc).strip())
    return VinoserveError(code, f"{what}: {client_text(exc, fallback)}")
