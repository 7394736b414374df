"""EG3D's camera-label constants (``eg3d-conventions.md`` §1-2), free of torch.

Shared by the torch geometry (``export3d_cli.geometry.camera``) and the numpy face pipeline
(``export3d_cli.face.head_pose``), which must not import torch just to label a frame.
"""

FFHQ_FOCAL = 4.2647  # 2985.29 / 700: the literal value EG3D's FFHQ labels use
CAMERA_RADIUS = 2.7
CAMERA_PIVOT = (0.0, 0.0, 0.2)
LABEL_DIM = 25
