"""Sound event detection (frame-level) for the downstream door: decoding frame scores into events and the
PSDS / event-F1 evaluation (`decode`, `evaluate`). Everything here runs on CPU with numpy and pandas.
"""
