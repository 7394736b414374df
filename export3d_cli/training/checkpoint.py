"""Resumable training checkpoints: safetensors for tensors, JSON for everything else — never pickle.

A checkpoint directory holds ``modules.safetensors`` (every module's state,
prefixed by its name: model, ema, discriminator, ...), ``optimizers.safetensors``
(each optimiser's per-parameter tensors), ``rng.safetensors`` (torch's CPU and CUDA
generator states) and ``state.json`` (step, config, optimiser hyper-parameters,
numpy/python RNG states, history). It is written to a temporary sibling and
swapped in with renames, so a crash mid-write keeps the previous checkpoint.
Restoring all of it makes the next step's loss identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from export3d_cli.errors import InputError

CHECKPOINT_DIR = "checkpoint"


def _optimizer_tensors(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(
    run_dir: Path,
    *,
    step: int,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    numpy_rng: np.random.Generator,
    extra: dict[str, Any],
) -> Path:
    """Write ``run_dir/checkpoint`` atomically (the old one stays until the new one is complete)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=run_dir))
    try:
        module_tensors = {
            f"{name}.{key}": value.detach().cpu().contiguous()
            for name, module in modules.items()
            for key, value in module.state_dict().items()
        }
        save_file(module_tensors, str(work / "modules.safetensors"))
        optimizer_tensors: dict[str, torch.Tensor] = {}
        optimizer_meta: dict[str, Any] = {}
        for name, optimizer in optimizers.items():
            tensors, meta = _optimizer_tensors(name, optimizer)
            optimizer_tensors.update(tensors)
            optimizer_meta[name] = meta
        save_file(optimizer_tensors, str(work / "optimizers.safetensors"))
        rng_tensors = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng_tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng_tensors, str(work / "rng.safetensors"))
        python_state = random.getstate()
        state = {
            "step": step,
            "optimizers": optimizer_meta,
            "numpy_rng": numpy_rng.bit_generator.state,
            "python_rng": [python_state[0], list(python_state[1]), python_state[2]],
            **extra,
        }
        (work / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.chmod(work, 0o755)
        target = run_dir / CHECKPOINT_DIR
        old = run_dir / ".checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(work, target)
        shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load_checkpoint(
    run_dir: Path,
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    numpy_rng: np.random.Generator,
) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` wrote; returns the JSON state (step, extra)."""
    directory = run_dir / CHECKPOINT_DIR
    try:
        state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        module_tensors = load_file(str(directory / "modules.safetensors"))
        optimizer_tensors = load_file(str(directory / "optimizers.safetensors"))
        rng_tensors = load_file(str(directory / "rng.safetensors"))
    except (OSError, ValueError) as error:
        raise InputError(f"{directory}: cannot read the checkpoint ({error})") from error
    for name, module in modules.items():
        prefix = f"{name}."
        own = {key[len(prefix) :]: value for key, value in module_tensors.items() if key.startswith(prefix)}
        try:
            module.load_state_dict(own, strict=True)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise InputError(f"{directory}: checkpoint does not match the model ({name}: {first})") from error
    for name, optimizer in optimizers.items():
        meta = state["optimizers"][name]
        restored: dict[int, dict[str, Any]] = {}
        for key, value in optimizer_tensors.items():
            owner, index, field = key.split(".", 2)
            if owner == name:
                restored.setdefault(int(index), {})[field] = value
        for index, scalars in meta["scalars"].items():
            restored.setdefault(int(index), {}).update(scalars)
        optimizer.load_state_dict({"state": restored, "param_groups": meta["param_groups"]})
    torch.set_rng_state(rng_tensors["torch"])
    if torch.cuda.is_available():
        cuda_states = [rng_tensors[k] for k in sorted(k for k in rng_tensors if k.startswith("cuda"))]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    numpy_rng.bit_generator.state = state["numpy_rng"]
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return state


def read_checkpoint_state(run_dir: Path) -> dict[str, Any]:
    """Only ``state.json`` (step, config): enough to check a run's settings before loading any tensor."""
    path = run_dir / CHECKPOINT_DIR / "state.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read the checkpoint ({error})") from error


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT_DIR / "state.json").is_file()
