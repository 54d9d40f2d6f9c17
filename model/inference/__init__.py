"""Inference: image files and bytes -> RGB arrays, strictly (``images``), images -> padded
batch (``preprocess``), the ``Predictor`` (``predictor``), raw network outputs -> per-person
results in image pixels (``postprocess``)."""
