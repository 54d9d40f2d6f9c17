"""Training DDP.

| module | job |
|---|---|
| ``objective`` | the loss of one batch (eq. 7-12), through ``DDP``'s own stages |
| ``losses`` | the loss terms (focal, GIoU, centerness, dice, part, U/V, smoothness) |
| ``fcos_targets`` | FCOS target assignment (positives, boxes, centerness) |
| ``settings`` | ``TrainSettings`` and ``DataSettings``: the one home of training defaults |
| ``data`` | training batches from a DensePose-COCO directory |
| ``schedule`` | SGD, warm-up and step decay |
| ``state`` | resumable checkpoints |
| ``loop`` | the loop tying them together, with a progress bar |
| ``recipe`` | render data, train, score the held-out set, export: the shipped weights' command |
"""
