"""The network as files other runtimes run: ONNX and OpenVINO IR (``ddp export``).

| module | what it holds |
|---|---|
| ``graph`` | ``ExportGraph``: ``DDP.forward`` with only exportable ops (gather / GEMM / scatter) |
| ``onnx_file`` | the graph -> an ONNX file (``torch.onnx.export``, the dynamo exporter) |
| ``openvino_file`` | an ONNX file -> OpenVINO IR (``openvino.convert_model``) |
| ``quantize`` | an ONNX file -> its int8-convolution copy (ONNX Runtime static QDQ, calibrated) |
| ``bundle`` | an export directory (model file + ``export.json``), its key, writing and caching it |
| ``formats`` | the format names (``onnx``, ``openvino``, ``onnx-int8``) |

onnx, onnxscript, openvino and onnxruntime's quantisation (extra ``export``) are imported
only inside ``onnx_file``, ``openvino_file`` and ``quantize``, when an export runs.
"""
