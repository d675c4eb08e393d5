"""Configs of registered methods: defaults with the method's preset, and config files.

:mod:`engine.config` declares the sections and validates fields without knowing which
methods exist; building a complete config needs the method's own hyperparameter class and
preset, so that lives here, one layer above the method registry (docs/ARCHITECTURE.md).
Importing this module imports every method (and torch).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from engine.config import DEFAULT_METHOD, SECTIONS, Config, MethodConfig
from engine.errors import ConfigError
from engine.registry import get_method_info


def method_config_class(method_name: str) -> type[MethodConfig]:
    """The hyperparameter dataclass of a registered method."""
    return get_method_info(method_name).config_cls


def default_config(method_name: str = DEFAULT_METHOD, accelerator: bool = False) -> Config:
    """The defaults for a method, with its preset applied (and its GPU preset on top when
    ``accelerator`` is true)."""
    info = get_method_info(method_name)
    cfg = Config(method_name=method_name, method=info.config_cls())
    presets = [info.preset, info.gpu_preset] if accelerator else [info.preset]
    for preset in presets:
        for key, value in preset.items():
            cfg.set(key, value)
    return cfg


def from_dict(d: dict[str, Any]) -> Config:
    """Build a config from nested dicts (as read from TOML), rejecting unknown keys."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    unknown = set(d) - set(SECTIONS)
    if unknown:
        raise ConfigError(
            f"unknown section(s) {', '.join(sorted(unknown))} (allowed: {', '.join(SECTIONS)})"
        )
    method_name = str(d.get("method", {}).pop("name", DEFAULT_METHOD))
    cfg = default_config(method_name)
    for section, values in d.items():
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of settings")
        for name, value in values.items():
            cfg.set(f"{section}.{name}", value)
    cfg.validate()
    return cfg


def load_toml(path: str | Path) -> Config:
    """Read a config file; errors name the file and the problem."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
