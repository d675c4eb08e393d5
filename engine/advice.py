"""The collapse verdict in plain words, with the likely cause and fix for the run.

The thresholds and verdict texts are torch-free in :mod:`engine.verdict`; naming a cause
needs the method's defaults and its own ``collapse_advice`` (declared with the method in
its file), so this sits above the method registry.
"""

from __future__ import annotations

from engine.config import Config
from engine.presets import default_config
from engine.registry import get_method_info
from engine.verdict import verdict_text


def explain_collapse(verdict: str, cfg: Config) -> str:
    """The verdict in plain words, naming the run's collapse switches that are turned on
    (settings marked ``collapse=`` that differ from the method's defaults) as the likely
    cause, with the fix; with no switch on, the method's own advice."""
    info = get_method_info(cfg.method_name)
    text = verdict_text(verdict, info.modality)
    if verdict == "healthy":
        return text
    defaults = default_config(cfg.method_name)
    causes = []
    for spec in cfg.specs():
        if spec.collapse and cfg.get(spec.key) != defaults.get(spec.key):
            causes.append(f"{spec.key} = {cfg.get(spec.key)} (default "
                          f"{defaults.get(spec.key)}): {spec.collapse}")
    if causes:
        text += " Likely cause: " + " ".join(causes) + " Fix: restore the default."
    else:
        advice = info.collapse_advice
        general = ("a lower learning rate, more warm-up or a larger batch"
                   if info.modality == "text" else
                   "a lower learning rate, more warm-up, stronger augmentation or a larger "
                   "batch")
        text += (" No collapse switch is on. " + (advice + " " if advice else "") +
                 f"In general: {general}.")
    return text
