"""treesits reference models: architectures, ONNX export with the model contract, conversion, training.

`contract` and `data` need only numpy and pyarrow (CI uses them); the rest needs PyTorch (models/README.md).
"""
