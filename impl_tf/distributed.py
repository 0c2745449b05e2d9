"""Data parallelism in TensorFlow: a tf.distribute strategy, the project's own step under
``strategy.run``.  Twin: impl_torch/distributed.py.

``MultiWorkerMirroredStrategy`` over the processes TF_CONFIG describes (``run.py --nproc N``
writes one per process, a worker of a loopback cluster), or ``MirroredStrategy`` over N devices
of one process (``--replicas N``: N GPUs, or N logical CPU devices).  Keras' ``fit`` is not used:
under MultiWorkerMirroredStrategy it is broken in Keras 3 (keras issue 20585).  Every replica
trains its shard of each global batch (``canon.training.shard_rows``); the strategy's
all-reduce averages the gradients.  BatchNorm statistics: each replica updates its own copy
from its shard; ``sync_state`` copies replica 0's to every replica before an evaluation, so
every process evaluates and checkpoints replica 0's (as DDP broadcasts rank 0's buffers).  The
trainer starts every replica from replica 0's weights, as DDP does when it wraps a model.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf


class Engine:
    """The strategy, entered for the whole process: every variable made after it is mirrored."""

    def __init__(self, device: str, timeout_s: float, replicas: int = 1, sync_batchnorm: bool = False):
        self.timeout_s, self.sync_batchnorm = timeout_s, sync_batchnorm
        workers = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {}).get("worker", [])
        if len(workers) > 1:
            self.options = tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING,
                timeout_seconds=timeout_s)
            self.strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=self.options)
            self.rank = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
            self.kind, self.processes = "MultiWorkerMirroredStrategy", len(workers)
        else:
            self.options, self.rank, self.kind, self.processes = None, 0, "MirroredStrategy", 1
            self.strategy = tf.distribute.MirroredStrategy(_local_devices(device, replicas))
        self.size = self.strategy.num_replicas_in_sync
        self._scope = self.strategy.scope()
        self._scope.__enter__()

    def describe(self) -> dict:
        return {"engine": f"tf.distribute.{self.kind}", "backend": "collective ring all-reduce"
                if self.options else type(self.strategy.extended._cross_device_ops).__name__,
                "world_size": self.size, "processes": self.processes, "rank_of_writer": 0,
                "devices": list(self.strategy.extended.worker_devices), "sync_batchnorm": self.sync_batchnorm,
                "timeout_s": self.timeout_s}

    def per_replica(self, make):
        """A distributed value: ``make(replica)`` on each of this process's replicas (its global id)."""
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: make(context.replica_id_in_sync_group))

    def run(self, fn, args):
        return self.strategy.run(fn, args=args)

    def local(self, value):
        """The first local replica's value (after an all-reduce every replica holds the same)."""
        return tf.nest.map_structure(lambda v: self.strategy.experimental_local_results(v)[0], value)

    def sync_state(self, variables: list) -> None:
        """Replica 0's value of each variable on every replica, bit for bit (gathered, not summed)."""
        if variables:
            self._assign(variables, self.local(self._from_replica_zero(variables)))

    @tf.function
    def _from_replica_zero(self, variables):
        def replica(variables):
            context = tf.distribute.get_replica_context()
            return [context.all_gather(v[None], axis=0)[0] for v in variables]

        return self.run(replica, (variables,))

    @staticmethod
    def _assign(variables, values) -> None:
        for variable, value in zip(variables, values):
            variable.assign(value)

    def barrier(self) -> None:
        """Every replica reaches this before any goes on: an all-reduce of nothing."""
        self.local(self._all_reduce_nothing())

    @tf.function
    def _all_reduce_nothing(self):
        return self.run(lambda: tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                                tf.constant(0.0)), ())

    def close(self) -> None:
        self._scope.__exit__(None, None, None)


def _local_devices(device: str, replicas: int) -> list[str]:
    if device != "cpu":
        return [f"/gpu:{i}" for i in range(replicas)]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    return [f"/cpu:{i}" for i in range(replicas)]


def synchronized_moments(x, axes, count):
    """Mean, biased variance and sample count over every replica's batch together, in two passes
    (the mean, then the squared deviations from it) as one replica computes them; Keras' own
    synchronized moments take E(x^2) - E(x)^2, which cancels digits.  None outside a strategy of
    several replicas (the layer then takes its own batch's)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None

    def total_of(value):
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    total = total_of(count)
    mean = total_of(tf.reduce_sum(x, axis=axes, keepdims=True)) / total
    variance = total_of(tf.reduce_sum(tf.square(x - mean), axis=axes, keepdims=True)) / total
    return tf.squeeze(mean, axes), tf.squeeze(variance, axes), total
