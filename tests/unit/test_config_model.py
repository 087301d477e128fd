"""One builder of a model's settings (``config/model.py``): the flags and ``config.json`` agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from vinoserve.cli import build_settings
from vinoserve.config import ModelConfig, VersionPolicy, build_model_config, parse_config
from vinoserve.errors import StartupError


def from_flags(flags: list[str]) -> ModelConfig:
    (model,) = build_settings(["--port", "9000", "--model_name", "m", *flags]).models
    return model


def from_file(config: dict[str, object], base: Path) -> ModelConfig:
    (model,), _metrics = parse_config({"model_config_list": [{"config": {"name": "m", **config}}]}, base, 4)
    return model


@pytest.mark.parametrize(
    "flags, config",
    [
        ([], {}),
        (
            [
                "--batch_size",
                "auto",
                "--nireq",
                "3",
                "--target_device",
                "CPU",
                "--plugin_config",
                '{"INFERENCE_PRECISION_HINT": "f32"}',
                "--model_version_policy",
                '{"all": {}}',
            ],
            {
                "batch_size": "auto",
                "nireq": 3,
                "target_device": "CPU",
                "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"},
                "model_version_policy": {"all": {}},
            },
        ),
        (["--batch_size", "8", "--layout", "NHWC:NCHW"], {"batch_size": 8, "layout": "NHWC:NCHW"}),
        (
            [
                "--shape",
                '{"x": "(1,3,-1)", "y": "auto"}',
                "--layout",
                '{"x": "NCH"}',
                "--model_version_policy",
                '{"specific": {"versions": [1, 3]}}',
            ],
            {
                "shape": {"x": [1, 3, -1], "y": "auto"},
                "layout": {"x": "NCH"},
                "model_version_policy": {"specific": {"versions": [1, 3]}},
            },
        ),
        (["--shape", "(1,10)", "--shape_variants", "2"], {"shape": "(1,10)", "shape_variants": 2}),
        (
            ["--batch_size", "auto", "--warmup_batch_sizes", "8, 1,8"],
            {"batch_size": "auto", "warmup_batch_sizes": [8, 1]},
        ),
    ],
)
def test_the_same_model_from_flags_and_from_the_file(
    flags: list[str], config: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a relative path is taken from the working directory for the flags, from the file's for the file
    monkeypatch.chdir(tmp_path)
    from_flags_model = from_flags(["--model_path", "models/m", *flags])
    from_file_model = from_file({"base_path": "models/m", **config}, tmp_path)
    assert from_flags_model == from_file_model
    assert from_flags_model.base_path == (tmp_path / "models" / "m").resolve()


def test_defaults(tmp_path: Path) -> None:
    model = build_model_config("m", str(tmp_path), relative_to=Path("/elsewhere"), default_shape_variants=6)
    assert model == ModelConfig(
        name="m",
        base_path=tmp_path.resolve(),
        batch=None,
        shape=None,
        layout=None,
        version_policy=VersionPolicy("latest", 1),
        nireq=0,
        target_device="CPU",
        plugin_config={},
        shape_variants=6,
        warmup_batch_sizes=(),
    )


def test_empty_flags_leave_the_defaults(tmp_path: Path) -> None:
    plain = from_flags(["--model_path", str(tmp_path)])
    emptied = from_flags(
        ["--model_path", str(tmp_path), "--model_version_policy", "", "--plugin_config", "", "--target_device", ""]
    )
    assert emptied == plain


@pytest.mark.parametrize(
    "flags, config, flag_text, file_text",
    [
        (["--nireq", "-1"], {"nireq": -1}, "--nireq must not be negative", "'nireq' must not be negative"),
        ([], {"shape_variants": 0}, None, "'shape_variants' must be at least 1"),
        (
            ["--model_path", "a/../b"],
            {"base_path": "a/../b"},
            "--model_path must not contain '..'",
            "'base_path' must not contain '..'",
        ),
        (["--shape", "(1,x)"], {"shape": "(1,x)"}, "Invalid shape dimension", "Invalid shape dimension"),
        (
            ["--warmup_batch_sizes", "1,0"],
            {"warmup_batch_sizes": [1, 0]},
            "--warmup_batch_sizes must hold positive integers only",
            "'warmup_batch_sizes' must hold positive integers",
        ),
        (
            ["--warmup_batch_sizes", "1,-8"],
            {"warmup_batch_sizes": [1, -8]},
            "--warmup_batch_sizes must hold positive integers only",
            "'warmup_batch_sizes' must hold positive integers",
        ),
        (
            ["--warmup_batch_sizes", "1,,8"],
            {"warmup_batch_sizes": [1, "8"]},
            "--warmup_batch_sizes must hold positive integers only",
            "'warmup_batch_sizes' must hold positive integers",
        ),
        (
            ["--warmup_batch_sizes", "1.5"],
            {"warmup_batch_sizes": [True]},
            "--warmup_batch_sizes must hold positive integers only",
            "'warmup_batch_sizes' must hold positive integers",
        ),
        (
            ["--warmup_batch_sizes", "auto"],
            {"warmup_batch_sizes": "1,8"},
            "--warmup_batch_sizes must hold positive integers only",
            "'warmup_batch_sizes' has the wrong type",
        ),
    ],
)
def test_the_same_rules_name_the_key_as_each_source_spells_it(
    flags: list[str], config: dict[str, object], flag_text: str | None, file_text: str, tmp_path: Path
) -> None:
    if flag_text is not None:
        with pytest.raises(StartupError, match=f"^{flag_text}"):
            from_flags(["--model_path", "m", *flags])
    with pytest.raises(StartupError, match=f"^Config of model 'm': {file_text}"):
        from_file({"base_path": "m", **config}, tmp_path)


def test_warmup_batch_sizes_keep_their_order_without_repeats(tmp_path: Path) -> None:
    model = from_flags(["--model_path", str(tmp_path), "--warmup_batch_sizes", "8,1,8,2"])
    assert model.warmup_batch_sizes == (8, 1, 2)
    assert from_flags(["--model_path", str(tmp_path)]).warmup_batch_sizes == ()
    assert from_file({"base_path": "m", "warmup_batch_sizes": []}, tmp_path).warmup_batch_sizes == ()


def test_warmup_flag_is_exclusive_with_the_config_file(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="exclusive with the config file.*--warmup_batch_sizes"):
        build_settings(["--port", "9000", "--config_path", str(tmp_path / "c.json"), "--warmup_batch_sizes", "1"])
