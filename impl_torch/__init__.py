"""PyTorch twin of the zoo. Imports torch and canon only."""

from impl_torch.registry import create_model, list_models
from impl_torch import models  # importing it registers every family's builder

__all__ = ["create_model", "list_models", "models"]
