"""Benchmarks of lib_latentfix next to the source post's behaviour (not shipped: `python -m benchmarks.bench`)."""
