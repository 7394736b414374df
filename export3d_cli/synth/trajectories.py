"""Talking-like expression trajectories and smooth camera paths for one synthetic clip.

Speech opens the jaw in syllable-rate bursts (3-6 Hz) inside on/off speaking
segments; blinks are short random events (sometimes a wink); smiles, brows and
puckers drift slowly. Cameras follow EG3D's look-at sampler with yaw within
±35° and pitch within ±20°, moving smoothly around a per-clip base pose.
"""

from __future__ import annotations

import numpy as np

from export3d_cli.synth.face_rig import CONTROL_INDEX, CONTROL_NAMES

MAX_YAW = 35.0
MAX_PITCH = 20.0


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


def expression_trajectory(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Expression controls [T, 8] in [0, 1] (columns: CONTROL_NAMES)."""
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


def camera_trajectory(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Look-at angles [T, 2] (yaw, pitch) in degrees, within ±35° and ±20°."""
    base = np.array([rng.uniform(-20.0, 20.0), rng.uniform(-10.0, 10.0)])
    amplitude = np.array([rng.uniform(8.0, 18.0), rng.uniform(4.0, 9.0)])
    # The head moves across a good part of the range within every clip, however short: a source frame and a
    # driving frame of the same clip then differ in pose as they do in real talking-head video.
    sigma = max(frames / 4.0, fps * 0.25)
    path = base + amplitude * smooth_noise(rng, frames, sigma, dims=2)
    return np.clip(path, [-MAX_YAW, -MAX_PITCH], [MAX_YAW, MAX_PITCH])
