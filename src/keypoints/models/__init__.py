"""Keypoint models: one file per model, shared helpers in ops.py."""
