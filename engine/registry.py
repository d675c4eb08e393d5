"""The method registry: each method file registers itself with ``@register_method``.

Like torchvision's ``register_model``, registering a name twice raises, so two files can
never silently shadow each other. Adding a method touches one new file plus its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError

FAMILIES = ("contrastive", "non-contrastive", "pretext", "reconstruction", "generative")
#: kinds of data a method trains on (a dataset source's ``modality``; images by default;
#: 'paired': images with captions)
MODALITIES = ("image", "text", "paired")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    cls: type
    config_cls: type
    family: str
    description: str
    paper: str
    preset: dict[str, Any] = field(default_factory=dict)
    gpu_preset: dict[str, Any] = field(default_factory=dict)
    #: likely causes and fixes when the method collapses with every switch at its default
    collapse_advice: str = ""
    #: the paper computed BatchNorm statistics over the global batch (SyncBatchNorm or
    #: cross-replica BN): what ``run.sync_batchnorm = "auto"`` follows on several processes
    sync_batchnorm: bool = False
    #: the kind of data it trains on (see :data:`MODALITIES`)
    modality: str = "image"


_REGISTRY: dict[str, MethodInfo] = {}
_loaded = False


def register_method(
    name: str,
    *,
    config: type,
    family: str,
    description: str,
    paper: str,
    preset: dict[str, Any] | None = None,
    gpu_preset: dict[str, Any] | None = None,
    collapse_advice: str = "",
    sync_batchnorm: bool = False,
    modality: str = "image",
) -> Callable[[type], type]:
    """Class decorator adding a method to the registry.

    ``preset`` holds overrides of other sections (``{"optim.lr": 0.3}``) that the method
    needs to work well by default (on CPU: small CNN, 32 px); ``gpu_preset`` is applied on
    top of it when training on an accelerator (ResNet-18). Both are applied over the
    section defaults. ``collapse_advice`` is what the collapse verdict tells the user to
    try when the method collapses with no collapse switch turned on;
    ``sync_batchnorm`` whether its paper synchronised BatchNorm across devices;
    ``modality`` the data it trains on.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = MethodInfo(
            name=name,
            cls=cls,
            config_cls=config,
            family=family,
            description=description,
            paper=paper,
            preset=dict(preset or {}),
            gpu_preset=dict(gpu_preset or {}),
            collapse_advice=collapse_advice,
            sync_batchnorm=sync_batchnorm,
            modality=modality,
        )
        return cls

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    import engine.methods as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"engine.methods.{mod.name}")
    _loaded = True


def available_methods() -> list[MethodInfo]:
    """Every registered method, in family then name order."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda m: (FAMILIES.index(m.family), m.name))


def get_method_info(name: str) -> MethodInfo:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        names = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown method {name!r} (available: {names})") from None
