"""Runtimes: what runs the network's forward pass, each behind one interface
(``base.Runtime``: padded images in, ``DDPOutput`` out), so that preprocessing and the
per-person post-processing stay one code path for all of them.

| module | runtime |
|---|---|
| ``base`` | the ``Runtime`` interface; an exported graph's outputs -> ``DDPOutput`` |
| ``torch_eager`` | ``torch``: ``DDP.forward`` in eager PyTorch |
| ``onnxruntime_backend`` | ``onnxruntime``: the ONNX export (CPU; CUDA: TensorRT, CUDA providers) |
| ``openvino_backend`` | ``openvino``: the OpenVINO IR export (CPU) |
| ``selection`` | a runtime's name -> that runtime for a predictor (exporting on first use) |
| ``names`` | the runtimes' names |

onnxruntime and openvino (extra ``export``) are imported only inside their backend modules;
this package imports nothing itself.
"""
