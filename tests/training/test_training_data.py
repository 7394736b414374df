"""Reading a dataset for training: CLeBS clip batches, (S, D) pairs, images at the model's resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from export3d_cli.data.dataset_layout import frame_path
from export3d_cli.training.dataset import ClipDataset, sample_clip_batch, sample_pairs

# The mini dataset's layout (tests/training/conftest.py; a test module cannot import conftest).
MINI_RESOLUTION = 64
MINI_FRAMES = 6
INVALID_CLIP = "id1-c1"
INVALID_FRAMES = (1, 4)
CROSS_CLIP = "id2-x-id3"


@pytest.fixture(scope="module")
def dataset(mini_dataset) -> ClipDataset:
    assert (mini_dataset.resolution, mini_dataset.frames) == (MINI_RESOLUTION, MINI_FRAMES)
    assert (mini_dataset.invalid_clip, mini_dataset.invalid_frames) == (INVALID_CLIP, INVALID_FRAMES)
    assert mini_dataset.cross_clip == CROSS_CLIP
    return ClipDataset(mini_dataset.root)


@pytest.fixture(scope="module")
def all_frames(dataset: ClipDataset) -> dict[str, torch.Tensor]:
    """clip id -> every frame of the clip as the dataset returns it, [T, 3, R, R]."""
    return {clip.id: dataset.images(clip.id, np.arange(clip.frames)) for clip in dataset.manifest.clips}


def _frame_index(frames: torch.Tensor, image: torch.Tensor) -> int | None:
    """The index of the frame equal to ``image`` pixel for pixel, or None."""
    matches = [t for t in range(len(frames)) if torch.equal(frames[t], image)]
    assert len(matches) <= 1, "frames of the mini dataset are all distinct"
    return matches[0] if matches else None


def _owner(all_frames: dict[str, torch.Tensor], image: torch.Tensor) -> tuple[str, int]:
    """(clip id, frame index) of the only frame anywhere in the dataset equal to ``image``."""
    found = [(clip_id, t) for clip_id, frames in all_frames.items() if (t := _frame_index(frames, image)) is not None]
    assert len(found) == 1, f"image matches {found}"
    return found[0]


def _read_png(root, clip_id: str, index: int) -> np.ndarray:
    with Image.open(frame_path(root, clip_id, index)) as image:
        return np.asarray(image.convert("RGB"))


def test_split_listing_separates_training_test_and_cross_identity_clips(dataset, mini_dataset):
    assert [clip.id for clip in dataset.clips("train")] == list(mini_dataset.train_clips)
    assert [clip.id for clip in dataset.clips("test")] == list(mini_dataset.test_clips)
    assert [clip.id for clip in dataset.clips("test", cross_identity=True)] == [CROSS_CLIP]
    assert dataset.clips("train", cross_identity=True) == []
    assert dataset.resolution == MINI_RESOLUTION


def test_valid_indices_skip_frames_without_a_face(dataset):
    assert dataset.valid_indices(INVALID_CLIP).tolist() == [t for t in range(MINI_FRAMES) if t not in INVALID_FRAMES]
    assert dataset.valid_indices("id0-c0").tolist() == list(range(MINI_FRAMES))


def test_measured_expressions_are_the_valid_frames_of_the_clips_in_order(dataset):
    clips = [clip for clip in dataset.manifest.clips if clip.id in (INVALID_CLIP, "id0-c0")]
    expected = np.concatenate(
        [dataset.params(clip.id).expression[[t for t in range(MINI_FRAMES) if clip.id != INVALID_CLIP
                                             or t not in INVALID_FRAMES]] for clip in clips]
    )  # fmt: skip
    got = dataset.measured_expressions(clips)
    assert got.shape == (2 * MINI_FRAMES - len(INVALID_FRAMES), 52)
    np.testing.assert_array_equal(got, expected)


def test_clip_batch_images_are_distinct_valid_frames_of_the_returned_clip(dataset, all_frames):
    rng = np.random.default_rng(0)
    for _ in range(40):
        clip, batch = sample_clip_batch(dataset, dataset.clips("train"), 8, rng)
        valid = set(dataset.valid_indices(clip.id).tolist())
        indices = [_frame_index(all_frames[clip.id], image) for image in batch.images]
        assert None not in indices, f"an image of the batch is not a frame of {clip.id}"
        assert len(set(indices)) == len(indices), "frames must be distinct"
        assert set(indices) <= valid, "only frames with a detected face"
        assert len(indices) == min(8, len(valid))
        params = dataset.params(clip.id)
        np.testing.assert_array_equal(batch.expression.numpy(), params.expression[indices])
        np.testing.assert_array_equal(batch.camera.numpy(), params.camera[indices])


def test_clip_batches_use_every_training_clip_and_no_test_clip(dataset, all_frames, mini_dataset):
    rng = np.random.default_rng(1)
    drawn = set()
    for _ in range(120):
        clip, batch = sample_clip_batch(dataset, dataset.clips("train"), 4, rng)
        drawn.add(clip.id)
        # The pixels themselves (not just the returned record) come from that training clip.
        assert {_owner(all_frames, image)[0] for image in batch.images} == {clip.id}
    assert drawn == set(mini_dataset.train_clips)


def test_clip_batch_smaller_than_clip_takes_a_subset(dataset):
    clip, batch = sample_clip_batch(dataset, dataset.clips("train"), 2, np.random.default_rng(3))
    assert batch.images.shape == (2, 3, MINI_RESOLUTION, MINI_RESOLUTION)
    assert batch.expression.shape == (2, 52) and batch.camera.shape == (2, 25)
    assert clip.split == "train"


def test_pairs_take_source_and_driving_from_the_same_clip(dataset, all_frames, mini_dataset):
    batch = sample_pairs(dataset, dataset.clips("train"), 48, np.random.default_rng(4))
    assert batch.source.shape == batch.driving.images.shape == (48, 3, MINI_RESOLUTION, MINI_RESOLUTION)
    clips_seen = set()
    for k in range(48):
        source_clip, source_index = _owner(all_frames, batch.source[k])
        driving_clip, driving_index = _owner(all_frames, batch.driving.images[k])
        assert source_clip == driving_clip
        clips_seen.add(driving_clip)
        # The clip's colour shows in the border of both images (the centre square follows β[0]).
        colour = torch.tensor(mini_dataset.colours[driving_clip], dtype=torch.float32) / 127.5 - 1
        source_has_face = dataset.params(source_clip).valid[source_index]  # a grey S (no face) is allowed
        for image in (batch.source[k], batch.driving.images[k]) if source_has_face else (batch.driving.images[k],):
            border = image[:, :8, :].mean(dim=(1, 2))
            torch.testing.assert_close(border, colour, atol=0.03, rtol=0)
        assert dataset.params(driving_clip).valid[driving_index], "D must be a frame with a detected face"
        params = dataset.params(driving_clip)
        np.testing.assert_array_equal(batch.driving.expression[k].numpy(), params.expression[driving_index])
        np.testing.assert_array_equal(batch.driving.camera[k].numpy(), params.camera[driving_index])
    assert clips_seen == set(mini_dataset.train_clips)


def test_driving_frames_of_a_clip_with_missing_faces_are_always_valid(dataset, all_frames):
    clip = [c for c in dataset.clips("train") if c.id == INVALID_CLIP]
    batch = sample_pairs(dataset, clip, 64, np.random.default_rng(5))
    driving = {_frame_index(all_frames[INVALID_CLIP], image) for image in batch.driving.images}
    sources = {_frame_index(all_frames[INVALID_CLIP], image) for image in batch.source}
    assert None not in driving and None not in sources
    assert driving == set(range(MINI_FRAMES)) - set(INVALID_FRAMES)
    assert sources == set(range(MINI_FRAMES)), "S may be any frame of the clip"


def test_same_seed_gives_the_same_pairs_and_another_seed_does_not(dataset):
    clips = dataset.clips("train")
    a = sample_pairs(dataset, clips, 8, np.random.default_rng(7))
    b = sample_pairs(dataset, clips, 8, np.random.default_rng(7))
    c = sample_pairs(dataset, clips, 8, np.random.default_rng(8))
    for x, y in ((a.source, b.source), (a.driving.images, b.driving.images)):
        assert torch.equal(x, y)
    assert torch.equal(a.driving.expression, b.driving.expression)
    assert torch.equal(a.driving.camera, b.driving.camera)
    assert not torch.equal(a.driving.images, c.driving.images)


def test_images_at_the_dataset_resolution_are_the_png_pixels(dataset, mini_dataset):
    images = dataset.images("id2-c1", [0, 3])
    for row, index in enumerate((0, 3)):
        pixels = _read_png(mini_dataset.root, "id2-c1", index).astype(np.float32)
        expected = torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1
        torch.testing.assert_close(images[row], expected, atol=1e-6, rtol=0)


def test_images_are_area_averaged_to_the_model_resolution(mini_dataset):
    smaller = ClipDataset(mini_dataset.root, resolution=MINI_RESOLUTION // 2)
    indices = [0, 2, 5]
    images = smaller.images("id0-c1", indices)
    assert images.shape == (3, 3, MINI_RESOLUTION // 2, MINI_RESOLUTION // 2)
    raw = np.stack([_read_png(mini_dataset.root, "id0-c1", t) for t in indices]).astype(np.float64) / 127.5 - 1
    # Independent: mean over each 2x2 block.
    half = MINI_RESOLUTION // 2
    blocks = raw.reshape(3, half, 2, half, 2, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(images.numpy(), blocks, atol=1e-5)
    reference = F.interpolate(torch.from_numpy(raw).permute(0, 3, 1, 2).float(), size=(half, half), mode="area")
    torch.testing.assert_close(images, reference, atol=1e-5, rtol=0)
    assert images.min() >= -1 and images.max() <= 1
    assert images.dtype == torch.float32


def test_batch_returns_params_rows_of_the_requested_frames(dataset):
    batch = dataset.batch("id3-c0", np.array([4, 1]))
    params = dataset.params("id3-c0")
    np.testing.assert_array_equal(batch.expression.numpy(), params.expression[[4, 1]])
    np.testing.assert_array_equal(batch.camera.numpy(), params.camera[[4, 1]])
    assert batch.expression.dtype == batch.camera.dtype == torch.float32


def _pair_expression_distance(dataset, all_frames, batch) -> float:
    distances = []
    for source_image, driving_image in zip(batch.source, batch.driving.images, strict=True):
        clip, source = _owner(all_frames, source_image)
        _, driving = _owner(all_frames, driving_image)
        beta = dataset.params(clip).expression
        distances.append(float(np.abs(beta[driving] - beta[source]).sum()))
    return float(np.mean(distances))


def test_expression_pair_sampling_favours_pairs_whose_expressions_differ(dataset, all_frames):
    clips = dataset.clips("train")
    uniform = sample_pairs(dataset, clips, 200, np.random.default_rng(9))
    weighted = sample_pairs(dataset, clips, 200, np.random.default_rng(9), sampling="expression")
    # Measured 1.29x on this data; 1.15 is far outside the sampling noise of 200 pairs (~4%).
    assert _pair_expression_distance(dataset, all_frames, weighted) > 1.15 * _pair_expression_distance(
        dataset, all_frames, uniform
    )
    for image in weighted.driving.images:  # still only frames with a measured β
        clip, index = _owner(all_frames, image)
        assert dataset.params(clip).valid[index]
