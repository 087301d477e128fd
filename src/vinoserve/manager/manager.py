"""Models by name, their versions, and the changes of their state (load, retire, rescan, config edits)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import StatusCode, VinoserveError
from ..metrics import Metrics
from ..runtime.openvino import Runtime
from ..types import VersionState, VersionStatus
from .config_watch import ConfigWatch
from .model import Model
from .version import ModelVersion

log = logging.getLogger(__name__)


def compile_workers() -> int:
    """Threads for model loads and variant compiles: one per usable core, at least 2, at most 8.

    Loads and compiles block and are CPU-bound (OpenVINO compiles on threads of its own as well),
    so more of them than cores only slows each one and the inference running beside them; at least
    two so one long compile does not hold up every other load and reshape; at most eight because
    each compile holds its own copy of the model in memory.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (taskset, cgroup cpusets)
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(2, min(cores, 8))


class ModelManager:
    """Owns every model; ``ready`` once each configured model had its first load attempt.

    With ``config_path`` (multi-model mode) every ``reload`` also re-reads that file and applies
    what changed in it; ``shape_variants`` is the default for entries that do not set their own.
    """

    def __init__(
        self,
        configs: tuple[ModelConfig, ...],
        runtime: Runtime,
        metrics: Metrics,
        config_path: Path | None = None,
        shape_variants: int = 4,
    ) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.models: dict[str, Model] = {}
        for cfg in configs:
            if cfg.name in self.models:
                log.error("Duplicate model name %s: the first entry is kept", cfg.name)
                continue
            self.models[cfg.name] = Model(cfg)
        self.executor = ThreadPoolExecutor(max_workers=compile_workers(), thread_name_prefix="vinoserve-compile")
        self.ready = False
        self._lock = asyncio.Lock()
        self.config = ConfigWatch(config_path, shape_variants) if config_path is not None else None

    @property
    def config_error(self) -> str | None:
        """Why the config file's latest content was not applied (None when it was, or unchanged)."""
        return self.config.error if self.config is not None else None

    def _make(self, cfg: ModelConfig, version: int) -> ModelVersion:
        return ModelVersion(cfg, version, self.runtime, self.metrics, self.executor)

    async def start(self) -> None:
        """First load of every model."""
        await self.reload()
        self.ready = True

    async def reload(self) -> bool:
        """Apply config file changes, then rescan version directories; True if anything changed."""
        async with self._lock:
            changed = await self._apply_config()
            results = await asyncio.gather(*(m.sync(self._make) for m in self.models.values()))
        return changed or any(results)

    async def _apply_config(self) -> bool:
        """The diff of a changed, valid config file: add, reconfigure, remove; others untouched."""
        configs = self.config.poll() if self.config is not None else None
        if configs is None:
            return False
        steps: list[Coroutine[Any, Any, object]] = []
        for cfg in configs:
            model = self.models.get(cfg.name)
            if model is None:
                log.info("Model %s added", cfg.name)
                model = self.models[cfg.name] = Model(cfg)
                steps.append(model.sync(self._make))
            elif model.removed or model.config != cfg:
                log.info("Model %s %s", cfg.name, "added again" if model.removed else "changed: reloading it")
                steps.append(model.reconfigure(cfg, self._make))
        names = {cfg.name for cfg in configs}
        removed = [name for name, model in self.models.items() if name not in names and not model.removed]
        for name in removed:
            log.info("Model %s removed from the config: retiring it", name)
            steps.append(self.models[name].remove())
        await asyncio.gather(*steps)
        for name in removed:  # its versions are retired: its series go, so config churn cannot pile them up
            self.metrics.drop_model(name)
        return bool(steps)

    def _model(self, name: str) -> Model:
        model = self.models.get(name)
        if model is None:
            raise VinoserveError(StatusCode.MODEL_NOT_FOUND)
        return model

    def get_version(self, name: str, version: int | None) -> ModelVersion:
        """The version a request goes to (the highest AVAILABLE one when none is asked for)."""
        model = self._model(name)
        if not version:
            return model.default_version()
        mv = model.versions.get(version)
        if mv is None:
            raise VinoserveError(StatusCode.VERSION_NOT_FOUND)
        if mv.state <= VersionState.LOADING:
            raise VinoserveError(StatusCode.VERSION_NOT_LOADED)
        if mv.state >= VersionState.UNLOADING:
            raise VinoserveError(StatusCode.VERSION_RETIRED)
        return mv

    def status(self, name: str, version: int | None) -> list[VersionStatus]:
        """Status of one version, or all versions (newest first) when ``version`` is None."""
        model = self._model(name)
        if version:
            mv = model.versions.get(version)
            if mv is None:
                raise VinoserveError(StatusCode.VERSION_NOT_FOUND)
            return [mv.status()]
        return [model.versions[n].status() for n in sorted(model.versions, reverse=True)]

    def all_status(self) -> dict[str, list[VersionStatus]]:
        """Status of every model."""
        return {name: self.status(name, None) for name in self.models}

    async def watch(self, period: float) -> None:
        """Rescan every ``period`` seconds until cancelled."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.reload()
            except Exception:  # the watcher must outlive any one bad scan
                log.exception("repository scan failed")

    async def stop(self) -> None:
        """Retire every version (in-flight requests finish first) and stop the compile threads."""
        await asyncio.gather(
            *(v.retire() for m in self.models.values() for v in m.versions.values() if v.state < VersionState.UNLOADING)
        )
        self.executor.shutdown(wait=False, cancel_futures=True)
