"""Two CPU processes under torchrun (gloo, DDP) train exactly like one process with the same global batch.

Every process draws the same global batch and trains on its half; DDP averages the gradients and the generator
all-reduces its T_EMA update, so after a few steps the weights, the T_EMA buffer and the logged losses must equal
those of a single process. Rendering is deterministic and the density term (random points per sample) is off,
so the two runs compute the same function of the same data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from export3d_cli.config import preset
from export3d_cli.training.dataset import ClipDataset
from export3d_cli.training.distributed import ProcessGroup
from export3d_cli.training.generator_trainer import GeneratorTrainer
from export3d_cli.training.train_config import GENERATOR_PRESETS, with_overrides

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)

STEPS = 3
OVERRIDES = {
    "expression_encoder": "direct",
    "stochastic_render": False,
    "density_weight": 0.0,
    "batch_size": 4,
    "steps": STEPS,
    "seed": 0,
    "eval_every": 0,
    "checkpoint_every": 0,
}
TIMEOUT_S = 120

WORKER = """
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from safetensors.torch import save_file

from export3d_cli.training.dataset import ClipDataset
from export3d_cli.training.distributed import setup_process_group, teardown_process_group
from export3d_cli.training.generator_trainer import GeneratorTrainer
from export3d_cli.training.train_config import GENERATOR_PRESETS, with_overrides

dataset_root, run_dir, out_dir = (Path(arg) for arg in sys.argv[1:4])
config = with_overrides(GENERATOR_PRESETS["tiny"], **json.loads(sys.argv[4]))
group = setup_process_group("cpu")
assert group.world_size == 2 and torch.distributed.is_initialized(), "not launched by torchrun with 2 processes"
trainer = GeneratorTrainer(ClipDataset(dataset_root, resolution=int(sys.argv[5])), run_dir, config, group)
losses = []
trainer.train(lambda step, total, terms: losses.append({"step": step, **terms}))
state = {key: value.detach().contiguous() for key, value in trainer.state.model.state_dict().items()}
save_file(state, str(out_dir / f"rank{group.rank}.safetensors"))
(out_dir / f"losses{group.rank}.json").write_text(json.dumps(losses))
teardown_process_group()
"""


def _run_torchrun(script: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", EXPORT3D_DEBUG="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a local rendezvous on a free port
        "--nproc_per_node",
        "2",
        str(script),
        *args,
    ]
    # A session of its own, so a hung run can be killed with all its workers.
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish within {TIMEOUT_S} s:\n{output[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output, "")


def _loss_terms(records: list[dict]) -> list[dict]:
    return [{name: value for name, value in record.items() if name != "steps_per_s"} for record in records]


def _assert_close_tensors(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        # Relative to each tensor's size: summation order differs (two halves then an all-reduce).
        error = float((got[key].double() - value.double()).norm())
        scale = float(value.double().norm())
        assert error <= 1e-5 * scale + 1e-7, f"{key}: |Δ| = {error:.3g}, |x| = {scale:.3g}"


@pytest.fixture(scope="module")
def single_process(mini_dataset, tmp_path_factory) -> tuple[dict[str, torch.Tensor], list[dict]]:
    config = with_overrides(GENERATOR_PRESETS["tiny"], **OVERRIDES)
    group = ProcessGroup(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    dataset = ClipDataset(mini_dataset.root, resolution=preset("tiny").resolution)
    trainer = GeneratorTrainer(dataset, tmp_path_factory.mktemp("single") / "run", config, group)
    losses: list[dict] = []
    trainer.train(lambda step, total, terms: losses.append({"step": step, **terms}))
    return _snapshot(trainer), losses


def _snapshot(trainer: GeneratorTrainer) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in trainer.state.model.state_dict().items()}


def test_two_process_ddp_training_equals_one_process_with_the_global_batch(mini_dataset, single_process, tmp_path):
    script = tmp_path / "ddp_worker.py"
    script.write_text(WORKER)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [
        str(mini_dataset.root),
        str(tmp_path / "run"),
        str(out_dir),
        json.dumps(OVERRIDES),
        str(preset("tiny").resolution),
    ]
    result = _run_torchrun(script, args, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stdout[-4000:]

    expected_state, expected_losses = single_process
    ranks = [load_file(str(out_dir / f"rank{rank}.safetensors")) for rank in (0, 1)]
    losses = [json.loads((out_dir / f"losses{rank}.json").read_text()) for rank in (0, 1)]

    # DDP keeps the two replicas identical, buffers (T_EMA) included.
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{key} differs between the ranks"
    assert _loss_terms(losses[0]) == _loss_terms(losses[1]), "logged losses are averaged over the processes"

    # ... and equal to the single process with the whole batch.
    _assert_close_tensors(ranks[0], expected_state)
    t_ema = ranks[0]["generator.triplane_ema"]
    assert t_ema.abs().sum() > 0
    torch.testing.assert_close(t_ema, expected_state["generator.triplane_ema"], rtol=1e-5, atol=1e-7)
    # Training moved the weights by much more than the tolerance, so the comparison above means something.
    initial = _initial_weights()
    moved = [key for key in initial if not torch.allclose(initial[key], expected_state[key], atol=1e-4)]
    assert "generator.to_triplane.1.weight" in moved and "generator.triplane_ema" in moved

    got, expected = _loss_terms(losses[0]), _loss_terms(expected_losses)
    assert [record["step"] for record in got] == list(range(1, STEPS + 1))
    for step_got, step_expected in zip(got, expected, strict=True):
        assert step_got.keys() == step_expected.keys()
        for name, value in step_got.items():
            assert value == pytest.approx(step_expected[name], rel=1e-5, abs=1e-7), f"step {step_got['step']} {name}"
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file(), "rank 0 saves the model"


def _initial_weights() -> dict[str, torch.Tensor]:
    """The generator weights before any step (same seed and construction as the trainers)."""
    from export3d_cli.training.generator_trainer import build_state

    config = with_overrides(GENERATOR_PRESETS["tiny"], **OVERRIDES)
    return build_state(config, None, torch.device("cpu")).model.state_dict()
