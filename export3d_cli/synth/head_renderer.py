"""Render a synthetic head through an EG3D camera: the frame is the aligned crop by construction.

The head lives in the model's world (canonical centimetres × 0.02, nose on the
pivot; ``export3d_cli.face.head_pose``), so rendering with a label p through the
FFHQ intrinsics gives exactly the crop the face pipeline aims for, and projecting
the posed mesh gives exact 2-D landmarks in MediaPipe's topology. Shading is
deferred: the rasteriser resolves visibility, then each material computes its
albedo per pixel and a Lambert + Blinn-Phong light is applied; frames are
supersampled and box-filtered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from export3d_cli.face.canonical_face import canonical_face
from export3d_cli.face.head_pose import canonical_to_world, project_to_crop
from export3d_cli.synth.face_rig import CONTROL_INDEX, FaceRig, jaw_rotation, move_with_jaw, open_triangles
from export3d_cli.synth.head_parts import (
    EYEBALL_RADIUS,
    IRIS_RADIUS,
    PUPIL_RADIUS,
    Material,
    head_parts,
    iris_landmarks,
)
from export3d_cli.synth.identity import Identity
from export3d_cli.synth.rasterizer import downsample, interpolate, project, rasterize
from export3d_cli.synth.textures import FACE_TEXTURE_SIZE, face_texture

SUPERSAMPLING = 2


@dataclass(frozen=True)
class Lighting:
    """A directional light in camera coordinates (``direction`` points from the surface to the light)."""

    direction: np.ndarray
    colour: np.ndarray
    ambient: float
    specular: float


def random_lighting(rng: np.random.Generator) -> Lighting:
    direction = np.array([rng.uniform(-0.9, 0.9), rng.uniform(-0.8, 0.25), -1.0])
    warmth = rng.uniform(-0.08, 0.08)
    return Lighting(
        direction=direction / np.linalg.norm(direction),
        colour=np.clip(np.array([1.0 + warmth, 1.0, 1.0 - warmth]) * rng.uniform(0.9, 1.15), 0.0, 1.3),
        ambient=rng.uniform(0.3, 0.55),
        specular=rng.uniform(0.05, 0.2),
    )


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals [V, 3] (the canonical mesh winds counter-clockwise seen from outside)."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, triangles[:, i], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


class SyntheticHead:
    """One identity, ready to render any expression from any camera."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.rig = FaceRig(identity.shape)
        self.parts = head_parts(identity, self.rig)
        face = canonical_face()
        keep = np.ones(len(face.triangles), bool)
        keep[open_triangles()] = False
        self.face_triangles = face.triangles[keep]
        self.face_uvs = face.uvs.astype(np.float64)
        self.texture = face_texture(identity)

    def landmarks(self, controls: np.ndarray, label: np.ndarray, resolution: int) -> np.ndarray:
        """Exact 2-D landmarks [478, 2] (MediaPipe topology, crop pixel coordinates)."""
        points = np.concatenate([self.rig.pose(controls), iris_landmarks(self.rig)])
        return project_to_crop(canonical_to_world(points), label, resolution).astype(np.float32)

    def _mesh(self, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vertices [V,3] cm, normals [V,3], attributes [V,5] = uv + local, triangles [F,3], material [F])."""
        jaw = float(np.clip(controls[CONTROL_INDEX["jaw_open"]], 0.0, 1.0))
        rotation, _ = jaw_rotation(jaw)
        face_vertices = self.rig.pose(controls)
        vertices = [face_vertices]
        normals = [_vertex_normals(face_vertices, self.face_triangles)]
        attributes = [np.concatenate([self.face_uvs, np.zeros((len(face_vertices), 3))], axis=1)]
        triangles = [self.face_triangles]
        materials = [np.full(len(self.face_triangles), Material.FACE, np.int8)]
        offset = len(face_vertices)
        for part in self.parts:
            moved = move_with_jaw(part.vertices, jaw, part.jaw)
            turned = part.normals + part.jaw[:, None] * (part.normals @ rotation.T - part.normals)
            vertices.append(moved)
            normals.append(turned / np.linalg.norm(turned, axis=1, keepdims=True))
            attributes.append(np.concatenate([np.zeros((len(moved), 2)), part.local], axis=1))
            triangles.append(part.triangles + offset)
            materials.append(np.full(len(part.triangles), part.material, np.int8))
            offset += len(moved)
        return (
            np.concatenate(vertices),
            np.concatenate(normals),
            np.concatenate(attributes),
            np.concatenate(triangles),
            np.concatenate(materials),
        )

    def render(
        self, controls: np.ndarray, label: np.ndarray, resolution: int, lighting: Lighting, backdrop: np.ndarray
    ) -> np.ndarray:
        """The head with expression ``controls`` [8] seen through EG3D camera ``label`` [25]: uint8 [R, R, 3]."""
        vertices, normals, attributes, triangles, materials = self._mesh(np.asarray(controls, dtype=np.float64))
        label = np.asarray(label, dtype=np.float64)
        cam2world = label[:16].reshape(4, 4)
        intrinsics = label[16:].reshape(3, 3)
        rotation, origin = cam2world[:3, :3], cam2world[:3, 3]
        camera_points = (canonical_to_world(vertices) - origin) @ rotation  # [V, 3] OpenCV camera frame
        camera_normals = normals @ rotation  # the world is the canonical frame scaled: no extra rotation
        size = resolution * SUPERSAMPLING
        screen, depth = project(camera_points, intrinsics, size, size)
        fragments = rasterize(screen, depth, triangles, size, size)
        mask = fragments.mask
        material = np.where(mask, materials[np.maximum(fragments.triangle, 0)], -1)
        pixel_normals = interpolate(fragments, triangles, camera_normals)
        pixel_normals /= np.maximum(np.linalg.norm(pixel_normals, axis=-1, keepdims=True), 1e-6)
        pixel_attributes = interpolate(fragments, triangles, attributes)
        albedo = self._albedo(material, pixel_attributes)
        colour = self._shade(albedo, pixel_normals, material, lighting)
        import cv2

        background = cv2.resize(backdrop, (size, size), interpolation=cv2.INTER_LINEAR)
        image = np.where(mask[..., None], colour, background)
        image = downsample(image.astype(np.float32), SUPERSAMPLING)
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)

    def _albedo(self, material: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        import cv2

        identity = self.identity
        albedo = np.zeros((*material.shape, 3), np.float32)
        uv = attributes[..., :2]
        local = attributes[..., 2:]
        face = material == Material.FACE
        if face.any():
            size = FACE_TEXTURE_SIZE
            map_x = (uv[..., 0] * size - 0.5).astype(np.float32)
            map_y = (uv[..., 1] * size - 0.5).astype(np.float32)
            sampled = cv2.remap(self.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            albedo[face] = sampled[face]
        skin = material == Material.SKIN
        albedo[skin] = identity.skin * (1.0 + 0.03 * np.sin(7.0 * local[skin] @ np.array([1.3, 0.7, 1.1])))[:, None]
        hair = material == Material.HAIR
        if hair.any():
            d = local[hair]
            around = np.arctan2(d[:, 0], d[:, 2])
            strands = 0.5 + 0.5 * np.sin(60.0 * around + 5.0 * np.sin(9.0 * d[:, 1]) + 3.0 * d[:, 1])
            albedo[hair] = identity.hair * (0.72 + 0.4 * strands)[:, None]
        eye = material == Material.EYE
        if eye.any():
            d = local[eye]
            radial = np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2) * EYEBALL_RADIUS  # distance from the gaze axis, cm
            front = d[:, 2] > 0
            iris = front & (radial < IRIS_RADIUS)
            pupil = front & (radial < PUPIL_RADIUS)
            spokes = 0.8 + 0.25 * np.sin(40.0 * np.arctan2(d[:, 1], d[:, 0]))
            limbus = np.clip((radial - 0.8 * IRIS_RADIUS) / (0.2 * IRIS_RADIUS), 0.0, 1.0)
            colour = np.tile(np.array([0.9, 0.88, 0.85]), (len(d), 1))
            colour[iris] = identity.iris * (spokes[iris] * (1.0 - 0.5 * limbus[iris]))[:, None]
            colour[pupil] = 0.03
            albedo[eye] = colour
        mouth = material == Material.MOUTH
        if mouth.any():
            tongue = local[mouth][:, 1] < -0.35
            albedo[mouth] = np.where(tongue[:, None], [0.6, 0.26, 0.26], [0.32, 0.08, 0.08])
        teeth = material == Material.TEETH
        if teeth.any():
            gap = np.abs(((local[teeth][:, 0] + 0.5) % 1.0) - 0.5) < 0.06
            albedo[teeth] = np.where(gap[:, None], [0.55, 0.5, 0.45], [0.93, 0.91, 0.84])
        cloth = material == Material.CLOTHING
        if cloth.any():
            folds = 1.0 + 0.08 * np.sin(13.0 * local[cloth][:, 0] + 4.0 * local[cloth][:, 1])
            albedo[cloth] = identity.clothing * folds[:, None]
        return albedo

    @staticmethod
    def _shade(albedo: np.ndarray, normals: np.ndarray, material: np.ndarray, lighting: Lighting) -> np.ndarray:
        light = lighting.direction
        diffuse = np.clip(normals @ light, 0.0, 1.0)[..., None]
        view = np.array([0.0, 0.0, -1.0])  # towards the camera, in camera coordinates
        half = (light + view) / np.linalg.norm(light + view)
        shininess = np.where(material == Material.EYE, 120.0, np.where(material == Material.HAIR, 12.0, 24.0))
        glossy = np.isin(material, [Material.FACE, Material.SKIN, Material.EYE, Material.TEETH, Material.HAIR])
        strength = np.where(material == Material.EYE, 0.9, lighting.specular) * glossy
        specular = (strength * np.clip(normals @ half, 0.0, 1.0) ** shininess)[..., None]
        occlusion = np.where(material == Material.MOUTH, 0.6, 1.0)[..., None]
        shade = lighting.ambient + (1.0 - lighting.ambient) * diffuse
        return (albedo * shade * occlusion + specular) * lighting.colour
