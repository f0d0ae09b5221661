"""Refinement thresholds calibrated to a CAM network's seed curve.

IRN's thresholds (confident foreground 0.30, confident background 0.05, mask
background 0.25) suit CAMs whose best seed threshold is IRN's ``cam_eval_thres``,
0.15. CAMs of another network are calibrated differently: with a best seed
threshold of 0.45, 0.30 marks much of the background as confident foreground.
IRN's forks retune the thresholds by hand for their CAMs (AMN's scripts use 0.45 /
0.15). ``calibration: seed_curve`` moves them with the variant's best seed
threshold t* on train (eval_cams), as IRN-style papers choose theirs on train:

- confident foreground and mask background keep their distance to the seed
  threshold: ``value + (t* - reference)``;
- confident background keeps its ratio to it: ``value * t* / reference``,

where ``reference`` is ``pseudo_labels.reference_threshold`` (0.15, IRN's). With
t* equal to the reference the configured values are used as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..errors import DataError

# Calibrated thresholds stay inside (0, 1), where a normalised CAM can cross them.
LOWEST, HIGHEST = 0.01, 0.99


def _clip(value: float) -> float:
    return round(min(max(value, LOWEST), HIGHEST), 4)


class WithThresholds:
    """A pseudo_labels config with some thresholds replaced; every other value is the config's own."""

    def __init__(self, cfg: Any, thresholds: dict[str, float]) -> None:
        self._cfg, self._thresholds = cfg, thresholds

    def __getattr__(self, name: str) -> Any:
        if name in self._thresholds:
            return self._thresholds[name]
        return getattr(self._cfg, name)


# The pseudo_labels threshold keys, and how each moves with the seed threshold.
SHIFTED = ("conf_fg_threshold", "bg_threshold")
SCALED = ("conf_bg_threshold",)


def calibrate(cfg: Any, seed_metrics: str | Path | None, keys: tuple[str, ...]) -> tuple[Any, dict[str, float]]:
    """``cfg`` (a pseudo_labels config) with the thresholds ``keys`` as its ``calibration`` asks, and their values.

    ``seed_metrics`` is the variant's eval_cams JSON on train; needed for ``seed_curve`` only. Only the
    thresholds in ``keys`` are read, so a step's declared values (pixsup.config.STEP_KEYS) are enough.

    Raises:
        ConfigError: ``seed_curve`` without ``seed_metrics``, or thresholds that cannot be calibrated.
        DataError: the metrics file has no best threshold.
    """
    configured = {key: getattr(cfg, key) for key in keys}
    if cfg.calibration == "none":
        return cfg, configured
    if seed_metrics is None:
        raise ConfigError("pseudo_labels.calibration is seed_curve: give the variant's seed metrics (--seed-metrics)")
    try:
        best = float(json.loads(Path(seed_metrics).read_text())["best_threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{seed_metrics}: no best_threshold of an eval_cams run ({exc})") from None
    reference = cfg.reference_threshold
    thresholds = {
        key: _clip(value + best - reference) if key in SHIFTED else _clip(value * best / reference)
        for key, value in configured.items()
    }
    fg, bg = thresholds.get("conf_fg_threshold"), thresholds.get("conf_bg_threshold")
    if fg is not None and bg is not None and bg >= fg:
        raise ConfigError(
            f"{seed_metrics}: calibrated to seed threshold {best}, confident background {bg} is not below "
            f"confident foreground {fg}"
        )
    return WithThresholds(cfg, thresholds), thresholds
