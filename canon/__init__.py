"""Framework-free specification shared by both twins.

Nothing under ``spec`` may import torch or tensorflow: architecture configs,
canonical names, layout conversions, tolerances and the canonical weight format
live here so that both implementations (and the parity layer) agree on them.
"""

__version__ = "0.1.0"
