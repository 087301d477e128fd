"""One model version: load, validate requests against what it accepts, infer, retire."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

from ..config import ModelConfig
from ..errors import StatusCode, VinoserveError
from ..metrics import Metrics
from ..runtime.errortext import client_text
from ..runtime.openvino import Port, Runtime, SourceModel
from ..scheduling.admission import Admission
from ..scheduling.batcher import Batcher
from ..scheduling.variants import Variant, VariantCache, VariantKey, describe
from ..types import ModelMetadata, Shape, TensorSpec, VersionState, VersionStatus
from .batching import batch_rows, make_batcher
from .inputs import InputRule, check_request, plan_inputs
from .repository import Fingerprint, Mapping, find_model_file, fingerprint, read_mapping
from .warmup import Shapes, plan, zeros

log = logging.getLogger(__name__)


class ModelVersion:
    """A version of a model; ``state`` follows SPEC §2."""

    def __init__(
        self, config: ModelConfig, version: int, runtime: Runtime, metrics: Metrics, executor: Executor
    ) -> None:
        self.config = config
        self.name = config.name
        self.version = version
        self.path = config.base_path / str(version)
        self.state = VersionState.START
        self.error = ""
        # the directory as it was when the load began: a failed load is retried once it differs
        self.fingerprint: Fingerprint | None = None
        self._runtime = runtime
        self._metrics = metrics
        self._executor = executor
        self._labels = (self.name, str(version))
        self.series = metrics.version_series(*self._labels)  # None: no per-request metrics
        self._source: SourceModel | None = None
        # shapes fixed at load: one pinned variant; ``auto``: shape variants compiled on request
        self._variants: VariantCache[Variant] = VariantCache(
            config.shape_variants, self._compile_key, executor, metrics, self._labels, pinned=not config.is_auto
        )
        self._admission = Admission(f"model {self.name} version {version}")
        self._rules: dict[str, InputRule] = {}  # by real input name
        self._mapping = Mapping({}, {})
        self._batcher: Batcher | None = None  # dynamic_batching: made on the loop once loaded
        self._any_batch = False  # a fixed batch with batching: other sizes are padded or split

    # -- lifecycle ---------------------------------------------------------------------------
    def status(self) -> VersionStatus:
        """State and load error."""
        return VersionStatus(self.version, self.state, self.error)

    @property
    def failed(self) -> bool:
        """The load was attempted and failed (the version stays LOADING with its error, as in OVMS)."""
        return self.state == VersionState.LOADING and bool(self.error)

    async def load(self, carried: Sequence[VariantKey] = ()) -> None:
        """Read, set layouts and shapes, compile, warm up; on failure stay LOADING with the error (as OVMS).

        ``carried``: shapes the version this one replaces served most, warmed after the configured
        ``warmup_batch_sizes``. The version is AVAILABLE only once warm-up has ended.
        """
        self.state = VersionState.LOADING
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load_blocking)
        except VinoserveError as exc:
            # shown to clients in status: scrubbed again whatever raised it (SPEC §6, no paths)
            self.error = client_text(exc.details or exc.text, exc.code.message)
        except Exception as exc:  # a broken model must not stop the server
            log.exception("loading model %s version %s failed", self.name, self.version)
            self.error = client_text(exc, type(exc).__name__)
        else:
            if self.state != VersionState.LOADING:  # retired while it loaded (shutdown): stay retired
                return
            await self._warm_up(carried)
            if self.state != VersionState.LOADING:
                return
            self._batcher, self._any_batch = make_batcher(
                self.config, self._rules, self._variants, self._infer, self._metrics, self._labels
            )
            self.state = VersionState.AVAILABLE
            log.info("Model %s version %s is AVAILABLE", self.name, self.version)
            return
        log.error("Model %s version %s failed to load: %s", self.name, self.version, self.error)

    def _load_blocking(self) -> None:
        self.fingerprint = fingerprint(self.path)
        if ".." in self.path.parts:
            raise VinoserveError(StatusCode.INTERNAL, "Path with '..' is not allowed")
        file = find_model_file(self.path)
        if file is None:
            raise VinoserveError(StatusCode.INTERNAL, "File not found or cannot open")
        self._mapping = read_mapping(self.path)
        source = self._runtime.read(file)
        self._rules = plan_inputs(self.config, source, self._mapping)
        self._source = source
        shapes = {p.name: p.shape for p in source.inputs}
        if self._variants.pinned:
            self._variants.pin(self._compile(None))
        elif all(d.is_static for s in shapes.values() for d in s):  # auto, and the model's own shape is one
            self._variants.put(
                tuple(sorted((n, tuple(d.lo for d in s)) for n, s in shapes.items())), self._compile(None)
            )

    def _compile(self, shapes: dict[str, Shape] | None) -> Variant:
        """Compile the source as it is (None) or reshaped; blocking."""
        assert self._source is not None
        cfg = self.config
        return Variant.of(self._source.compile(shapes, cfg.target_device, cfg.plugin_config, cfg.nireq))

    def _compile_key(self, key: VariantKey) -> Variant:
        return self._compile({n: tuple(self._rules[n].compile_dims(s)) for n, s in key})

    async def _warm_up(self, carried: Sequence[VariantKey]) -> None:
        """Run each planned shape once on zeros (SPEC §7.5); a failing shape is logged, the load goes on.

        Held like a request, so a retire that comes meanwhile waits for the step under way (and no
        compile lands in a cache already cleared); the remaining steps are skipped.
        """
        who = f"Model {self.name} version {self.version}"
        todo = plan(
            self._rules,
            self.config.warmup_batch_sizes,
            carried,
            auto=not self._variants.pinned,
            capacity=self._variants.capacity,
            who=who,
        )
        if not todo:
            return
        start = time.perf_counter()
        done = []
        with self._admission:
            for shapes in todo:
                if self.state != VersionState.LOADING:
                    return
                key = tuple(sorted(shapes.items()))
                try:
                    await self._warm_one(shapes)
                except Exception as exc:  # a size the model cannot take must not fail the load
                    log.warning("%s: warm-up of %s failed: %s", who, describe(key), exc)
                else:
                    done.append(describe(key))
        log.info("%s warmed up %s in %.3f s", who, ", ".join(done) or "nothing", time.perf_counter() - start)

    async def _warm_one(self, shapes: Shapes) -> None:
        real = check_request(zeros(self._rules, shapes), self._rules, self._current_shapes)
        key = tuple(sorted((n, self._rules[n].key_dims(a.shape)) for n, a in real.items()))
        async with self._variants.use(lambda: key, lambda: "warmup " + describe(key), warmup=True) as variant:
            await variant.pool.run(real, _nbytes(real))

    def served_most(self, k: int) -> list[VariantKey]:
        """Up to ``k`` shape variants this version served most (none unless AVAILABLE under ``auto``)."""
        return self._variants.top_keys(k) if self.state == VersionState.AVAILABLE else []

    async def retire(self) -> None:
        """UNLOADING until in-flight requests finish, then END; compiled models are released.

        No new request gets past ``infer``'s state check once this has run its first line, and every
        request that did get past it is admitted before its first await, so the wait below covers
        all of them, including one still waiting for a shape variant to compile.
        """
        self.state = VersionState.UNLOADING
        await self._admission.drained()
        self._variants.clear()
        self._source = None
        self.error = ""  # a retired version is not in error, whatever its last load said
        self.state = VersionState.END

    def refresh_variant_gauge(self) -> None:
        """Publish this version's resident variant count again.

        An object this one replaced (same name and version, new config) zeroes the shared gauge when
        it retires; the manager calls this afterwards.
        """
        self._variants.refresh_gauge()

    # -- serving -----------------------------------------------------------------------------
    def metadata(self) -> ModelMetadata:
        """Inputs and outputs of the variant most recently used (client-visible names)."""
        ins, outs = self._ports()
        return ModelMetadata(
            self.name,
            self.version,
            tuple(
                TensorSpec(self._mapping.inputs.get(p.name, p.name), p.precision, p.shape, self._rules[p.name].layout)
                for p in ins
            ),
            tuple(TensorSpec(self._mapping.outputs.get(p.name, p.name), p.precision, p.shape) for p in outs),
        )

    async def infer(self, inputs: dict[str, np.ndarray], requested: list[str] | None = None) -> dict[str, np.ndarray]:
        """Validate, pick (or compile) the variant, run, and name the outputs for the client."""
        # From here to admission there is no await: retire() cannot slip in between, and the manager
        # hands out a version and the caller enters this method in one step of the loop.
        if self.state != VersionState.AVAILABLE:
            code = StatusCode.VERSION_RETIRED if self.state >= VersionState.UNLOADING else StatusCode.VERSION_NOT_LOADED
            raise VinoserveError(code)
        with self._admission:
            real = check_request(inputs, self._rules, self._current_shapes, self._any_batch)
            try:
                outs = await self._run(real)
            except asyncio.CancelledError:
                # the client went away (deadline, cancel, disconnect); an inference already started
                # finishes on its own and only then frees its infer request
                log.info("Model %s version %s: request cancelled by the client", self.name, self.version)
                raise
        named = {self._mapping.outputs.get(n, n): a for n, a in outs.items()}
        if requested:
            missing = [r for r in requested if r not in named]
            if missing:
                raise VinoserveError(StatusCode.INVALID_ARGUMENT, f"Invalid output name: {missing[0]}")
            named = {r: named[r] for r in requested}
        return named

    async def _run(self, real: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if any(
            a.shape and a.shape[self._rules[n].batch_index] == 0
            for n, a in real.items()
            if self._rules[n].batch_index < a.ndim
        ):
            return self._empty_outputs()
        rows = batch_rows(self._rules, real) if self._batcher is not None else None
        if self._batcher is not None and rows:
            return await self._batcher.submit(real)
        if self._any_batch and rows is None:
            # a fixed batch accepts any size only because the batcher pads or splits: inputs must agree
            sizes = ", ".join(f"{n}: {a.shape[self._rules[n].batch_index] if a.ndim else '-'}" for n, a in real.items())
            raise VinoserveError(StatusCode.INVALID_BATCH, f"the inputs do not agree on the batch size ({sizes})")
        return await self._infer(real)

    async def _infer(self, real: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference on the variant for these shapes (a request, or a merged batch)."""

        def key() -> VariantKey:
            return tuple(sorted((n, self._rules[n].key_dims(a.shape)) for n, a in real.items()))

        def cause() -> str:
            return "request " + " ".join(f"{n}{a.shape}".replace(" ", "") for n, a in sorted(real.items()))

        async with self._variants.use(key, cause) as variant:
            outs, waited, took = await variant.pool.run(real, _nbytes(real))
        if self.series is not None:
            wait_time, inference_time = self.series.timing()
            wait_time.observe(waited)
            inference_time.observe(took)
        return outs

    def _ports(self) -> tuple[list[Port], list[Port]]:
        """Inputs and outputs of the variant most recently used, or of the model as read."""
        variant = self._variants.last_used
        if variant is not None:
            return variant.compiled.inputs, variant.compiled.outputs
        assert self._source is not None
        return self._source.inputs, self._source.outputs

    def _current_shapes(self) -> dict[str, Shape]:
        return {p.name: p.shape for p in self._ports()[0]}

    def _empty_outputs(self) -> dict[str, np.ndarray]:
        """Batch 0: an empty batch of every output, without running the model."""
        out = {}
        for p in self._ports()[1]:
            dims = [0] + [d.lo if d.is_static else 0 for d in p.shape[1:]]
            out[p.name] = np.zeros(dims[: len(p.shape)], dtype=p.precision.np_dtype)
        return out


def _nbytes(arrays: dict[str, np.ndarray]) -> int:
    """The bytes of a request's inputs, which scale how long its inference is predicted to take."""
    return sum(a.nbytes for a in arrays.values())
