"""An inference fleet for many media servers: `swapstream triton` serves the manifest's models on a real Triton
Inference Server (through PyTriton), under the names and tensors `swapstream export --triton` gives them.

Modules: config (the command's settings), model_files (the manifest and model files, the one place that reads
them), bindings (manifest entry -> served model: name, batching), repository (the Python-backend model repository
tritonserver loads), backend_model (the model code that runs inside tritonserver's Python backend), server (start,
readiness, stop), cli (the command).
"""
