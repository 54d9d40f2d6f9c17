"""The DDP network (paper Fig. 2), one module per part.

| module | part |
|---|---|
| ``ddp`` | ``DDP``: the stages in order, given predicted or ground-truth instances; ``build_ddp`` |
| ``backbone`` | feature extractor + FPN (P2..P5) |
| ``aggregation`` | X_agg: every FPN level at 1/4 scale, summed |
| ``instance_branch`` | CondInst: FCOS heads (``fcos_head``), dynamic mask heads |
| ``detection`` | candidates -> box NMS -> mask NMS: the detections the IUV branch runs on |
| ``iuv_branch`` | the global IUV branch: sparse residual blocks with IAN (``ian``), 75 logits |
| ``sparse/`` | submanifold sparse convolution behind one interface (torch, spconv, dense) |
| ``layers`` | small shared layers |
"""
