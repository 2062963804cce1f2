"""The command line and the wiring: the layer above ``bot`` (serving) and ``training`` (retraining).

Imports flow one way: ``core`` <- ``retrieval`` <- {``bot``, ``training``} <- ``csbot``; ``bot`` and
``training`` never import each other (tests/test_layers.py checks it).
"""
