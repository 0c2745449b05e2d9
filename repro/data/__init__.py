"""The data of training runs, prepared on the NumPy side for both frameworks: datasets and their
files (``datasets``), batch order and augmentation (``augment``)."""
