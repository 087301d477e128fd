"""The config file as the watcher sees it: re-read when its content hash changes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..config import ModelConfig, parse_config_bytes, read_config_bytes
from ..errors import StartupError

log = logging.getLogger(__name__)


class ConfigWatch:
    """``config.json`` of a running server; ``poll`` returns its models when its content changed."""

    def __init__(self, path: Path, shape_variants: int) -> None:
        self.path = path
        self.shape_variants = shape_variants
        # the file was parsed into the start-up settings just before this: take that as applied
        self._digest = self._hash()
        self.error: str | None = None  # why the last changed content was not applied, if it was not

    def _hash(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def poll(self) -> tuple[ModelConfig, ...] | None:
        """The models of the file if its content changed since the last poll and it is valid, else None.

        An unreadable or invalid file is logged once per content and changes nothing; editing it
        again (even back to the previous content) is a new change.
        """
        try:
            data = read_config_bytes(self.path)
        except StartupError as exc:
            if self._digest is not None:
                self._digest = None
                self._reject(str(exc))
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return None
        self._digest = digest
        try:
            models, _metrics = parse_config_bytes(data, self.path, self.shape_variants)
        except StartupError as exc:
            self._reject(str(exc))
            return None
        self.error = None
        log.info("Config file %s changed: applying it", self.path)
        return models

    def _reject(self, error: str) -> None:
        self.error = error
        log.error("Config file not applied, models unchanged: %s", error)
