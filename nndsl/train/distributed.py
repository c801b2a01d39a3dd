"""Data-parallel training under ``torchrun``: process group set-up and small collectives.

``torchrun --nproc_per_node 2 -m nndsl train SPEC --ddp`` (or ``--fsdp``) starts one process
per worker with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in the environment. Each
process trains on its share of every epoch's samples (``batch`` is per process); DDP averages
gradients. With ``--fsdp`` the model is one fully sharded unit (``fully_shard``): each process
keeps a shard of the parameters, gradients and optimizer state, the parameters are gathered for
each forward and backward, and checkpoints gather the whole state. gloo on CPU, NCCL on CUDA. Rank 0 alone prints and writes the run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from nndsl.errors import TrainError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False
    fsdp: bool = False          # fully sharded (FSDP2's fully_shard) instead of DDP

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(ddp: bool, device_type: str) -> Dist:
    if not ddp:
        return Dist()
    need = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    missing = [k for k in need if k not in os.environ]
    if missing:
        raise TrainError("--ddp and --fsdp need the environment torchrun sets up (missing "
                         + ", ".join(missing) + ")", code="E1222",
                         hint="run `torchrun --nproc_per_node 2 -m nndsl train SPEC --ddp`")
    import torch.distributed as dist
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank,
                                world_size=world)
    return Dist(rank, world, local, True)


def teardown(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


def all_sum(d: Dist, values: list[float], device) -> list[float]:
    if not d.active:
        return values
    import torch
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_cat(d: Dist, x):
    """Concatenate equal-shaped tensors from every process along dim 0 (rank order)."""
    if not d.active:
        return x
    import torch
    import torch.distributed as dist
    parts = [torch.empty_like(x) for _ in range(d.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def barrier(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist
        dist.barrier()
