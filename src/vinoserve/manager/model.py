"""One served model: its versions, and how they change (rescan, new config, removal).

Every change loads before it unloads: new version objects are loaded while the old ones serve, put
in place in one step of the event loop (so a request without a version goes either to the old or to
the new default, never to nothing), and only then are the old ones retired, which waits for their
in-flight requests. Loading includes warm-up: a new version also warms the shapes the version it
replaces served most, so it takes traffic with them compiled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from ..config import ModelConfig
from ..errors import StatusCode, VinoserveError
from ..scheduling.variants import VariantKey
from ..types import VersionState
from .repository import fingerprint, list_versions
from .version import ModelVersion

log = logging.getLogger(__name__)
VersionFactory = Callable[[ModelConfig, int], ModelVersion]


class Model:
    """A served model: its config and every version it has had (retired ones stay listed)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, ModelVersion] = {}
        # taken out of config.json: every version retired and listed with END, as OVMS does
        self.removed = False

    def default_version(self) -> ModelVersion:
        """The highest AVAILABLE version, or the error that explains why there is none."""
        best: ModelVersion | None = None
        for v in self.versions.values():  # once per request: no list, no key function
            if v.state == VersionState.AVAILABLE and (best is None or v.version > best.version):
                best = v
        if best is not None:
            return best
        if any(v.state <= VersionState.LOADING for v in self.versions.values()):
            raise VinoserveError(StatusCode.VERSION_NOT_LOADED)
        if self.versions:
            raise VinoserveError(StatusCode.VERSION_RETIRED)
        raise VinoserveError(StatusCode.VERSION_NOT_FOUND)

    def _served_most(self, k: int, version: int | None = None) -> list[VariantKey]:
        """What a new version should warm: the top ``k`` shapes of the AVAILABLE object of ``version``,
        else of the default version; none when nothing serves."""
        old = self._live().get(version) if version is not None else None
        if old is None or old.state != VersionState.AVAILABLE:
            try:
                old = self.default_version()
            except VinoserveError:
                return []
        return old.served_most(k)

    def _live(self) -> dict[int, ModelVersion]:
        return {n: v for n, v in self.versions.items() if v.state < VersionState.UNLOADING}

    async def sync(self, make: VersionFactory) -> bool:
        """Follow the version directories; True if anything changed.

        New versions (and ones removed before and added again) get new objects; a version whose load
        failed is tried again, as a new object, once its directory changed; versions no longer
        wanted retire after the new ones have loaded. While a wanted version is failing (e.g. its
        files are still being copied), versions that the policy drops but that are still on disk
        keep serving; a version whose directory is gone retires regardless.
        """
        if self.removed:
            return False
        cfg = self.config
        on_disk = list_versions(cfg.base_path)
        wanted = set(cfg.version_policy.select(on_disk))
        live = self._live()
        new = sorted(wanted - set(live))
        gone = sorted(set(live) - wanted)
        retry = sorted(
            n for n in wanted & set(live) if live[n].failed and live[n].fingerprint != fingerprint(live[n].path)
        )
        for n in new:  # listed at once, LOADING while it loads (as OVMS shows it)
            self.versions[n] = make(cfg, n)
        # a failed version keeps its error in status until the new attempt is done
        fresh = {n: make(cfg, n) for n in retry}
        for n in retry:
            log.info("Model %s version %s changed on disk: loading it again", cfg.name, n)
        carried = self._served_most(cfg.shape_variants)
        await asyncio.gather(*(self.versions[n].load(carried) for n in new), *(v.load(carried) for v in fresh.values()))
        self.versions.update(fresh)
        if any(self.versions[n].failed for n in wanted):
            kept = [n for n in gone if n in on_disk]
            if kept and (new or retry):
                log.warning(
                    "Model %s: keeping version(s) %s while a newer version fails to load",
                    cfg.name,
                    ", ".join(map(str, kept)),
                )
            gone = [n for n in gone if n not in kept]
        await self._retire([live[n] for n in gone])
        return bool(new or gone or retry)

    async def reconfigure(self, cfg: ModelConfig, make: VersionFactory) -> None:
        """Apply a changed (or re-added) config entry.

        A change of the version policy alone keeps the versions that stay; any other change loads
        every wanted version anew with the new config, swaps them in, then retires the old objects.
        """
        if self.removed or dataclasses.replace(self.config, version_policy=cfg.version_policy) == cfg:
            self.removed = False
            self.config = cfg
            await self.sync(make)
            return
        wanted = cfg.version_policy.select(list_versions(cfg.base_path))
        fresh = {n: make(cfg, n) for n in wanted}
        await asyncio.gather(*(v.load(self._served_most(cfg.shape_variants, n)) for n, v in fresh.items()))
        old = self._live()
        # one step, no await: requests see either the old objects or the new ones
        self.config = cfg
        self.versions.update(fresh)
        await self._retire(list(old.values()))
        for v in fresh.values():
            v.refresh_variant_gauge()

    async def remove(self) -> None:
        """Retire every version; the model stays listed with its versions at END."""
        self.removed = True
        await self._retire(list(self._live().values()))

    async def _retire(self, versions: list[ModelVersion]) -> None:
        await asyncio.gather(*(v.retire() for v in versions))
        for v in versions:
            log.info("Model %s version %s retired", v.name, v.version)
