"""The framework-free contract between the twins.

Nothing under ``canon`` may import torch or tensorflow: model configs and names, canonical
weight names and layouts, the canonical weight format, tolerances and the training contract live
here so that both implementations (and the parity layer) agree on them.
"""

__version__ = "0.1.0"
