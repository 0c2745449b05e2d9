"""The twin's model families, one module each; importing this package imports them all, and so
registers each one's builder (``@register_family``)."""

from canon.models import import_family_modules

import_family_modules(__name__, __path__)
