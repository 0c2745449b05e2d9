"""An adapter whose import fails, as a worker with a broken framework install does."""

raise ImportError("simulated broken framework install")
