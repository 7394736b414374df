"""MediaPipe's canonical face mesh, read from the geometry metadata inside ``face_landmarker.task``.

The bundle is a zip; ``geometry_pipeline_metadata_landmarks.binarypb`` in it is a
``GeometryPipelineMetadata`` protobuf message. Its fields, as found in the file:

- 1 ``canonical_mesh`` (Mesh3d): 3 ``vertex_buffer`` floats, 5 per vertex (x, y, z, u, v),
  4 ``index_buffer`` uint32, 3 per triangle;
- 2 ``procrustes_landmark_basis`` (repeated): 1 landmark id, 2 weight — the rigid
  landmarks MediaPipe itself uses to fit the head pose;
- 3 ``input_source`` (enum).

A 40-line wire-format reader is enough for that, so we do not depend on the
``protobuf`` package's generated classes. Mesh units are centimetres; the frame
is y up, the face looking towards +z and +x on the subject's left (the viewer's
right in a frontal view) — the same orientation as EG3D's world frame.
"""

from __future__ import annotations

import functools
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_cli.errors import WeightsError
from export3d_cli.face.landmarker_model import face_landmarker_path

METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
MESH_VERTICES = 468
MESH_TRIANGLES = 898

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class CanonicalFace:
    """The canonical face. Shapes: vertices [468, 3] cm, uvs [468, 2], triangles [898, 3], basis [K]."""

    vertices: np.ndarray
    uvs: np.ndarray
    triangles: np.ndarray
    procrustes_indices: np.ndarray
    procrustes_weights: np.ndarray


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a protobuf message; value is an int or the raw bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == _BYTES:
            length, pos = _read_varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        elif wire_type == _FIXED32:
            value = data[pos : pos + 4]
            pos += 4
        elif wire_type == _FIXED64:
            value = data[pos : pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > len(data):
            raise ValueError("truncated message")
        yield number, value


def _repeated_floats(values: list[int | bytes]) -> list[float]:
    """Repeated float fields arrive one per key (fixed32) or packed (one bytes blob); accept both."""
    floats: list[float] = []
    for value in values:
        if isinstance(value, bytes) and len(value) == 4:
            floats.append(struct.unpack("<f", value)[0])
        elif isinstance(value, bytes):
            floats.extend(np.frombuffer(value, "<f4").tolist())
    return floats


def _repeated_varints(values: list[int | bytes]) -> list[int]:
    ints: list[int] = []
    for value in values:
        if isinstance(value, int):
            ints.append(value)
        else:
            pos = 0
            while pos < len(value):
                item, pos = _read_varint(value, pos)
                ints.append(item)
    return ints


def parse_geometry_metadata(data: bytes) -> CanonicalFace:
    """Decode a ``GeometryPipelineMetadata`` message (see the module docstring for its fields)."""
    mesh_blob: bytes | None = None
    basis: list[tuple[int, float]] = []
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            mesh_blob = value
        elif number == 2 and isinstance(value, bytes):
            landmark_id, weight = 0, 0.0
            for sub_number, sub_value in _fields(value):
                if sub_number == 1 and isinstance(sub_value, int):
                    landmark_id = sub_value
                elif sub_number == 2 and isinstance(sub_value, bytes):
                    weight = struct.unpack("<f", sub_value)[0]
            basis.append((landmark_id, weight))
    if mesh_blob is None:
        raise ValueError("no canonical mesh")
    vertex_values: list[int | bytes] = []
    index_values: list[int | bytes] = []
    for number, value in _fields(mesh_blob):
        if number == 3:
            vertex_values.append(value)
        elif number == 4:
            index_values.append(value)
    vertex_buffer = np.asarray(_repeated_floats(vertex_values), dtype=np.float32).reshape(-1, 5)  # [V, xyzuv]
    triangles = np.asarray(_repeated_varints(index_values), dtype=np.int64).reshape(-1, 3)  # [F, 3]
    if vertex_buffer.shape[0] != MESH_VERTICES or triangles.shape[0] != MESH_TRIANGLES:
        raise ValueError(f"unexpected mesh size {vertex_buffer.shape[0]} vertices, {triangles.shape[0]} triangles")
    return CanonicalFace(
        vertices=vertex_buffer[:, :3].copy(),
        uvs=vertex_buffer[:, 3:].copy(),
        triangles=triangles,
        procrustes_indices=np.array([index for index, _ in basis], dtype=np.int64),
        procrustes_weights=np.array([weight for _, weight in basis], dtype=np.float32),
    )


def read_canonical_face(bundle: Path) -> CanonicalFace:
    try:
        with zipfile.ZipFile(bundle) as archive:
            data = archive.read(METADATA_MEMBER)
        return parse_geometry_metadata(data)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise WeightsError(f"{bundle}: cannot read the canonical face mesh ({error})") from error


@functools.cache
def canonical_face() -> CanonicalFace:
    """The canonical face of the bundled (checksum-verified) Face Landmarker model."""
    return read_canonical_face(face_landmarker_path())
