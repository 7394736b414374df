"""Expression trajectories and smooth camera paths for one synthetic clip.

Two expression ranges (``EXPRESSION_RANGES``):

- ``speech``: talking. Speech opens the jaw in syllable-rate bursts (3-6 Hz) inside on/off speaking segments;
  blinks are short random events (sometimes a wink); smiles, brows and puckers drift slowly around a per-clip
  level. Within a one-second clip the smile and brows barely change.
- ``full``: a mix of talking clips and *expression* clips that move between held expressions drawn from the
  whole human range -- wide-open mouth, laughs, broad and one-sided smiles, closed and squinting eyes, winks,
  raised and furrowed brows, puckers, shouts -- so that two frames of one clip can differ in every control.
  A generator trained on talking clips alone learns that copying the source's expression costs little.

Cameras follow EG3D's look-at sampler with yaw within ±35° and pitch within ±20°, moving smoothly around a
per-clip base pose.
"""

from __future__ import annotations

import numpy as np

from export3d_cli.synth.face_rig import CONTROL_INDEX, CONTROL_NAMES

MAX_YAW = 35.0
MAX_PITCH = 20.0

EXPRESSION_RANGES = ("speech", "full")
# Share of ``full``-range clips that are expression clips (the rest talk): talking is what drivers mostly do, so
# it stays in the mix.
EXPRESSION_CLIP_SHARE = 0.6


def smooth_noise(rng: np.random.Generator, frames: int, sigma_frames: float, dims: int = 1) -> np.ndarray:
    """Gaussian-smoothed white noise [T, dims] with unit variance per sample (stationary: no clip-wide rescaling)."""
    if frames == 0:
        return np.zeros((0, dims))
    sigma = max(sigma_frames, 0.5)
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    white = rng.normal(size=(frames + 2 * radius, dims))
    smooth = np.stack([np.convolve(white[:, d], kernel, mode="valid") for d in range(dims)], axis=1)
    # Divide by the filter's own gain, not the sample std: a sample std would inflate a clip's common offset and
    # pin short clips to the angle limits.
    return smooth / np.sqrt(np.sum(kernel**2))


def _events(rng: np.random.Generator, frames: int, fps: float, rate: float, duration: float) -> np.ndarray:
    """[T] in [0, 1]: random events (Poisson, ``rate`` per second) with a fast-rise, slower-fall profile."""
    signal = np.zeros(frames)
    if frames == 0:
        return signal
    time = np.arange(frames) / fps
    start = rng.exponential(1.0 / rate) * rng.random()
    while start < time[-1] + duration:
        rise, fall = 0.35 * duration, 0.65 * duration
        up = np.clip((time - start) / rise, 0.0, 1.0)
        down = np.clip(1.0 - (time - start - rise) / fall, 0.0, 1.0)
        signal = np.maximum(signal, np.where(time < start + rise, up, down) * (time >= start))
        start += duration + rng.exponential(1.0 / rate)
    return signal


def expression_trajectory(
    rng: np.random.Generator, frames: int, fps: float, expression_range: str = "speech"
) -> np.ndarray:
    """Expression controls [T, 8] in [0, 1] (columns: CONTROL_NAMES) for one clip of ``expression_range``."""
    if expression_range not in EXPRESSION_RANGES:
        raise ValueError(f"expression range must be one of {EXPRESSION_RANGES}, got {expression_range!r}")
    if expression_range == "full" and rng.random() < EXPRESSION_CLIP_SHARE:
        return held_expression_trajectory(rng, frames, fps)
    return speech_trajectory(rng, frames, fps)


