"""The model a single-photo command renders with: personalised (by file, or cached by default) or the base."""

from __future__ import annotations

from pathlib import Path

from export3d_cli.cli.progress import progress


def check_personalization_options(personalized: Path | None, no_personalize: bool) -> None:
    from export3d_cli.errors import UsageError

    if personalized is not None and no_personalize:
        raise UsageError("--personalized and --no-personalize contradict each other; give one")


def choose_model_for_photo(
    animator, photo: Path, personalized: Path | None, no_personalize: bool, *, face_index: int, quiet: bool
) -> None:
    """``Animator.prepare_photo`` with a progress bar (steps, ETA) while a photo is personalised. The options
    were checked (``check_personalization_options``) before the model was loaded."""
    with progress("Personalising the model to the photo (once per photo)", quiet=quiet, unit="steps") as bar:
        animator.prepare_photo(
            photo,
            personalized=personalized,
            personalize=not no_personalize,
            face_index=face_index,
            on_step=lambda step, total, _: bar.update(step, total),
        )
