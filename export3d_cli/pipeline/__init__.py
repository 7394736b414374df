"""Inference orchestration: driving signals, the Animator (model side), composition and output writing."""

from export3d_cli.pipeline.animate_job import AnimateOptions, JobResult, animate_source, output_name
from export3d_cli.pipeline.animator import Animator, choose_device
from export3d_cli.pipeline.driving import Driving, drive, load_driving

__all__ = [
    "AnimateOptions",
    "Animator",
    "Driving",
    "JobResult",
    "animate_source",
    "choose_device",
    "drive",
    "load_driving",
    "output_name",
]
