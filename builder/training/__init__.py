"""Training on a store and shipping engines: data loading (``data``), the reference models
(``reference``), a training run (``run``) and how it reports progress (``progress``), ONNX
export (``export``), TensorRT engines (``tensorrt``) and releases in a bucket (``releases``).
Needs the ``train`` extra (PyTorch)."""
