"""Regenerate ``export3d_cli/metrics/identity_reference.json``: the mean dlib ResNet embedding of a face population.

CSIM centres dlib's embeddings on this mean before taking the cosine (see
``export3d_cli/metrics/identity.py`` for why). The population is every face
that dlib's frontal detector (upsample 1) finds in the six demo photos of the
npm package ``@vladmandic/face-api`` 1.7.15 (MIT): ``package/demo/sample1.jpg`` …
``sample6.jpg``. Those photos are used only here and to fit the dlib face box (``dlib_models``), and
none of the photos the metric tests judge is among them.

    npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
    python tools/make_identity_reference.py package/demo/sample*.jpg

Needs the ``eval`` extra.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from export3d_cli.atomic import atomic_write_text
from export3d_cli.media.image_io import load_image
from export3d_cli.metrics.dlib_models import load_identity_network
from export3d_cli.metrics.identity import IDENTITY_REFERENCE


def main(photos: list[str]) -> None:
    import dlib

    detector = dlib.get_frontal_face_detector()
    aligner, network = load_identity_network()
    embeddings, sources = [], []
    for photo in sorted(photos):
        image = load_image(photo)
        faces = detector(image, 1)
        embeddings += [np.array(network.compute_face_descriptor(image, aligner(image, box))) for box in faces]
        sources.append(
            {
                "file": Path(photo).name,
                "sha256": hashlib.sha256(Path(photo).read_bytes()).hexdigest(),
                "faces": len(faces),
            }
        )
    mean = np.mean(embeddings, axis=0)
    record = {
        "what": "mean dlib_face_recognition_resnet_model_v1 embedding (128-d) of a face population; CSIM centres on it",
        "population": "every face dlib's frontal detector (upsample 1) finds in the @vladmandic/face-api 1.7.15 demo",
        "licence": "photos: MIT (c) Vladimir Mandic, npm @vladmandic/face-api 1.7.15; this mean: derived statistic",
        "faces": len(embeddings),
        "photos": sources,
        "mean": [round(float(value), 7) for value in mean],
    }
    atomic_write_text(IDENTITY_REFERENCE, json.dumps(record, indent=1) + "\n")
    print(f"{IDENTITY_REFERENCE}: {len(embeddings)} faces")


if __name__ == "__main__":
    main(sys.argv[1:])
