"""twinframe's parity layer: framework-free orchestration of torch/Keras twin pairs.

This package's core never imports torch or tensorflow.  Each framework runs in
its own worker process (``parity.worker``) driven through an adapter module
(``parity.adapters.torch_adapter`` / ``parity.adapters.tf_adapter``); results
cross as files and are judged here with NumPy.
"""
