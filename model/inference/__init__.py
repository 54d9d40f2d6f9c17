"""Inference: images -> padded batch (``preprocess``), the ``Predictor`` (``predictor``), raw
network outputs -> per-person results in image pixels (``postprocess``)."""
