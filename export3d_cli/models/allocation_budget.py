"""Building a model from an untrusted config under a ceiling on the values its constructors may allocate.

``config.json`` is input from anywhere: ``width: 4096`` or ``depth: 64`` describe a model of
billions of values that would be allocated (and randomly initialised) before the weights file
could be compared with it. While a model is built inside ``allocation_budget``, every call of a
tensor constructor (``torch.empty``, ``zeros``, ``randn``, ``full``, ``arange``, ...) is seen
by a ``TorchFunctionMode`` *before* it runs; the sizes requested are added up and the build is
refused with one ``WeightsError`` as soon as the total passes the ceiling. Parameters and buffers
are all made by constructors, so the total bounds the model's size (and the ceiling stops a
``depth: 1e9`` loop after a bounded number of layers).

Why not torch's ``meta`` device, which allocates nothing: initialising meta tensors runs torch's
Python reference kernels, whose first use imports ``torch._dynamo`` and sympy — about one second
added to every start of every command, for a check that must run on every start.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

from export3d_cli.errors import WeightsError

# Constructors whose result size is given by a shape argument: (*ints), (tuple), size=...
_SHAPED = {
    torch.empty,
    torch.zeros,
    torch.ones,
    torch.rand,
    torch.randn,
    torch.full,
    torch.empty_strided,
    torch.randint,
}
_RANGED = {torch.arange, torch.range}
_LIKE = {torch.empty_like, torch.zeros_like, torch.ones_like, torch.full_like, torch.rand_like, torch.randn_like}


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list, torch.Size)) and all(isinstance(v, int) for v in value)


def requested_values(func, args: tuple, kwargs: dict) -> int:
    """How many values a constructor call will allocate (0 for calls that copy existing data)."""
    if func in _SHAPED:
        if "size" in kwargs and _is_shape(kwargs["size"]):
            return math.prod(kwargs["size"])
        shape = next((a for a in args if _is_shape(a)), None)  # randint(high, size), full(size, value)
        if shape is None:  # empty(2, 3): the leading integers are the shape
            shape = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
            shape = shape if func in (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn) else []
        return math.prod(shape) if shape else 0
    if func in _LIKE:
        return args[0].numel() if args and isinstance(args[0], torch.Tensor) else 0
    if func in _RANGED:
        numbers = [float(a) for a in args if isinstance(a, (int, float))]
        start, end, step = (0.0, numbers[0], 1.0) if len(numbers) == 1 else (*numbers[:2], *(numbers[2:3] or [1.0]))
        return max(0, math.ceil((end - start) / step)) if step else 0
    if func in (torch.linspace, torch.logspace):
        steps = kwargs.get("steps", args[2] if len(args) > 2 else 0)
        return int(steps) if isinstance(steps, int) else 0
    if func is torch.eye:
        n = args[0] if args else kwargs.get("n", 0)
        m = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("m", n)
        return int(n) * int(m)
    return 0


class _ConstructorBudget(TorchFunctionMode):
    def __init__(self, max_values: int, what: str) -> None:
        super().__init__()
        self.max_values, self.what, self.values = max_values, what, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.values += requested_values(func, args, kwargs)
        if self.values > self.max_values:
            raise WeightsError(
                f"{self.what}: describes a model of over {self.max_values / 1e6:,.1f} M values, more than its "
                "weights can fill; the config is damaged or not for this program"
            )
        return func(*args, **kwargs)


@contextmanager
def allocation_budget(max_values: int, what: str) -> Iterator[None]:
    """Within the block, tensor constructors may request at most ``max_values`` values in all."""
    with _ConstructorBudget(max_values, what):
        yield
