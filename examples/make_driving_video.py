"""Regenerate ``examples/driving.mp4``: a synthetic talking head (export3d synth's renderer) with a voice-like track.

The head is procedural (no real person); its speech-like jaw motion drives the loudness of a buzzy 130 Hz
tone, so the audio follows the mouth. Deterministic: running it again gives the same frames.

    python examples/make_driving_video.py [OUTPUT]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np


def main(output: Path) -> None:
    import imageio_ffmpeg

    from export3d_cli.face.head_pose import look_at_pose
    from export3d_cli.media.video_writer import VideoWriter
    from export3d_cli.synth.dataset_generator import SYNTH_FPS
    from export3d_cli.synth.head_renderer import SyntheticHead, random_lighting
    from export3d_cli.synth.identity import random_identity
    from export3d_cli.synth.textures import background
    from export3d_cli.synth.trajectories import camera_trajectory, expression_trajectory

    frames, size, rate = 100, 256, 16000
    rng = np.random.default_rng(2026)
    head = SyntheticHead(random_identity(7, 2026))
    controls = expression_trajectory(rng, frames, SYNTH_FPS)
    angles = camera_trajectory(rng, frames, SYNTH_FPS) * 0.6  # a calm speaker
    lighting = random_lighting(rng)
    backdrop = background(rng, size, size)

    samples = int(frames / SYNTH_FPS * rate)
    time = np.arange(samples) / rate
    jaw = np.interp(time, np.arange(frames) / SYNTH_FPS, controls[:, 0])
    voice = sum(np.sin(2 * np.pi * 130 * k * time) / k for k in range(1, 12))
    audio = (0.25 * voice / np.abs(voice).max() * np.clip(jaw * 1.5, 0, 1)).astype(np.float32)
    with tempfile.TemporaryDirectory() as work:
        silent = Path(work) / "video.mp4"
        with VideoWriter(silent, fps=SYNTH_FPS, width=size, height=size) as writer:
            for control, (yaw, pitch) in zip(controls, angles, strict=True):
                writer.write(
                    head.render(control, look_at_pose(float(yaw), float(pitch)).label(), size, lighting, backdrop)
                )
        sound = Path(work) / "voice.wav"
        with wave.open(str(sound), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(rate)
            handle.writeframes((audio * 32767).astype("<i2").tobytes())
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(silent), "-i", str(sound)]
        command += ["-c:v", "copy", "-c:a", "aac", "-b:a", "96k", "-shortest", "-map_metadata", "-1", str(output)]
        subprocess.run(command, check=True)
    print(output)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("driving.mp4"))
