"""Batch transform: how transform jobs read their input objects and feed them to the model."""
