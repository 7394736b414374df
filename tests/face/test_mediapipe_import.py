"""MediaPipe is imported without its plotting helpers (export3d_cli.face.mediapipe_import).

Each check runs in a fresh interpreter: whether matplotlib is loaded is a property of the whole process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def run_fresh(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_mediapipe_imports_without_matplotlib_or_audio_and_both_still_work_on_first_use():
    result = run_fresh(
        """
        import json, sys
        from export3d_cli.face.mediapipe_import import import_mediapipe, _LazyFinder
        mp = import_mediapipe()
        from mediapipe.tasks.python import vision
        before = "matplotlib" in sys.modules
        audio_before = "sounddevice" in sys.modules
        finders_left = any(isinstance(f, _LazyFinder) for f in sys.meta_path)
        spec = vision.drawing_utils.DrawingSpec(color=(1, 2, 3))  # first use loads the module (and pyplot)
        style = vision.drawing_styles.get_default_face_mesh_contours_style()
        from mediapipe.tasks.python import audio
        audio_options = audio.AudioClassifierOptions.__name__  # loads the audio tasks (and sounddevice)
        print(json.dumps({
            "image_class": mp.Image.__name__,
            "matplotlib_before": before,
            "finders_left": finders_left,
            "colour": list(spec.color),
            "styles": len(style),
            "pyplot_after": "matplotlib.pyplot" in sys.modules,
            "audio_before": audio_before,
            "audio_options": audio_options,
        }))
        """
    )
    assert result.pop("styles") > 0
    assert result == {
        "image_class": "Image",
        "matplotlib_before": False,
        "finders_left": False,
        "colour": [1, 2, 3],
        "pyplot_after": True,
        "audio_before": False,
        "audio_options": "AudioClassifierOptions",
    }


def test_an_already_imported_mediapipe_is_returned_as_it_is():
    result = run_fresh(
        """
        import json, sys
        import mediapipe
        from export3d_cli.face.mediapipe_import import import_mediapipe
        print(json.dumps({"same": import_mediapipe() is mediapipe, "matplotlib": "matplotlib" in sys.modules}))
        """
    )
    assert result == {"same": True, "matplotlib": True}  # a plain import loads it: the comparison is live
