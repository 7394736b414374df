"""export3d: animate a single portrait photo in 3D (Export3D, ECCV 2024).

The package layout follows the paper's pipeline:

- ``geometry``: EG3D cameras and rays.
- ``layers``: EAdaLN, attention, Mix-FFN, patch merge, low-pass filter.
- ``models``: CLeBS expression encoder, image encoder, tri-plane generator,
  volume rendering, super-resolution, and the whole ``Export3D`` network.
- ``training``: losses used to train the model.
- ``cli``: the ``export3d`` command.

Heavy imports (torch) happen inside the sub-packages, never here, so that the
CLI starts instantly.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
