"""``export3d info``: versions, compute device, presets with parameter counts, weights lookup."""

from __future__ import annotations

import json
import platform
from importlib import metadata

import typer

from export3d_cli import __version__
from export3d_cli.cli.options import JsonOption

_PACKAGES = ("torch", "numpy", "typer", "rich", "safetensors", "huggingface-hub", "mediapipe", "imageio-ffmpeg")
_CV2_PROVIDERS = ("opencv-python", "opencv-contrib-python", "opencv-python-headless", "opencv-contrib-python-headless")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cv2_providers() -> list[str]:
    """Installed distributions that write the ``cv2`` package (more than one is fragile)."""
    return [f"{d} {_version(d)}" for d in _CV2_PROVIDERS if _version(d)]


def gather_info() -> dict:
    import torch

    from export3d_cli.config import PRESETS
    from export3d_cli.models.export3d import Export3D, parameter_count
    from export3d_cli.models.weights_io import describe_location, weights_search_path

    if torch.cuda.is_available():
        device = {"kind": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    else:
        device = {"kind": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    presets = {}
    for name, config in PRESETS.items():
        with torch.device("meta"):  # counts parameters without allocating them
            model = Export3D(config)
        presets[name] = {
            "resolution": config.resolution,
            "parameters": parameter_count(model),
            "expression_encoder": parameter_count(model.expression_encoder),
            "generator": parameter_count(model.generator),
            "renderer": parameter_count(model.renderer),
            "superres": parameter_count(model.superres),
        }
    weights = [
        {"origin": origin, "location": location, "status": describe_location(location)}
        for origin, location in weights_search_path()
    ]
    return {
        "export3d": __version__,
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "cv2": cv2_providers(),
        "device": device,
        "presets": presets,
        "weights_search_path": weights,
    }


def info(json_output: JsonOption = False) -> None:
    """Show versions, the compute device, model presets and where weights are looked up."""
    data = gather_info()
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"export3d {data['export3d']} (Python {data['python']})")
    console.print("packages: " + ", ".join(f"{k} {v or 'missing'}" for k, v in data["packages"].items()))
    cv2 = data["cv2"]
    note = " [yellow](several distributions share cv2; keep only opencv-contrib-python)[/]" if len(cv2) > 1 else ""
    console.print(f"cv2 from: {', '.join(cv2) or 'missing'}{note}")
    d = data["device"]
    console.print(f"device: {d['kind']} ({d['name']})")
    table = Table(title="model presets")
    for column in ("preset", "R", "parameters", "f_e", "G", "renderer", "SR"):
        table.add_column(column, justify="right" if column != "preset" else "left")
    for name, p in data["presets"].items():
        table.add_row(
            name,
            str(p["resolution"]),
            f"{p['parameters']:,}",
            f"{p['expression_encoder']:,}",
            f"{p['generator']:,}",
            f"{p['renderer']:,}",
            f"{p['superres']:,}",
        )
    console.print(table)
    console.print("default weights are looked up in:")
    for w in data["weights_search_path"]:
        console.print(f"  {w['origin']}: {w['location']} ({w['status']})")
