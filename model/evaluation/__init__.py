"""Evaluation following the DensePose protocol: GPS-based AP/AR and instance-mask AP.

| module | job |
|---|---|
| ``geodesic`` | geodesic distances on the body mesh between chart points (I, U, V), cached |
| ``gps`` | geodesic point similarity of detections to annotated persons (κ per part) |
| ``matching`` | COCO-style AP/AR from precomputed similarities (pycocotools' ``COCOeval``) |
| ``evaluator`` | ``DensePoseEvaluator`` / ``evaluate``: predictions vs a DensePose-COCO set |

Needs the ``eval`` extra (pycocotools, scipy); the body-mesh geodesics need ``data`` (anny).
"""
