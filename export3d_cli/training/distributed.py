"""One process or many: ``torchrun`` + DistributedDataParallel (NCCL on GPUs, gloo on CPU).

Every process draws the same *global* batch from an identically seeded
generator and trains on its own slice, so N processes with batch B/N each see
exactly the batch a single process with batch B would — and DDP's gradient
average equals that single process's gradient (the loss is a per-sample mean).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from export3d_cli.errors import UsageError


@dataclass(frozen=True)
class ProcessGroup:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, global_batch: int) -> slice:
        """This process's slice of a global batch (equal slices; the batch must divide evenly)."""
        if global_batch % self.world_size:
            raise UsageError(f"--batch-size {global_batch} must be divisible by the number of processes")
        size = global_batch // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)


def setup_process_group(device: str = "auto") -> ProcessGroup:
    """Join the torchrun group if launched by torchrun (RANK/WORLD_SIZE set), else a group of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return ProcessGroup(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)


def teardown_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Average across processes (identity in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value
