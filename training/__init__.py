"""Offline training: datasets from tickets (and feedback), the intent trainer, evaluation and the promotion gate.

Reads the store and the knowledge base, writes model versions to the registry; never imports ``bot``.
"""
