"""The canonical face mesh read from the Face Landmarker bundle, and the protobuf wire-format reader behind it."""

from __future__ import annotations

import collections
import struct
import zipfile

import numpy as np
import pytest

from export3d_cli.errors import WeightsError
from export3d_cli.face.canonical_face import (
    MESH_TRIANGLES,
    MESH_VERTICES,
    METADATA_MEMBER,
    _fields,
    _repeated_floats,
    _repeated_varints,
    canonical_face,
    parse_geometry_metadata,
    read_canonical_face,
)
from export3d_cli.face.landmarker_model import face_landmarker_path

RIGHT_EYE_OUTER, LEFT_EYE_OUTER, NOSE_TIP = 33, 263, 4

# --- a minimal protobuf encoder, the mirror image of the reader under test ---

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return encode_varint(field << 3 | wire_type)


def varint_field(field: int, value: int) -> bytes:
    return key(field, VARINT) + encode_varint(value)


def float_field(field: int, value: float) -> bytes:
    return key(field, FIXED32) + struct.pack("<f", value)


def bytes_field(field: int, payload: bytes) -> bytes:
    return key(field, BYTES) + encode_varint(len(payload)) + payload


def packed_floats(field: int, values: np.ndarray) -> bytes:
    return bytes_field(field, np.asarray(values, dtype="<f4").tobytes())


def unpacked_floats(field: int, values: np.ndarray) -> bytes:
    return b"".join(float_field(field, float(v)) for v in values)


def packed_varints(field: int, values: np.ndarray) -> bytes:
    return bytes_field(field, b"".join(encode_varint(int(v)) for v in values))


def unpacked_varints(field: int, values: np.ndarray) -> bytes:
    return b"".join(varint_field(field, int(v)) for v in values)


def build_metadata(vertex_encoding: str, index_encoding: str, vertices: int = MESH_VERTICES) -> bytes:
    """A GeometryPipelineMetadata message holding the real canonical face, with the chosen repeated-field encodings."""
    face = canonical_face()
    vertex_buffer = np.concatenate([face.vertices, face.uvs], axis=1)[:vertices].reshape(-1)  # [V*5]
    index_buffer = face.triangles.reshape(-1)  # [F*3]
    half_v, half_i = len(vertex_buffer) // 2, len(index_buffer) // 2
    vertex_part = {
        "packed": packed_floats(3, vertex_buffer),
        "unpacked": unpacked_floats(3, vertex_buffer),
        # Protobuf parsers must accept a repeated field split over several packed and unpacked runs.
        "mixed": packed_floats(3, vertex_buffer[:half_v]) + unpacked_floats(3, vertex_buffer[half_v:]),
    }[vertex_encoding]
    index_part = {
        "packed": packed_varints(4, index_buffer),
        "unpacked": unpacked_varints(4, index_buffer),
        "mixed": unpacked_varints(4, index_buffer[:half_i]) + packed_varints(4, index_buffer[half_i:]),
    }[index_encoding]
    # Fields 1, 2 of Mesh3d (vertex_type, primitive_type) are enums the reader must skip.
    mesh = varint_field(1, 0) + varint_field(2, 0) + vertex_part + index_part
    basis = b"".join(
        bytes_field(2, varint_field(1, int(index)) + float_field(2, float(weight)))
        for index, weight in zip(face.procrustes_indices, face.procrustes_weights, strict=True)
    )
    unknown = key(15, FIXED64) + struct.pack("<d", 1.5)  # an unknown fixed64 field, skipped
    return bytes_field(1, mesh) + basis + varint_field(3, 1) + unknown


def write_zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


# --- the real mesh ---


def test_mesh_has_468_vertices_898_triangles_and_valid_indices():
    face = canonical_face()
    assert face.vertices.shape == (MESH_VERTICES, 3) == (468, 3)
    assert face.uvs.shape == (468, 2)
    assert face.triangles.shape == (MESH_TRIANGLES, 3) == (898, 3)
    assert face.triangles.min() >= 0
    assert face.triangles.max() < 468
    assert len(np.unique(face.triangles)) == 468, "every vertex belongs to some triangle"
    assert np.isfinite(face.vertices).all()


def test_uvs_lie_in_the_unit_square():
    uvs = canonical_face().uvs
    assert uvs.min() >= 0.0
    assert uvs.max() <= 1.0
    assert np.ptp(uvs, axis=0).min() > 0.5, "the texture atlas is spread over the square"


def test_mesh_is_a_manifold_with_front_facing_counter_clockwise_triangles():
    face = canonical_face()
    edges = collections.Counter(
        tuple(sorted(edge)) for a, b, c in face.triangles.tolist() for edge in ((a, b), (b, c), (c, a))
    )
    assert max(edges.values()) == 2, "an edge shared by three triangles means misread indices"
    v = face.vertices.astype(np.float64)
    t = face.triangles
    normals = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    assert (normals[:, 2] > 0).mean() > 0.95, "the face looks towards +z with CCW winding"


def test_outer_eye_corners_mirror_in_x():
    vertices = canonical_face().vertices
    right, left = vertices[RIGHT_EYE_OUTER], vertices[LEFT_EYE_OUTER]
    assert right[0] < -3.0, "landmark 33 (subject's right eye) is on the -x side"
    np.testing.assert_allclose(left, right * np.array([-1.0, 1.0, 1.0]), atol=1e-5)


def test_mesh_is_left_right_symmetric_as_a_point_set():
    vertices = canonical_face().vertices.astype(np.float64)
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    distances = np.linalg.norm(vertices[:, None, :] - mirrored[None, :, :], axis=-1).min(axis=1)
    assert distances.max() < 1e-3


