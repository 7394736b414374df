"""Personalise by default when the base weights ask for it, once per photo and weights.

A model's ``config.json`` may carry, beside its ``config``::

    "personalization": {"needed": true, "steps": 300, "why": "trained on synthetic heads only"}

``animate``, ``novel-view`` and ``sweep-basis`` then personalise each photo before rendering it (unless
``--no-personalize`` or ``--personalized FILE``), and keep the result in the cache:

    $EXPORT3D_CACHE (default $XDG_CACHE_HOME/export3d, else ~/.cache/export3d)
        /personalized/<first 16 hex of the weights' sha256>/<photo sha256>-face<k>-steps<n>-v<version>.safetensors
        (+ .json)

keyed by the photo's content and the weights, never by a file name: a renamed copy of a photo reuses its file,
an edited photo or other weights get their own. So do another face of the same photo (``--face-index``), another
number of tuning steps, and another version of the personalisation itself (``PERSONALIZATION_VERSION``): a result
made by an older export3d is not passed off as today's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from export3d_cli.models.export3d import Export3D
from export3d_cli.personalization.personalized_file import file_sha256
from export3d_cli.personalization.tuning import StepCallback
from export3d_cli.personalization.tuning_config import PERSONALIZATION_VERSION, TuningConfig

CACHE_ENV = "EXPORT3D_CACHE"


@dataclass(frozen=True)
class PersonalizationPolicy:
    needed: bool
    steps: int = TuningConfig.steps


def personalization_policy(weights_directory: Path) -> PersonalizationPolicy:
    """What the weights' config.json says about personalisation (not needed when it says nothing)."""
    from export3d_cli.errors import WeightsError
    from export3d_cli.models.weights_io import CONFIG_FILE

    path = Path(weights_directory) / CONFIG_FILE
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get("personalization") or {}
    except (OSError, ValueError, AttributeError):
        return PersonalizationPolicy(needed=False)  # read_config reports a broken config.json itself
    if not isinstance(entry, dict):
        raise WeightsError(f"{path}: 'personalization' must be an object")
    steps = entry.get("steps", TuningConfig.steps)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise WeightsError(f"{path}: personalization.steps must be a whole number >= 1, got {steps!r}")
    return PersonalizationPolicy(needed=entry.get("needed") is True, steps=steps)


def cache_folder() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "export3d"


def cached_file(base_sha256: str, photo_sha256: str, *, face_index: int, steps: int) -> Path:
    name = f"{photo_sha256}-face{face_index}-steps{steps}-v{PERSONALIZATION_VERSION}.safetensors"
    return cache_folder() / "personalized" / base_sha256[:16] / name


def cached_personalization(
    base: Export3D,
    weights_directory: Path,
    base_sha256: str,
    photo: Path,
    *,
    steps: int,
    face_index: int = 0,
    on_start: StepCallback | None = None,
    on_step: StepCallback | None = None,
) -> Path:
    """The cached personalised file for ``photo``, made now (``on_start``, then ``on_step`` per step) if missing.
    ``base_sha256`` is ``weights_sha256(weights_directory)``, computed once by the caller."""
    from export3d_cli.personalization.personalize import Personalizer

    target = cached_file(base_sha256, file_sha256(photo), face_index=face_index, steps=steps)
    if target.is_file() and target.with_suffix(".json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    config = TuningConfig(steps=steps)
    personalizer = Personalizer(base, weights_directory, base_sha256)
    prepared = personalizer.prepare(photo, face_index=face_index)
    personal_set = prepared.personal_set(config)
    if on_start is not None:
        on_start(0, steps, 0.0)
    personalizer.personalize(prepared, personal_set, config, target, on_step=on_step)
    return target
