"""Data parallelism in PyTorch: DistributedDataParallel over a torch.distributed process group.
Twin: impl_tf/distributed.py.

A process joins the group that torchrun (or ``run.py --nproc N``, through torch's own launcher)
describes in RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT: gloo on CPU, NCCL on CUDA.  Every
rank trains its shard of each global batch (``canon.training.shard_rows``); DDP averages the
gradients in buckets.  BatchNorm statistics: DDP sends rank 0's buffers to every rank before each
training forward, and ``sync_state`` does the same before an evaluation, so every rank evaluates
and checkpoints rank 0's statistics (those of rank 0's shards).
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

# DDP's default bucket size.  The buckets fix the order in which gradients are summed: with 2
# gloo ranks any order gives the same bits, with 4 or more the bucket size changes them.
BUCKET_CAP_MB = 25


class Engine:
    """This process's place in the group, and the engine's collectives."""

    def __init__(self, device: str, timeout_s: float, replicas: int = 1, sync_batchnorm: bool = False):
        if replicas != 1:
            raise ValueError("DDP runs one replica per process: start more processes (--nproc) instead")
        self.backend = "nccl" if device.startswith("cuda") else "gloo"
        if self.backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        self.timeout_s, self.sync_batchnorm = timeout_s, sync_batchnorm
        dist.init_process_group(self.backend, timeout=datetime.timedelta(seconds=timeout_s))
        self.rank, self.size = dist.get_rank(), dist.get_world_size()

    def describe(self) -> dict:
        """What the manifest records: everything that decides the order of the sums."""
        return {"engine": "torch DistributedDataParallel", "backend": self.backend, "world_size": self.size,
                "processes": self.size, "rank_of_writer": 0, "bucket_cap_mb": BUCKET_CAP_MB,
                "broadcast_buffers": True, "gradient_as_bucket_view": False, "static_graph": False,
                "sync_batchnorm": self.sync_batchnorm, "timeout_s": self.timeout_s}

    def wrap(self, net: torch.nn.Module) -> DistributedDataParallel:
        """DDP around ``net``; with ``sync_batchnorm`` its BatchNorms first become SyncBatchNorm
        (in place: the same parameters and buffers; torch runs it on GPUs only)."""
        if self.sync_batchnorm:
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        device_ids = [torch.cuda.current_device()] if self.backend == "nccl" else None
        # its default: rank 0's buffers go to every rank before each training forward
        return DistributedDataParallel(net, device_ids=device_ids, bucket_cap_mb=BUCKET_CAP_MB)

    def sum(self, value: float, dtype: torch.dtype) -> float:
        """The sum of one number over the ranks (the global batch's loss from the shards')."""
        tensor = torch.tensor([value], dtype=dtype, device=self._device())
        dist.all_reduce(tensor)
        return float(tensor[0])

    def sync_state(self, net: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank."""
        for buffer in net.buffers():
            dist.broadcast(buffer, src=0)

    def gather(self, array) -> list:
        """Every rank's value of a picklable object, in rank order."""
        gathered = [None] * self.size
        dist.all_gather_object(gathered, array)
        return gathered

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")


def launch(nproc: int, command: list[str], ports: list[int], poll_s: float, grace_s: float):
    """torch's own launcher (what torchrun runs), one node, no restarts: a failed rank ends the
    run; its rendezvous on the first of the free ``ports``.  Returns the exit status when every
    rank ended alike, else (the first failed rank, its exit code); repro/launch.py reports it."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"twinframe-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{ports[0]}", max_restarts=0,
                          monitor_interval=poll_s, start_method="spawn", shutdown_timeout=int(grace_s))
    try:
        elastic_launch(config, command[0])(*command[1:])
    except ChildFailedError as error:
        codes = {failure.exitcode for failure in error.failures.values()}
        if len(error.failures) == nproc and len(codes) == 1 and min(codes) > 0:
            return codes.pop()  # every rank alike: stopped on request, or interrupted
        rank, failure = error.get_first_failure()
        return rank, failure.exitcode
    return 0