def test_nose_tip_is_the_most_forward_vertex():
    vertices = canonical_face().vertices
    assert int(np.argmax(vertices[:, 2])) == NOSE_TIP
    assert abs(vertices[NOSE_TIP, 0]) < 1e-6, "the nose tip is on the symmetry plane"


def test_face_is_upright_and_in_centimetres():
    vertices = canonical_face().vertices
    eyes_y = vertices[[RIGHT_EYE_OUTER, LEFT_EYE_OUTER], 1].mean()
    mouth_y = vertices[[13, 14], 1].mean()
    assert eyes_y > vertices[NOSE_TIP, 1] > mouth_y, "y is up"
    width = np.ptp(vertices[:, 0])
    assert 12.0 < width < 20.0, "a human face is about 15 cm wide"


def test_procrustes_basis_has_33_distinct_landmarks_with_positive_weights():
    face = canonical_face()
    assert face.procrustes_indices.shape == (33,)
    assert face.procrustes_weights.shape == (33,)
    assert len(set(face.procrustes_indices.tolist())) == 33
    assert face.procrustes_indices.min() >= 0
    assert face.procrustes_indices.max() < 468
    assert (face.procrustes_weights > 0).all()
    assert {NOSE_TIP, RIGHT_EYE_OUTER, LEFT_EYE_OUTER} <= set(face.procrustes_indices.tolist())


# --- the wire-format reader on hand-built messages ---


@pytest.mark.parametrize("vertex_encoding", ["packed", "unpacked", "mixed"])
@pytest.mark.parametrize("index_encoding", ["packed", "unpacked", "mixed"])
def test_parser_accepts_packed_unpacked_and_mixed_repeated_fields(vertex_encoding, index_encoding):
    expected = canonical_face()
    parsed = parse_geometry_metadata(build_metadata(vertex_encoding, index_encoding))
    np.testing.assert_array_equal(parsed.vertices, expected.vertices)
    np.testing.assert_array_equal(parsed.uvs, expected.uvs)
    np.testing.assert_array_equal(parsed.triangles, expected.triangles)
    np.testing.assert_array_equal(parsed.procrustes_indices, expected.procrustes_indices)
    np.testing.assert_array_equal(parsed.procrustes_weights, expected.procrustes_weights)


def test_parser_rejects_wrong_vertex_count_and_missing_mesh():
    with pytest.raises(ValueError, match="467 vertices"):
        parse_geometry_metadata(build_metadata("packed", "packed", vertices=467))
    with pytest.raises(ValueError, match="no canonical mesh"):
        parse_geometry_metadata(varint_field(3, 1))


def test_parser_rejects_truncated_messages():
    data = build_metadata("packed", "packed")
    with pytest.raises(ValueError, match="truncated"):
        parse_geometry_metadata(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        list(_fields(b"\x08\xff"))  # a varint whose continuation byte is missing


def test_fields_yields_numbers_and_raw_values_for_every_wire_type():
    message = (
        varint_field(1, 300)
        + float_field(2, 0.25)
        + bytes_field(3, b"abc")
        + key(4, FIXED64)
        + struct.pack("<d", 2.0)
        + varint_field(2000, 7)
    )
    assert list(_fields(message)) == [
        (1, 300),
        (2, struct.pack("<f", 0.25)),
        (3, b"abc"),
        (4, struct.pack("<d", 2.0)),
        (2000, 7),
    ]
    with pytest.raises(ValueError, match="wire type"):
        list(_fields(key(1, 3)))  # start-group: not used by this message


def test_repeated_helpers_decode_both_encodings():
    floats = np.array([1.5, -2.25, 1e-3, 3.0e4], dtype=np.float32)
    unpacked = [struct.pack("<f", float(v)) for v in floats]
    packed = [floats.astype("<f4").tobytes()]
    assert _repeated_floats(unpacked) == floats.tolist()
    assert _repeated_floats(packed) == floats.tolist()
    assert _repeated_floats(packed + unpacked) == floats.tolist() * 2

    ints = [0, 1, 127, 128, 300, 467, 2**20]
    packed_ints = b"".join(encode_varint(v) for v in ints)
    assert _repeated_varints(ints) == ints
    assert _repeated_varints([packed_ints]) == ints
    assert _repeated_varints([5, packed_ints]) == [5, *ints]


# --- reading the bundle ---


def test_real_bundle_parses_to_the_cached_face():
    face = read_canonical_face(face_landmarker_path())
    np.testing.assert_array_equal(face.vertices, canonical_face().vertices)


def test_bundle_without_the_metadata_member_is_a_weights_error(tmp_path):
    bundle = tmp_path / "no_metadata.task"
    write_zip(bundle, {"face_detector.tflite": b"\x00" * 16})
    with pytest.raises(WeightsError, match="canonical face") as error:
        read_canonical_face(bundle)
    assert str(bundle) in str(error.value)


def test_non_zip_bundle_is_a_weights_error(tmp_path):
    bundle = tmp_path / "not_a_zip.task"
    bundle.write_bytes(b"this is not a zip archive" * 10)
    with pytest.raises(WeightsError) as error:
        read_canonical_face(bundle)
    assert str(bundle) in str(error.value)


def test_bundle_with_garbage_metadata_is_a_weights_error(tmp_path):
    bundle = tmp_path / "garbage.task"
    truncated = build_metadata("packed", "packed")[:1000]
    write_zip(bundle, {METADATA_MEMBER: truncated})
    with pytest.raises(WeightsError) as error:
        read_canonical_face(bundle)
    assert str(bundle) in str(error.value)


def test_missing_bundle_is_a_weights_error(tmp_path):
    bundle = tmp_path / "missing.task"
    with pytest.raises(WeightsError) as error:
        read_canonical_face(bundle)
    assert str(bundle) in str(error.value)
