"""Training on several processes: the launch check, the Trainer's DDP/FSDP arguments and FSDP weight gathering."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from adapterflow.core.errors import AdapterflowError
from schemas.training import TrainingConfig


def main_process() -> bool:
    """True in a single-process run and in rank 0 of a torchrun launch (torchrun sets RANK in every process)."""
    return int(os.environ.get("RANK", "0")) == 0


def check_launch(config: TrainingConfig) -> None:
    """Several processes are trained through torchrun, which starts exactly that many."""
    wanted = config.distributed.num_processes
    started = int(os.environ.get("WORLD_SIZE", "1"))
    if wanted > 1 and started != wanted:
        raise AdapterflowError(
            f"training.distributed.num_processes is {wanted} but this process is one of {started}",
            hint="train through adapterflow.training.distributed.train_adapter_distributed, which starts them",
        )


def distributed_arguments(config: TrainingConfig, device: torch.device) -> dict[str, Any]:
    """The Trainer's data-parallel settings when training on several processes (none for one)."""
    settings = config.distributed
    if settings.num_processes == 1:
        return {}
    backend = settings.backend if settings.backend != "auto" else "nccl" if device.type == "cuda" else "gloo"
    # every trainable parameter takes part in every step (PEFT freezes the rest): no search for unused ones.
    # ddp_timeout keeps its 30 minutes: rank 0 uploads checkpoints without holding the others (DurableCheckpoints)
    arguments: dict[str, Any] = {"ddp_backend": backend, "ddp_find_unused_parameters": False}
    if settings.strategy == "fsdp":
        arguments |= {
            "fsdp": True,
            "fsdp_config": {
                "version": 2,
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one unit per decoder layer (_no_split_modules)
                "reshard_after_forward": True,  # full shard: free each layer's gathered weights after forward
                "state_dict_type": "FULL_STATE_DICT",
                "cpu_ram_efficient_loading": False,  # every process loads the base (PEFT wraps it before FSDP)
                "activation_checkpointing": config.gradient_checkpointing,
            },
            # FSDP checkpoints activations itself; the Trainer's own checkpointing would gather weights twice
            "gradient_checkpointing": False,
        }
    return arguments


class GatheredModel:
    """An FSDP-sharded model as save_trained sees it: the full weights, gathered from every process."""

    def __init__(self, model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
        self.model = model
        self.state_dict = state_dict

    def save_pretrained(self, out_dir: Path) -> None:
        self.model.save_pretrained(out_dir, state_dict=self.state_dict)

    def named_parameters(self):  # noqa: ANN201 - the nn.Module API save_trained uses for delta methods
        for name, parameter in self.model.named_parameters():
            yield name, torch.nn.Parameter(self.state_dict[name], requires_grad=parameter.requires_grad)
