"""Labelling recordings with a trained downstream model (`atst-downstream predict`).

  predictor  the model file's inference path: stored encoder, recorded read-out, head, softmax / sigmoid; windows
  files      files and folders in, batched by length, decoded batch by batch, bad files skipped and named once
  output     the CSV (top labels with probabilities) or JSON, written atomically
"""
from .files import FilePrediction, PredictionReport, find_inputs, predict_files
from .output import FORMATS, write_predictions
from .predictor import AGGREGATES, CLIP_KINDS, Predictor, window_starts

__all__ = ["AGGREGATES", "CLIP_KINDS", "FORMATS", "FilePrediction", "PredictionReport", "Predictor", "find_inputs",
           "predict_files", "window_starts", "write_predictions"]
