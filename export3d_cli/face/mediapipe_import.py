"""Import MediaPipe without loading its plotting helpers and audio tasks, which export3d never uses.

Why: ``import mediapipe`` runs ``mediapipe/tasks/python/vision/__init__.py``, which imports ``drawing_styles`` and
``drawing_utils``, and ``drawing_utils`` imports ``matplotlib.pyplot`` at module level: about 0.7 s of every
command's start on a 2-core machine (``python -X importtime``; mediapipe 1.2.3, matplotlib 3.11), for drawing
functions that export3d never calls. ``mediapipe/tasks/python/__init__.py`` also imports the audio tasks, which load
the PortAudio library through ``sounddevice`` (0.1 s) for microphone input that export3d never records.

So for the duration of the first ``import mediapipe`` a finder at the front of ``sys.meta_path`` hands out those
modules with ``importlib.util.LazyLoader``: the import system creates them and binds them in their package as
usual, and their code (with matplotlib, or PortAudio) runs only when something reads an attribute of one — which
never happens in export3d, and happens transparently for anyone else in the same process who draws or records.
Every other module, MediaPipe's own included, is imported normally; if the modules are not where this version keeps
them, the finder finds nothing and MediaPipe imports as it always did.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

# MediaPipe's drawing helpers (only ever used to draw landmarks onto images) and its audio tasks.
LAZY_MODULES = frozenset(
    {
        "mediapipe.tasks.python.vision.drawing_utils",
        "mediapipe.tasks.python.vision.drawing_styles",
        "mediapipe.tasks.python.audio",
    }
)
_lock = threading.Lock()


class _LazyFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`LAZY_MODULES` where the path finder would, and loads them lazily."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LAZY_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def import_mediapipe() -> ModuleType:
    """``import mediapipe``, with its drawing helpers deferred (see the module docstring)."""
    if "mediapipe" not in sys.modules:
        with _lock:
            if "mediapipe" not in sys.modules:
                finder = _LazyFinder()
                sys.meta_path.insert(0, finder)
                try:
                    import mediapipe  # noqa: F401  (binds the package in sys.modules)
                finally:
                    sys.meta_path.remove(finder)
    return sys.modules["mediapipe"]
