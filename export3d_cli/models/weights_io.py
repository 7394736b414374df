"""Saving and loading a model directory: ``model.safetensors`` + ``config.json``.

The layout follows huggingface_hub's ``PyTorchModelHubMixin``: ``config.json``
holds the constructor arguments (``{"config": {...}}``) and the weights are a
safetensors file, loaded strictly (every tensor present, no extras, same
shapes). Nothing is ever unpickled. A reference is a local directory or a
hub repo id (``owner/name``); every failure is a ``WeightsError`` with one
line naming the file and what to do.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from export3d_cli import __version__
from export3d_cli.atomic import atomic_path, atomic_write_text
from export3d_cli.config import ModelConfig
from export3d_cli.errors import UsageError, WeightsError

if TYPE_CHECKING:
    from export3d_cli.models.export3d import Export3D

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODEL_TYPE = "export3d"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def save_model(model: Export3D, directory: str | Path) -> Path:
    """Write the weights and config atomically; returns the directory."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "export3d_version": __version__})
    payload = {"model_type": MODEL_TYPE, "export3d_version": __version__, "config": model.config.to_dict()}
    from export3d_cli.models.expression_range import with_expression_range

    payload = with_expression_range(payload, model.expression_range)
    atomic_write_text(directory / CONFIG_FILE, json.dumps(payload, indent=2) + "\n")
    return directory


def resolve_weights(reference: str | Path) -> Path:
    """A local model directory for ``reference`` (a directory, or a hub repo id to download)."""
    path = Path(reference).expanduser()
    if path.exists():
        if not path.is_dir():
            raise WeightsError(f"{path}: weights must be a directory holding {WEIGHTS_FILE} and {CONFIG_FILE}")
        return path
    text = str(reference)
    if _HUB_ID.match(text) and not text.startswith("."):
        return _download_from_hub(text)
    raise WeightsError(f"{path}: weights directory not found (pass --weights DIR or a hub repo id owner/name)")


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [WEIGHTS_FILE, CONFIG_FILE, "*.md"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"hub repo {repo_id!r}: not in the local cache and could not be downloaded ({reason[:160]}); "
            f"on a machine with network run `hf download {repo_id} --local-dir DIR`, then pass --weights DIR"
        ) from exc


def read_config(directory: Path) -> ModelConfig:
    return _model_config(_config_payload(directory), directory)


def _model_config(payload: dict, directory: Path) -> ModelConfig:
    """The validated ``config`` object of a parsed config.json (``_config_payload``)."""
    try:
        return ModelConfig.from_dict(payload["config"])
    except UsageError as exc:
        raise WeightsError(f"{directory / CONFIG_FILE}: {exc}") from exc


