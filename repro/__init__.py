"""Training pipelines and run records (repro/run.py, repro/compare.py) — see the open issues."""
