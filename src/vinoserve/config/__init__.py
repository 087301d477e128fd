"""Settings of the server and its models, and where they come from: flags and ``config.json``.

``settings`` holds the frozen values, ``flags`` the OVMS value syntaxes, ``model`` the one builder of a
model's settings (for the flags and the file alike), ``file`` the config file.
"""

from __future__ import annotations

from .file import load_config_file, parse_config, parse_config_bytes, read_config_bytes
from .flags import (
    parse_batch,
    parse_dim,
    parse_layout,
    parse_layout_obj,
    parse_plugin_config,
    parse_policy,
    parse_shape,
    parse_shape_obj,
)
from .model import PER_MODEL_KEYS, build_model_config
from .settings import BatchSetting, LayoutSetting, ModelConfig, ServerSettings, ShapeSetting, VersionPolicy

__all__ = [
    "PER_MODEL_KEYS",
    "BatchSetting",
    "LayoutSetting",
    "ModelConfig",
    "ServerSettings",
    "ShapeSetting",
    "VersionPolicy",
    "build_model_config",
    "load_config_file",
    "parse_batch",
    "parse_config",
    "parse_config_bytes",
    "parse_dim",
    "parse_layout",
    "parse_layout_obj",
    "parse_plugin_config",
    "parse_policy",
    "parse_shape",
    "parse_shape_obj",
    "read_config_bytes",
]
