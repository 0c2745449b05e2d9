"""twinframe's parity layer: framework-free orchestration of torch/Keras twin pairs.

This package's core never imports torch or tensorflow.  Each framework runs in
its own worker process (``parity.worker``) driven through an adapter module
(``parity.adapters.torch_adapter`` / ``parity.adapters.tf_adapter``); results
cross as files and are judged here with NumPy.
"""

from parity.api import TwinResult, assert_twins, check_twins, close_workers  # noqa: E402

__all__ = ["check_twins", "assert_twins", "close_workers", "TwinResult"]
