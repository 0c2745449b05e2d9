"""PyTorch twin of the zoo. Imports torch and spec only."""

from impl_torch.registry import create_model, list_models

__all__ = ["create_model", "list_models"]
