"""Gossamer's benchmarks. Each public module here is one benchmark with ``main(argv) -> int``.

``python -m bench.run`` runs them all; results go to ``bench/results/``.
"""
