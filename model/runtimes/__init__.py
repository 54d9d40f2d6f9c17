"""Runtimes: what runs the network's forward pass, each behind one interface
(``base.Runtime``: padded images in, ``DDPOutput`` out), so that preprocessing and the
per-person post-processing stay one code path for all of them.

| module | runtime |
|---|---|
| ``base`` | the ``Runtime`` interface; an exported graph's outputs -> ``DDPOutput`` |
| ``torch_backend`` | ``torch`` (eager fp32), ``torch-channels-last``, ``-compile``, ``-bf16`` |
| ``onnxruntime_backend`` | ``onnxruntime``: the ONNX export (CPU; CUDA: TensorRT, CUDA providers) |
| ``openvino_backend`` | ``openvino``: the OpenVINO IR export (CPU) |
| ``record`` | each runtime's recorded speed per CPU model and accuracy, beside the weights |
| ``choice`` | ``auto``: the fastest recorded runtime within the accuracy limit |
| ``selection`` | a runtime setting -> that runtime for a predictor (exporting on first use) |
| ``names`` | the runtimes' names |

onnxruntime and openvino (extra ``export``) are imported only inside their backend modules;
this package imports nothing itself.
"""
