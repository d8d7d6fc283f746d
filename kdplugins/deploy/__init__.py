"""Deployment of trained networks: building one from an option file and a checkpoint (:mod:`.network`), image files
(:mod:`.images`), tiled inference and the locality analysis that says when it is exact (:mod:`.tiling`,
:mod:`.locality`), ONNX, TorchScript, safetensors and spandrel export with their checks (:mod:`.formats`; spandrel's
key layouts in :mod:`.spandrel_layout`, its measured support in :mod:`.spandrel_support`), peak memory
(:mod:`.memory`) and the onnxruntime / PyTorch benchmark (:mod:`.benchmark`, each backend measured in its own process
by :mod:`.probe`). The command lines are ``python -m kdplugins.export`` and ``python -m kdplugins.infer``
(docs/deploy.md).
"""
