"""Fixtures for the pipeline tests: a tiny random model whose output visibly depends on β and the camera.

A freshly initialised Export3D barely reacts to its conditioning: adaLN-Zero starts every modulation at zero (β
has no effect at all) and the tiny generator's tri-planes are nearly flat (turning the camera moves pixels by a
tenth of an intensity level). ``sensitive_tiny_model`` fills the zero-initialised parameters with noise and
scales the tri-plane output and the CLeBS coefficients, so that a wrong β or camera shows in the frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_support import sensitive_tiny_model

from export3d_cli.face.analysis import FaceAnalysis, analyze_image
from export3d_cli.media.image_io import load_image
from export3d_cli.models import Export3D

EXAMPLE_PHOTO = Path(__file__).resolve().parents[2] / "examples" / "source.png"
ANALYSIS_RESOLUTION = 256


@pytest.fixture(scope="session")
def tiny_model() -> Export3D:
    return sensitive_tiny_model()


@pytest.fixture(scope="session")
def source_image() -> np.ndarray:
    return load_image(EXAMPLE_PHOTO)


@pytest.fixture(scope="session")
def source_analysis(source_image: np.ndarray) -> FaceAnalysis:
    return analyze_image(source_image, resolution=ANALYSIS_RESOLUTION, name=str(EXAMPLE_PHOTO))