def speech_trajectory(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Talking controls [T, 8] in [0, 1]: syllable-rate jaw, blinks, slowly drifting smile, brows and pucker."""
    controls = np.zeros((frames, len(CONTROL_NAMES)))
    if frames == 0:
        return controls
    time = np.arange(frames) / fps
    speaking = np.zeros(frames)
    t = rng.uniform(-1.0, 0.5)
    while t < time[-1] + 1.0:
        length = rng.uniform(0.6, 2.5)
        speaking = np.maximum(speaking, ((time >= t) & (time < t + length)).astype(float))
        t += length + rng.uniform(0.2, 1.2)
    if frames >= 3:
        speaking = np.convolve(speaking, np.ones(3) / 3, mode="same")
    syllable_rate = rng.uniform(3.0, 6.0)
    phase = np.cumsum(2 * np.pi * syllable_rate * (1 + 0.25 * smooth_noise(rng, frames, fps * 0.5)[:, 0]) / fps)
    syllables = (0.5 + 0.5 * np.sin(phase + rng.uniform(0, 2 * np.pi))) ** 1.5
    loudness = rng.uniform(0.35, 1.0)
    controls[:, CONTROL_INDEX["jaw_open"]] = speaking * syllables * loudness * (0.6 + 0.4 * rng.random(frames) ** 0.3)

    smile_base = rng.uniform(0.0, 0.8) if rng.random() < 0.55 else 0.0
    shared = smile_base + 0.25 * smooth_noise(rng, frames, fps * 1.5)[:, 0]
    asymmetry = 0.12 * smooth_noise(rng, frames, fps * 1.0, dims=2)
    smirk = rng.uniform(-0.5, 0.5) if rng.random() < 0.2 else 0.0
    controls[:, CONTROL_INDEX["smile_left"]] = shared + asymmetry[:, 0] + smirk
    controls[:, CONTROL_INDEX["smile_right"]] = shared + asymmetry[:, 1] - smirk

    blinks = _events(rng, frames, fps, rate=rng.uniform(0.15, 0.5), duration=rng.uniform(0.15, 0.3))
    controls[:, CONTROL_INDEX["blink_left"]] = blinks
    controls[:, CONTROL_INDEX["blink_right"]] = blinks
    if rng.random() < 0.15:
        wink = _events(rng, frames, fps, rate=0.4, duration=0.5)
        controls[:, CONTROL_INDEX["blink_left" if rng.random() < 0.5 else "blink_right"]] += wink

    brows = rng.uniform(-0.3, 0.4) + 0.5 * smooth_noise(rng, frames, fps * 0.8)[:, 0]
    controls[:, CONTROL_INDEX["brow_raise"]] = brows
    controls[:, CONTROL_INDEX["brow_lower"]] = -brows
    if rng.random() < 0.35:
        controls[:, CONTROL_INDEX["pucker"]] = rng.uniform(0.4, 1.0) * _events(rng, frames, fps, 0.4, 0.8)
    return np.clip(controls, 0.0, 1.0)


# Expressions a clip moves between: control name -> (low, high) of a uniform draw; controls not named stay near 0.
# Intensities reach the rig's full range (1.0), where the face pipeline measures e.g. jawOpen 0.3-0.75 and
# eyeBlink ~0.7 depending on the identity.
EXPRESSION_ARCHETYPES: dict[str, dict[str, tuple[float, float]]] = {
    "neutral": {},
    "open_mouth": {"jaw_open": (0.6, 1.0)},
    "laugh": {
        "jaw_open": (0.3, 0.8),
        "smile_left": (0.6, 1.0),
        "smile_right": (0.6, 1.0),
        "blink_left": (0.2, 0.5),
        "blink_right": (0.2, 0.5),
    },
    "broad_smile": {"smile_left": (0.6, 1.0), "smile_right": (0.6, 1.0)},
    "one_sided_smile": {"smile_left": (0.6, 1.0), "smile_right": (0.0, 0.15)},
    "eyes_closed": {"blink_left": (0.85, 1.0), "blink_right": (0.85, 1.0)},
    "squint": {"blink_left": (0.35, 0.65), "blink_right": (0.35, 0.65)},
    "wink": {"blink_left": (0.85, 1.0), "smile_left": (0.0, 0.5)},
    "surprise": {"brow_raise": (0.7, 1.0), "jaw_open": (0.2, 0.7)},
    "raised_brows": {"brow_raise": (0.6, 1.0)},
    "frown": {"brow_lower": (0.6, 1.0), "blink_left": (0.0, 0.35), "blink_right": (0.0, 0.35)},
    "pucker": {"pucker": (0.6, 1.0)},
    "shout": {"jaw_open": (0.7, 1.0), "brow_lower": (0.3, 0.8)},
}
# One-sided archetypes are mirrored half of the time (left <-> right).
_MIRROR = {
    "smile_left": "smile_right",
    "smile_right": "smile_left",
    "blink_left": "blink_right",
    "blink_right": "blink_left",
}


def _archetype_controls(rng: np.random.Generator, name: str) -> np.ndarray:
    """Controls [8] of one draw of archetype ``name`` (a little noise on every control it does not set)."""
    controls = np.clip(rng.normal(0.0, 0.05, size=len(CONTROL_NAMES)), 0.0, None)
    mirror = rng.random() < 0.5
    for control, (low, high) in EXPRESSION_ARCHETYPES[name].items():
        target = _MIRROR.get(control, control) if mirror else control
        controls[CONTROL_INDEX[target]] = rng.uniform(low, high)
    return controls


def held_expression_trajectory(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Controls [T, 8] in [0, 1] moving between held expressions (0.12-0.4 s holds, 0.08-0.2 s smoothstep moves).

    Consecutive expressions are distinct archetypes, so even a one-second clip visits two to four different
    faces; the first is drawn at a random point of its hold so clips do not all start on a hold.
    """
    names = list(EXPRESSION_ARCHETYPES)
    controls = np.zeros((frames, len(CONTROL_NAMES)))
    if frames == 0:
        return controls
    time = np.arange(frames) / fps
    previous_name = names[int(rng.integers(len(names)))]
    previous = _archetype_controls(rng, previous_name)
    t = -rng.uniform(0.0, 0.4)
    while t < time[-1]:
        hold, move = rng.uniform(0.12, 0.4), rng.uniform(0.08, 0.2)
        name = names[int(rng.integers(len(names) - 1))]
        name = name if name != previous_name else names[-1]  # a different archetype, uniformly among the rest
        following = _archetype_controls(rng, name)
        held = (time >= t) & (time < t + hold)
        controls[held] = previous
        moving = (time >= t + hold) & (time < t + hold + move)
        progress = (time[moving] - t - hold) / move
        ease = progress * progress * (3 - 2 * progress)  # smoothstep: no velocity jump at either end
        controls[moving] = previous + ease[:, None] * (following - previous)
        previous_name, previous, t = name, following, t + hold + move
    # People keep blinking while they make faces.
    blinks = _events(rng, frames, fps, rate=rng.uniform(0.15, 0.5), duration=rng.uniform(0.15, 0.3))
    for eye in ("blink_left", "blink_right"):
        controls[:, CONTROL_INDEX[eye]] = np.maximum(controls[:, CONTROL_INDEX[eye]], blinks)
    return np.clip(controls, 0.0, 1.0)


def camera_trajectory(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Look-at angles [T, 2] (yaw, pitch) in degrees, within ±35° and ±20°."""
    base = np.array([rng.uniform(-20.0, 20.0), rng.uniform(-10.0, 10.0)])
    amplitude = np.array([rng.uniform(8.0, 18.0), rng.uniform(4.0, 9.0)])
    # The head moves across a good part of the range within every clip, however short: a source frame and a
    # driving frame of the same clip then differ in pose as they do in real talking-head video.
    sigma = max(frames / 4.0, fps * 0.25)
    path = base + amplitude * smooth_noise(rng, frames, sigma, dims=2)
    return np.clip(path, [-MAX_YAW, -MAX_PITCH], [MAX_YAW, MAX_PITCH])
