"""The Export3D network, one module per paper component."""

from export3d_cli.models.export3d import Export3D, Export3DOutput, parameter_count
from export3d_cli.models.expression_encoder import CLeBS, DirectExpressionEncoder, build_expression_encoder
from export3d_cli.models.generator import SourceFeatures, TriplaneGenerator
from export3d_cli.models.image_encoder import ImageEncoder
from export3d_cli.models.superresolution import SuperResolution
from export3d_cli.models.weights_io import load_model, save_model

__all__ = [
    "CLeBS",
    "DirectExpressionEncoder",
    "Export3D",
    "Export3DOutput",
    "ImageEncoder",
    "SourceFeatures",
    "SuperResolution",
    "TriplaneGenerator",
    "build_expression_encoder",
    "load_model",
    "parameter_count",
    "save_model",
]
