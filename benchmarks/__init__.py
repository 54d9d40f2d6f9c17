"""Benchmarks (not timed tests): forward time by stage, sparse vs dense IUV branch.

Run as modules, e.g. ``python -m benchmarks.stages --out docs/benchmarks``; results and the
exact commands that made them are indexed in ``docs/benchmarks/README.md``.
"""
