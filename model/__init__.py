"""Direct Dense Pose: the network, its inference, outputs, training, data and evaluation.

| package / module | what it holds |
|---|---|
| ``network/`` | the network's parts (paper Fig. 2) and ``DDP``, the network they make |
| ``inference/`` | images -> batch -> network -> per-person results (the ``Predictor``) |
| ``outputs/`` | results as files: PNG / NPZ / JSON encoders, overlays |
| ``training/`` | the objective, losses, target assignment, the loop, the recipe |
| ``data/`` | the synthetic DensePose data engine and the DensePose-COCO reader |
| ``evaluation/`` | GPS AP/AR and mask AP (the DensePose protocol) |
| ``temporal/`` | optical flow and warped-logit smoothing across frames (paper section 4) |
| ``video/`` | clips in, smoothed dense pose, tracks, NPZ and H.264 videos out |
| ``config`` | the network's configuration (one frozen dataclass per concern) |
| ``structures`` | the dataclasses passed between stages (raw outputs, targets, results) |
| ``checkpoint``, ``device``, ``paths`` | weights on disk, device and precision, where files are |

Layers (``make lint`` checks them): nothing here imports ``service``, ``benchmarks`` or
``load_tests``, and no two sibling modules or packages import each other.
"""