def _config_payload(directory: Path) -> dict:
    """config.json parsed, with a ``config`` object (not yet validated); WeightsError otherwise."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"{path}: missing; a model directory needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc}); re-download or re-save the model") from exc
    except RecursionError:
        raise WeightsError(f"{path}: JSON nested too deeply to be a model config") from None
    if not isinstance(payload, dict) or "config" not in payload:
        raise WeightsError(f"{path}: no 'config' object; this is not an export3d model config")
    return payload


def _weights_path(directory: Path) -> Path:
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"{path}: missing; a model directory needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    return path


def _corrupt(path: Path, exc: Exception) -> WeightsError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return WeightsError(f"{path}: corrupt or truncated safetensors file ({reason[:160]}); re-download it")


def read_weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    path = _weights_path(directory)
    try:
        return load_file(str(path))
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def read_weight_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors header alone (no tensor is read)."""
    from safetensors import safe_open

    path = _weights_path(directory)
    try:
        with safe_open(str(path), framework="pt") as file:
            return {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
    except Exception as exc:
        raise _corrupt(path, exc) from exc


# A config is untrusted input. The model it describes is built under a ceiling on the values its tensor constructors
# may request, refused before the allocation that passes it: what the weights file holds (a model cannot be larger
# than its weights; the constructors of every preset request exactly that, plus a few values of non-persistent
# buffers) plus this slack, and never more than MAX_MODEL_VALUES (paper-256 has ~91 M).
MAX_MODEL_VALUES = 1_000_000_000
_BUFFER_SLACK_VALUES = 1_000_000


def build_model(config: ModelConfig, max_values: int = MAX_MODEL_VALUES, what: str = CONFIG_FILE) -> Export3D:
    """``Export3D(config)``, refused with a ``WeightsError`` naming ``what`` if it would pass ``max_values``."""
    from export3d_cli.models.allocation_budget import allocation_budget
    from export3d_cli.models.export3d import Export3D

    with allocation_budget(max_values, what):
        return Export3D(config)


def load_model(reference: str | Path) -> Export3D:
    """Load an Export3D model strictly, in eval mode; size and shapes are checked before the weights are read."""
    directory = resolve_weights(reference)
    payload = _config_payload(directory)  # parsed once: the config, and the expression range beside it
    config = _model_config(payload, directory)
    stored = read_weight_shapes(directory)
    stored_values = sum(math.prod(shape) for shape in stored.values())
    if stored_values > MAX_MODEL_VALUES:
        raise WeightsError(
            f"{directory / WEIGHTS_FILE}: holds {stored_values / 1e6:,.0f} M values "
            f"(limit {MAX_MODEL_VALUES / 1e6:,.0f} M); it is not an export3d model"
        )
    budget = min(MAX_MODEL_VALUES, stored_values + _BUFFER_SLACK_VALUES)
    model = build_model(config, budget, str(directory / CONFIG_FILE))
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(stored) if expected[k] != stored[k])
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise WeightsError(
            f"{directory / WEIGHTS_FILE}: does not match {CONFIG_FILE} ({'; '.join(problems)}); "
            "the two files must come from the same saved model"
        )
    model.load_state_dict(read_weights(directory), strict=True)
    if config.expression.kind == "clebs":
        from export3d_cli.models.expression_range import read_expression_range

        model.expression_range = read_expression_range(
            payload, config.expression.basis_size, str(directory / CONFIG_FILE)
        )
    return model.eval()


WEIGHTS_ENV = "EXPORT3D_WEIGHTS"
BUNDLED_WEIGHTS_NAME = "export3d-demo"


def weights_search_path() -> list[tuple[str, str]]:
    """Where the default weights are looked up, in order: (origin, directory or hub id)."""
    import os

    entries: list[tuple[str, str]] = []
    if os.environ.get(WEIGHTS_ENV):
        entries.append((f"${WEIGHTS_ENV}", os.environ[WEIGHTS_ENV]))
    # The repository's weights/ folder, next to the package in a source checkout or editable install.
    entries.append(("bundled", str(Path(__file__).resolve().parents[2] / "weights" / BUNDLED_WEIGHTS_NAME)))
    return entries


def describe_location(location: str) -> str:
    """'found', 'hub id' or 'not found' for a weights location (no network access)."""
    if (Path(location).expanduser() / WEIGHTS_FILE).is_file():
        return "found"
    if not Path(location).expanduser().exists() and _HUB_ID.match(location) and not location.startswith("."):
        return "hub id"
    return "not found"


def load_default_model() -> Export3D:
    """``load_model(default_weights())``; a problem with ``$EXPORT3D_WEIGHTS`` names the variable."""
    import os

    location = default_weights()
    try:
        return load_model(location)
    except WeightsError as error:
        if os.environ.get(WEIGHTS_ENV) == location:
            raise WeightsError(f"${WEIGHTS_ENV}={location}: {error.message}") from error
        raise


def default_weights() -> str:
    """The user's ``$EXPORT3D_WEIGHTS`` if set, else the bundled weights; a WeightsError when neither exists."""
    entries = weights_search_path()
    origin, location = entries[0]
    if origin != "bundled" or describe_location(location) == "found":
        return location
    raise WeightsError(
        f"no default weights: {location} is not bundled in this installation; pass --weights DIR or set {WEIGHTS_ENV}"
    )
