"""KServe custom predictor serving a quantized credit-scoring ONNX bundle over the V2 protocol."""
