"""Models by name, their versions, and the changes of their state (load, retire, rescan)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from ..config import ModelConfig
from ..errors import StatusCode, VinoserveError
from ..metrics import Metrics
from ..runtime.openvino import Runtime
from ..types import VersionState, VersionStatus
from .repository import list_versions
from .version import ModelVersion

log = logging.getLogger(__name__)


class Model:
    """A served model: its config and every version it has had (retired ones stay listed)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, ModelVersion] = {}

    def default_version(self) -> ModelVersion:
        """The highest AVAILABLE version, or the error that explains why there is none."""
        available = [v for v in self.versions.values() if v.state == VersionState.AVAILABLE]
        if available:
            return max(available, key=lambda v: v.version)
        if any(v.state <= VersionState.LOADING for v in self.versions.values()):
            raise VinoserveError(StatusCode.VERSION_NOT_LOADED)
        if self.versions:
            raise VinoserveError(StatusCode.VERSION_RETIRED)
        raise VinoserveError(StatusCode.VERSION_NOT_FOUND)


class ModelManager:
    """Owns every model; ``ready`` once each configured model had its first load attempt."""

    def __init__(self, configs: tuple[ModelConfig, ...], runtime: Runtime, metrics: Metrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.models: dict[str, Model] = {}
        for cfg in configs:
            if cfg.name in self.models:
                log.error("Duplicate model name %s: the first entry is kept", cfg.name)
                continue
            self.models[cfg.name] = Model(cfg)
        # loads and compiles block; two workers match the two cores this is sized for
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vinoserve-compile")
        self.ready = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """First load of every model."""
        await self.reload()
        self.ready = True

    async def reload(self) -> bool:
        """Rescan version directories: load new versions, then retire dropped ones; True if changed."""
        async with self._lock:
            results = await asyncio.gather(*(self._sync_model(m) for m in self.models.values()))
        return any(results)

    async def _sync_model(self, model: Model) -> bool:
        cfg = model.config
        wanted = set(cfg.version_policy.select(list_versions(cfg.base_path)))
        live = {n for n, v in model.versions.items() if v.state < VersionState.UNLOADING}
        new = sorted(wanted - live)
        gone = sorted(live - wanted)
        for n in new:
            model.versions[n] = ModelVersion(cfg, n, self.runtime, self.metrics, self.executor)
        # load before unload: the new versions serve before the old ones retire
        await asyncio.gather(*(model.versions[n].load() for n in new))
        await asyncio.gather(*(model.versions[n].retire() for n in gone))
        for n in gone:
            log.info("Model %s version %s retired", cfg.name, n)
        return bool(new or gone)

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
        await asyncio.gather(*(v.retire() for m in self.models.values() for v in m.versions.values()
                               if v.state < VersionState.UNLOADING))
        self.executor.shutdown(wait=False, cancel_futures=True)
