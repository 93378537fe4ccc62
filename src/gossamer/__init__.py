"""Gossamer: a service mesh with Envoy as its data plane and a Python control plane."""

__version__ = "0.1.0"
