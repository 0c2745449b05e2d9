"""Model registry: every zoo model is a name, a family and a config (data, not code).

Names are registered beside their config class (``@register_models`` in each family module); this
package imports every module in it, so the table is complete.  Each twin registers a builder per
family and resolves names here, so ``create_model("resnet18", num_classes=10)`` means the same
network in both.
"""

from __future__ import annotations

from canon.models._registry import (IMAGENET, INCEPTION, OPENAI_CLIP, Builders, MeanStd, fed_size_option,
                                    import_family_modules, list_models, mean_std, register_models, resolve)

import_family_modules(__name__, __path__)

__all__ = ["IMAGENET", "INCEPTION", "OPENAI_CLIP", "Builders", "MeanStd", "fed_size_option", "import_family_modules",
           "list_models", "mean_std", "register_models", "resolve"]
