"""Benchmarks of the Priority Localities Index (``make bench``; see :mod:`benchmarks.run`)."""
