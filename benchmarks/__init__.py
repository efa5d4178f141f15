"""The benchmark suite of commbox-async: ``python -m benchmarks.run_all`` (``make bench``)."""
