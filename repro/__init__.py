"""Training runs (repro/run.py, one recipe in one framework) and their comparison (repro/compare.py)."""
