"""Volume rendering in EG3D's conventions: rays, tri-plane lookup, decoder, marcher."""

from export3d_cli.models.rendering.decoder import DecodedSamples, TriplaneDecoder
from export3d_cli.models.rendering.renderer import RenderOutput, TriplaneRenderer, render_triplanes
from export3d_cli.models.rendering.triplane_sampler import PLANE_COORDINATES, sample_triplanes

__all__ = [
    "PLANE_COORDINATES",
    "DecodedSamples",
    "RenderOutput",
    "TriplaneDecoder",
    "TriplaneRenderer",
    "render_triplanes",
    "sample_triplanes",
]
