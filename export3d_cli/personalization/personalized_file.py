"""The personalised-weights file: what tuning changed, for one photo and one base model.

``NAME.safetensors`` holds ``delta.<name>``: (tuned − base) in float16 for every base tensor tuning changed (the
changes are small, so half precision loses nothing visible, and the file is half the size of float32 copies),
and ``personal.<name>``: the person's tri-planes (``personal_triplanes``; the planes in float16, their anchor,
spread and reach in float32; the CLeBS basis is not stored, it comes from the base model). ``NAME.json`` beside
it says what it belongs to and how it was made:

    {"format": "export3d-personalized/1", "photo_sha256": ..., "base_weights_sha256": ..., "steps": ...,
     "losses": {"first": ..., "last": ...}, "seed": ..., "seconds": ..., "personal_set": {...}}

Both are written atomically. Loading checks the format and that the base weights are the ones it was made from:
applied to other weights the differences are meaningless, so that is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from export3d_cli.atomic import atomic_path, atomic_write_text
from export3d_cli.errors import InputError
from export3d_cli.models.export3d import Export3D
from export3d_cli.personalization.personal_triplanes import PersonalTriplanes
from export3d_cli.personalization.tuning import tuned_base_parameters

FORMAT = "export3d-personalized/1"
CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes: the photo's content, not its name, identifies it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(directory: str | Path) -> str:
    """The base model's identity: SHA-256 over its model.safetensors and its model config (the ``config`` object
    of config.json, canonically serialised), so that other keys of config.json — such as the personalisation
    policy — can change without orphaning every personalised file."""
    from export3d_cli.models.weights_io import CONFIG_FILE, WEIGHTS_FILE

    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        config = None
    digest = hashlib.sha256()
    digest.update(bytes.fromhex(file_sha256(directory / WEIGHTS_FILE)))
    digest.update(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_personalized(path: str | Path, tuned: Export3D, base: Export3D, metadata: dict) -> Path:
    """Write what distinguishes ``tuned`` from ``base`` and ``metadata`` (plus the format tag) side by side."""
    from safetensors.torch import save_file

    path = Path(path)
    if not isinstance(tuned.personal, PersonalTriplanes):
        raise ValueError("the tuned model has no personal tri-planes")
    base_state = base.state_dict()
    tensors = {}
    for name, parameter in tuned_base_parameters(tuned).items():
        delta = parameter.detach() - base_state[name]
        if torch.any(delta != 0):  # frozen parts (G, unless it was tuned) are not stored
            tensors[f"delta.{name}"] = delta.to(torch.float16).contiguous()
    personal = tuned.personal
    tensors["personal.identity"] = personal.identity.detach().to(torch.float16).contiguous()
    tensors["personal.directions"] = personal.directions.detach().to(torch.float16).contiguous()
    stored = ["anchor", "spread", "reach"] + (["basis"] if personal.reads == "blendshapes" else [])  # else CLeBS's
    for name in stored:
        tensors[f"personal.{name}"] = getattr(personal, name).detach().float().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    atomic_write_text(metadata_path(path), json.dumps({"format": FORMAT, **metadata}, indent=2) + "\n")
    return path


def read_metadata(path: str | Path) -> dict:
    """The JSON beside a personalised file; an InputError naming the file if it is missing or not ours."""
    path = Path(path)
    sidecar = metadata_path(path)
    try:
        payload = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: its description {sidecar.name} is missing; run export3d personalize again") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{sidecar}: not a personalisation description ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{sidecar}: not a personalisation description (format {FORMAT!r} expected)")
    return payload


def apply_personalized(
    path: str | Path, model: Export3D, base_weights_sha256: str, metadata: dict | None = None
) -> dict:
    """Personalise ``model`` (the base the file was made from) in place; returns the file's metadata.

    Everything is checked before anything is changed: a bad file leaves the model as it was.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from export3d_cli.personalization.personal_triplanes import attach_stored

    path = Path(path)
    metadata = metadata if metadata is not None else read_metadata(path)
    made_for = metadata.get("base_weights_sha256")
    if made_for != base_weights_sha256:
        raise InputError(
            f"{path}: made for other base weights (sha256 {str(made_for)[:12]}…, these are "
            f"{base_weights_sha256[:12]}…); personalise the photo again with these weights"
        )
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    parameters = tuned_base_parameters(model)
    deltas = {name.removeprefix("delta."): t for name, t in tensors.items() if name.startswith("delta.")}
    personal = {name.removeprefix("personal."): t for name, t in tensors.items() if name.startswith("personal.")}
    unknown = sorted(set(deltas) - set(parameters)) + sorted(
        set(tensors) - {f"delta.{n}" for n in deltas} - {f"personal.{n}" for n in personal}
    )
    if unknown:
        raise InputError(f"{path}: tensors this model does not have: {', '.join(unknown[:3])}")
    for name, delta in deltas.items():
        if delta.shape != parameters[name].shape or not torch.isfinite(delta).all():
            raise InputError(f"{path}: {name} does not fit the model (shape {tuple(delta.shape)} or non-finite values)")
    triplanes = attach_stored(model, personal, str(path))  # checks shapes; attaches only if all is well
    with torch.no_grad():
        for name, delta in deltas.items():
            parameters[name].add_(delta.to(parameters[name].dtype))
    model.personal = triplanes
    return metadata


def personalized_file_for(reference: Path, photo: Path) -> Path:
    """``--personalized``: a file, or a folder holding ``<photo stem>.safetensors`` (as ``personalize -o`` wrote)."""
    path = reference / f"{photo.stem}.safetensors" if reference.is_dir() else reference
    if not path.is_file():
        raise InputError(f"{path}: no such personalised file (make it with export3d personalize {photo})")
    return path


def load_personalized_model(base: Export3D, base_weights_sha256: str, path: Path, photo: Path) -> Export3D:
    """A personalised copy of ``base`` for ``photo``; refused when the file was made for another photo."""
    import copy

    metadata = read_metadata(path)
    if metadata.get("photo_sha256") != file_sha256(photo):
        raise InputError(
            f"{path}: made for another photo ({metadata.get('photo_name', '?')}), not {photo.name}; "
            f"run export3d personalize {photo}"
        )
    model = copy.deepcopy(base)
    apply_personalized(path, model, base_weights_sha256, metadata)
    return model
