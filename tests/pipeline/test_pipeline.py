"""Unit tests of the inference pipeline: driving modes, frame composition and the Animator's batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export3d_cli.errors import InputError, UsageError
from export3d_cli.face.head_pose import NOSE_TIP, label_angles, look_at_pose
from export3d_cli.face.motion_file import Motion, save_motion
from export3d_cli.pipeline.animate_job import AnimateOptions, animate_source, output_name
from export3d_cli.pipeline.animator import Animator, choose_device
from export3d_cli.pipeline.compose import PasteBack, face_mask, fit_square, side_by_side
from export3d_cli.pipeline.driving import (
    Driving,
    drive,
    load_driving,
    locate_driving_video,
    relative_reference,
    resolve_modes,
    with_frames,
)
from export3d_cli.pipeline.frame_output import grid_image

FRAMES = 7
RESOLUTION = 64  # the tiny preset's output size
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


def random_motion(frames: int = FRAMES, *, first_valid: int = 0, source: str = "", seed: int = 1) -> Motion:
    """β uniform in [0, 1], cameras at random look-at angles, frames before ``first_valid`` marked faceless."""
    rng = np.random.default_rng(seed)
    expression = rng.uniform(0.0, 1.0, size=(frames, 52)).astype(np.float32)
    angles = rng.uniform(-20.0, 20.0, size=(frames, 2))
    camera = np.stack([look_at_pose(float(yaw), float(pitch)).label() for yaw, pitch in angles])
    valid = np.arange(frames) >= first_valid
    return Motion(expression, camera.astype(np.float32), valid, 25.0, source)


def driving_from(motion: Motion) -> Driving:
    return Driving(motion=motion, path=Path("motion.npz"), video=None)


@pytest.fixture
def source_signals() -> tuple[np.ndarray, np.ndarray]:
    """A source's β [52] and camera [25], unlike any driving frame's."""
    rng = np.random.default_rng(7)
    return rng.uniform(0.0, 1.0, size=52).astype(np.float32), look_at_pose(12.0, -8.0).label()


# ---------------------------------------------------------------------------------------------------------- drive


def test_drive_absolute_driving_passes_the_drivers_signals_through(source_signals):
    motion = random_motion()
    betas, cameras = drive(driving_from(motion), *source_signals, pose="driving", expression="absolute")
    assert betas.dtype == cameras.dtype == np.float32
    np.testing.assert_array_equal(betas, motion.expression)
    np.testing.assert_array_equal(cameras, motion.camera)


def test_drive_relative_pose_turns_the_source_head_by_the_drivers_turn(source_signals):
    source_beta, source_camera = source_signals
    yaws = np.array([0.0, 0.0, 10.0, -15.0])  # frame 0 is faceless: the reference is frame 1
    motion = Motion(
        np.zeros((4, 52), np.float32),
        np.stack([look_at_pose(float(y), 5.0).label() for y in yaws]),
        np.array([False, True, True, True]),
        25.0,
        "",
    )
    _, cameras = drive(driving_from(motion), source_beta, source_camera, pose="relative", expression="absolute")
    np.testing.assert_allclose(cameras[1], source_camera, atol=1e-5)  # no turn yet: the photo's own view
    turned = [label_angles(camera) for camera in cameras[2:]]
    source_yaw, source_pitch, _ = label_angles(source_camera)
    np.testing.assert_allclose([t[0] - source_yaw for t in turned], [10.0, -15.0], atol=1.5)
    np.testing.assert_allclose([t[1] for t in turned], source_pitch, atol=2.5)


@pytest.mark.parametrize(
    ("personalized", "expected"), [(True, ("relative", "relative")), (False, ("driving", "absolute"))]
)
def test_auto_modes_are_relative_only_for_a_personalised_model(personalized, expected):
    assert resolve_modes("auto", "auto", personalized) == expected
    assert resolve_modes("source", "absolute", personalized) == ("source", "absolute")  # explicit choices stay


def test_drive_relative_adds_the_drivers_change_from_the_level_matching_the_sources(source_signals):
    source_beta, source_camera = source_signals
    motion = random_motion(frames=41, first_valid=2)
    betas, _ = drive(driving_from(motion), source_beta, source_camera, pose="driving", expression="relative")
    reference = relative_reference(motion, source_beta)
    np.testing.assert_array_equal(betas, np.clip(source_beta[None] + motion.expression - reference[None], 0.0, 1.0))
    # Per blendshape, the reference sits at the source's level among the frames with a face (faceless ones ignored).
    below = (motion.expression[2:] <= reference[None]).mean(axis=0)
    np.testing.assert_allclose(below, source_beta, atol=1.5 / 39)
    assert betas.min() == 0.0 and betas.max() == 1.0, "the sum leaves [0, 1] somewhere and is clipped"


def test_relative_reference_on_analytic_cases():
    frames = np.linspace(0.0, 1.0, 11, dtype=np.float32)  # a driver whose smile sweeps 0, 0.1, ..., 1
    expression = np.zeros((11, 52), np.float32)
    expression[:, 0] = frames
    motion = Motion(expression, np.zeros((11, 25), np.float32), np.ones(11, bool), 25.0, "")
    source = np.zeros(52, np.float32)
    for level in (0.0, 0.3, 0.9, 1.0):
        source[0] = level
        assert relative_reference(motion, source)[0] == pytest.approx(level, abs=1e-6)  # quantile of a uniform sweep
        # A smiling source follows the driver down as well as up: the output sweeps the whole of [0, 1] too.
        betas, _ = drive(
            driving_from(motion), source, look_at_pose(0, 0).label(), pose="driving", expression="relative"
        )
        np.testing.assert_allclose(betas[:, 0], frames, atol=1e-6)


def test_drive_relative_without_any_valid_frame_uses_every_frame(source_signals):
    source_beta, source_camera = source_signals
    motion = random_motion(first_valid=FRAMES)
    betas, _ = drive(driving_from(motion), source_beta, source_camera, pose="driving", expression="relative")
    reference = np.array([np.quantile(motion.expression[:, k], source_beta[k]) for k in range(52)])
    np.testing.assert_allclose(betas, np.clip(source_beta[None] + motion.expression - reference[None], 0, 1), atol=1e-6)


def test_drive_pose_source_repeats_the_source_camera(source_signals):
    motion = random_motion()
    betas, cameras = drive(driving_from(motion), *source_signals, pose="source", expression="absolute")
    assert cameras.shape == (FRAMES, 25)
    np.testing.assert_array_equal(cameras, np.repeat(source_signals[1][None], FRAMES, axis=0))
    assert np.array_equal(betas, motion.expression), "the pose mode leaves β alone"


def test_drive_pose_frontal_uses_the_frontal_look_at_camera(source_signals):
    _, cameras = drive(driving_from(random_motion()), *source_signals, pose="frontal", expression="absolute")
    np.testing.assert_array_equal(cameras, np.repeat(look_at_pose(0.0, 0.0).label()[None], FRAMES, axis=0))


@pytest.mark.parametrize(("pose", "expression", "named"), [("bogus", "absolute", "--pose"), ("driving", "x", "--ex")])
def test_drive_rejects_unknown_modes(source_signals, pose, expression, named):
    with pytest.raises(UsageError, match=named):
        drive(driving_from(random_motion()), *source_signals, pose=pose, expression=expression)


# ----------------------------------------------------------------------------------------------- load_driving


def test_load_driving_reads_a_motion_file_and_cuts_it_to_max_frames(tmp_path):
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"stands in for the driving video")
    motion = random_motion(first_valid=1, source=str(video))
    path = save_motion(tmp_path / "motion.npz", motion)
    driving = load_driving(path, smoothing=1.0, max_frames=4)
    assert (driving.frames, driving.missing, driving.path, driving.video) == (4, 1, path, video)
    np.testing.assert_array_equal(driving.motion.expression, motion.expression[:4])
    np.testing.assert_array_equal(driving.motion.camera, motion.camera[:4])
    assert load_driving(path, smoothing=1.0, max_frames=None).frames == FRAMES


def test_load_driving_motion_file_whose_video_is_gone_has_no_video(tmp_path):
    path = save_motion(tmp_path / "motion.npz", random_motion(source=str(tmp_path / "deleted.mp4")))
    assert load_driving(path, smoothing=1.0, max_frames=None).video is None


def test_locate_driving_video_takes_an_absolute_path_as_stored(tmp_path):
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"video")
    assert locate_driving_video(str(video), tmp_path / "elsewhere" / "m.npz") == (video, None)


def test_locate_driving_video_resolves_an_old_relative_path_next_to_the_motion_file_never_in_the_cwd(
    tmp_path, monkeypatch
):
    beside, cwd = tmp_path / "motion", tmp_path / "cwd"
    beside.mkdir()
    cwd.mkdir()
    (cwd / "talk.mp4").write_bytes(b"another video")
    monkeypatch.chdir(cwd)
    video, problem = locate_driving_video("talk.mp4", beside / "m.npz")
    assert video is None and str(beside / "talk.mp4") in problem
    (beside / "talk.mp4").write_bytes(b"the driving video")
    assert locate_driving_video("talk.mp4", beside / "m.npz") == (beside / "talk.mp4", None)


def test_locate_driving_video_says_why_when_the_motion_file_names_none(tmp_path):
    video, problem = locate_driving_video("", tmp_path / "m.npz")
    assert video is None and "names no driving video" in problem


def test_with_frames_keeps_the_first_frames():
    driving = driving_from(random_motion(first_valid=1))
    cut = with_frames(driving, 3)
    assert (cut.frames, cut.missing) == (3, 1)
    np.testing.assert_array_equal(cut.motion.expression, driving.motion.expression[:3])


# ---------------------------------------------------------------------------------------------------- compose


def test_fit_square_keeps_the_aspect_ratio_and_centres_on_black():
    wide = np.full((50, 100, 3), 200, np.uint8)  # 2:1 → 64×32, centred vertically
    panel = fit_square(wide, 64)
    assert panel.shape == (64, 64, 3) and panel.dtype == np.uint8
    assert (panel[16:48] == 200).all()
    assert (panel[:16] == 0).all() and (panel[48:] == 0).all()
    tall = fit_square(np.full((100, 25, 3), 90, np.uint8), 64)  # 1:4 → 16×64, centred horizontally
    assert (tall[:, 24:40] == 90).all()
    assert (tall[:, :24] == 0).all() and (tall[:, 40:] == 0).all()


def test_side_by_side_is_three_panels_of_the_results_height():
    result = np.full((64, 64, 3), 50, np.uint8)
    source = np.full((512, 512, 3), 100, np.uint8)
    driver = np.full((256, 256, 3), 150, np.uint8)
    frame = side_by_side(source, driver, result)
    assert frame.shape == (64, 192, 3)
    assert [int(frame[:, 64 * i : 64 * (i + 1)].mean()) for i in range(3)] == [100, 150, 50]
    no_driver = side_by_side(source, None, result)
    assert no_driver.shape == (64, 192, 3) and (no_driver[:, 64:128] == 0).all()


def test_side_by_side_after_paste_back_has_square_side_panels():
    photo = np.zeros((512, 768, 3), np.uint8)  # a landscape photo, pasted back: panels are 512 wide
    frame = side_by_side(photo, np.zeros((256, 256, 3), np.uint8), photo)
    assert frame.shape == (512, 512 + 512 + 768, 3)


def test_face_mask_is_one_on_the_face_and_zero_at_the_corners(source_analysis):
    mask = face_mask(source_analysis.crop_landmarks, 256)
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert mask[118:138, 118:138].min() > 0.99, "the nose is at the crop centre"
    for corner in (mask[:8, :8], mask[:8, -8:], mask[-8:, :8], mask[-8:, -8:]):
        assert corner.max() < 1e-3


def test_paste_back_replaces_the_face_and_keeps_the_rest_of_the_photo(source_image, source_analysis):
    paste = PasteBack(source_image, source_analysis.transform, 256, source_analysis.crop_landmarks)
    black = np.zeros((RESOLUTION, RESOLUTION, 3), np.uint8)  # a render at the model's size, resized inside
    composite = paste(black)
    assert composite.shape == source_image.shape and composite.dtype == np.uint8
    nose_x, nose_y = np.round(source_analysis.landmarks[NOSE_TIP, :2]).astype(int)
    assert composite[nose_y - 3 : nose_y + 4, nose_x - 3 : nose_x + 4].max() <= 2
    np.testing.assert_array_equal(composite[:40, :40], source_image[:40, :40])
    np.testing.assert_array_equal(composite[-40:, -40:], source_image[-40:, -40:])


def test_grid_image_lays_views_out_row_by_row_with_blank_cells_at_the_end():
    frames = [np.full((4, 4, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    grid = grid_image(frames)
    assert grid.shape == (8, 12, 3)
    assert [int(grid[r * 4, c * 4, 0]) for r in range(2) for c in range(3)] == [10, 20, 30, 40, 50, 0]


def test_output_name_joins_the_stems():
    assert output_name(Path("a/photo.v2.jpg"), Path("b/talk.npz")) == "photo.v2__talk.mp4"


# --------------------------------------------------------------------------------------------------- Animator


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp8"}, "--precision must be"),
        ({"device": "tpu"}, "--device must be"),
        ({"batch_size": 0}, "--batch-size"),
        pytest.param({"precision": "bf16"}, "needs a GPU", marks=needs_no_cuda),
        pytest.param({"device": "cuda"}, "no CUDA device", marks=needs_no_cuda),
    ],
)
def test_animator_rejects_bad_settings_with_a_usage_error(tiny_model, kwargs, message):
    with pytest.raises(UsageError, match=message):
        Animator(tiny_model, **kwargs)


@needs_no_cuda
def test_animator_auto_device_is_the_cpu_without_cuda(tiny_model):
    assert choose_device("auto").type == "cpu"
    assert Animator(tiny_model).device.type == "cpu"


def test_animator_to_tensor_area_resizes_the_crop_into_minus_one_one(tiny_model):
    crop = np.zeros((256, 256, 3), np.uint8)
    crop[:, 128:] = 255
    tensor = Animator(tiny_model).to_tensor(crop)
    assert tensor.shape == (1, 3, RESOLUTION, RESOLUTION)
    assert tensor[..., :32].eq(-1.0).all() and tensor[..., 32:].eq(1.0).all()


@pytest.fixture(scope="module")
def render_inputs(tiny_model, source_analysis):
    """A source encoded once, and 7 frames of β and camera (7 is not a multiple of the batch size 3)."""
    motion = random_motion()
    encoded = Animator(tiny_model).encode(source_analysis.crop, source_analysis.expression)
    return encoded, motion.expression, motion.camera


def test_animator_render_yields_one_uint8_frame_per_driving_frame(tiny_model, render_inputs):
    frames = list(Animator(tiny_model, batch_size=3).render(*render_inputs))
    assert len(frames) == FRAMES
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.shape == (RESOLUTION, RESOLUTION, 3)
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 1.0, "β and camera change the render"


def test_animator_render_does_not_depend_on_the_batch_size(tiny_model, render_inputs):
    batched = np.stack(list(Animator(tiny_model, batch_size=3).render(*render_inputs))).astype(int)
    at_once = np.stack(list(Animator(tiny_model, batch_size=FRAMES).render(*render_inputs))).astype(int)
    assert np.abs(batched - at_once).max() <= 1


def test_animator_render_embedding_matches_render_through_the_encoder(tiny_model, render_inputs):
    encoded, expression, camera = render_inputs
    animator = Animator(tiny_model, batch_size=4)
    with torch.no_grad():
        embedding = tiny_model.expression_encoder(torch.from_numpy(expression))
    beta = torch.from_numpy(expression)
    direct = np.stack(list(animator.render_embedding(encoded, embedding, camera, beta))).astype(int)
    assert direct.shape == (FRAMES, RESOLUTION, RESOLUTION, 3)
    assert np.abs(direct - np.stack(list(animator.render(encoded, expression, camera)))).max() <= 1


def test_animate_source_side_by_side_needs_the_driving_video(tiny_model, source_image, source_analysis, tmp_path):
    driving = driving_from(random_motion())
    output = tmp_path / "out.mp4"
    options = AnimateOptions(side_by_side=True)
    with pytest.raises(InputError, match=r"motion\.npz: --side-by-side needs the driving video"):
        animate_source(Animator(tiny_model), Path("s.png"), source_image, source_analysis, driving, output, options)
    assert list(tmp_path.iterdir()) == []


def test_animate_source_reports_its_stages_in_order_and_every_frame(
    tiny_model, source_image, source_analysis, tmp_path
):
    driving = driving_from(random_motion())
    events: list[tuple] = []
    animate_source(
        Animator(tiny_model, batch_size=3),
        Path("s.png"),
        source_image,
        source_analysis,
        driving,
        tmp_path / "out.mp4",
        AnimateOptions(),
        on_frame=lambda done, total: events.append(("frame", done, total)),
        on_stage=lambda what, total: events.append(("stage", what, total)),
    )
    assert events[0] == ("stage", "rendering", FRAMES)
    assert events[1:-1] == [("frame", done, FRAMES) for done in range(1, FRAMES + 1)]
    assert events[-1][:2] == ("stage", "finishing the video") and events[-1][2] is None
    assert (tmp_path / "out.mp4").is_file()


def test_a_new_stage_restarts_the_bar_and_its_time_estimate():
    """The render bar used to inherit the driver analysis' 100% and showed an ETA of 0:00:00 throughout."""
    import io

    from rich.console import Console
    from rich.progress import Progress as RichProgress

    from export3d_cli.cli.progress import Progress

    with RichProgress(console=Console(file=io.StringIO(), force_terminal=True)) as rich_bar:
        bar = Progress(rich_bar, rich_bar.add_task("Analysing the driver", total=None))
        for done in range(1, 101):
            bar.update(done, 100)
        bar.stage("rendering", 40)
        (task,) = rich_bar.tasks
        assert (task.completed, task.total, task.description) == (0, 40, "rendering")
        assert task.speed is None and task.time_remaining is None, "no rate carried over from the last stage"
        bar.update(10, 40)
        assert task.completed == 10


def test_animator_render_keeps_the_driving_coefficients_within_the_models_expression_range(tiny_model, render_inputs):
    """A range collapsed onto the source's own coefficients: every driving expression then renders as the source's,
    so frames depend only on the camera (with the range unset, β changes them: the test above)."""
    import copy

    from export3d_cli.models.expression_range import ExpressionRange

    encoded, expression, camera = render_inputs
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        own = tuple(model.expression_encoder.coefficients_of(encoded.expression)[0].tolist())
    model.expression_range = ExpressionRange(own, own, frames=2)
    animator = Animator(model, batch_size=4)
    driven = np.stack(list(animator.render(encoded, expression, camera))).astype(int)
    source_expression = np.repeat(encoded.expression.numpy(), len(expression), axis=0)
    still = np.stack(list(animator.render(encoded, source_expression, camera))).astype(int)
    assert np.abs(driven - still).max() <= 1
    unclamped = np.stack(list(Animator(tiny_model, batch_size=4).render(encoded, expression, camera))).astype(int)
    assert np.abs(unclamped - still).mean() > 1.0
