"""Training on two CPU processes (torchrun, gloo) gives the adapter one process gives with the same global batch,
and a failing rank fails the launch with that rank's own error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapterflow.core.errors import AdapterflowError
from adapterflow.data.splitting import split_rows
from adapterflow.storage.records import BaseModelRef
from adapterflow.storage.store import Storage
from adapterflow.training.checkpoints import CheckpointPlan, complete_steps
from adapterflow.training.distributed import train_adapter_distributed
from adapterflow.training.distributed_worker import TEST_FAIL_RANK
from adapterflow.training.trainer import train_adapter
from schemas.data import LeakageConfig, SplitConfig
from schemas.method import LoraMethod
from schemas.tokenize import TokenizeConfig
from schemas.training import DistributedConfig, TrainingConfig
from tasks.tokenize import tokenize_splits
from tests.tasks.helpers import filtered, questions

CPU = torch.device("cpu")
METHOD = LoraMethod(type="lora", r=4, dropout=0.0)
# Two processes of 2 rows and one of 4 rows see the same 4 rows per step: the Trainer's RandomSampler is
# seeded (accelerate's SeedableRandomSampler, the same permutation in every process) and accelerate deals its
# consecutive batches out to the ranks in turn, so ranks 0 and 1 together get exactly the single process's batch.
# That holds for train_sampling_strategy "random", i.e. with packing on, which these tests train with. Packing
# 2 rows instead of 4 into a row changes no logit: examples keep their own positions and don't attend to each other.
TRAINING = dict(max_steps=6, learning_rate=0.01, logging_steps=1, precision="fp32", warmup_ratio=0.0,
                lr_scheduler="constant", seed=7)
# What is left is float32 rounding: gradients summed over 2 processes instead of one batch, packed rows of
# different widths (different matmul shapes and summation orders), over 6 Adam steps that divide by the
# square root of tiny second moments, which amplifies the rounding. Measured: 2.3e-6 here. A batch in the wrong
# order or a gradient of the wrong scale moves weights by about the learning rate (1e-2) per step.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, BaseModelRef]:
    folder = tmp_path_factory.mktemp("distributed")
    storage = Storage.local(folder / "cache")
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(folder / "data", questions(40)), SplitConfig(eval_size=0.2, max_eval_rows=None),
                       LeakageConfig(enabled=False), storage, 1)
    return Path(tokenize_splits(split, base, TokenizeConfig(max_length=64), storage).uri), base


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_two_processes_train_the_adapter_one_process_trains(
    tmp_path: Path, tokenized: tuple[Path, BaseModelRef]
) -> None:
    from mlflow.tracking import MlflowClient

    data, base = tokenized
    single = train_adapter(data, base, METHOD, TrainingConfig(batch_size=4, **TRAINING), CPU, "fp32", tmp_path / "one")
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(f"distributed-{tmp_path.name}")).info.run_id
    config = TrainingConfig(batch_size=2, distributed=DistributedConfig(num_processes=2), **TRAINING)
    double = train_adapter_distributed(data, base, METHOD, config, CPU, "fp32", tmp_path / "two", mlflow_run_id=run_id)

    assert double.model is None and double.metrics["train/steps"] == 6
    one, two = adapter_weights(single.output_dir), adapter_weights(double.output_dir)
    assert one.keys() == two.keys()
    difference = max((one[name] - two[name]).abs().max().item() for name in one)
    print(f"max |difference| between the adapters: {difference:.3g}")
    assert difference < TOLERANCE
    assert all(two[name].abs().max() > 1e-3 for name in two if "lora_B" in name)  # trained: B starts at zero
    # step by step, the loss is the mean over the global batch and the gradient the same (Adam and clipping
    # would hide a gradient off by the number of processes in the weights, not in its norm)
    logged = ("step", "train/loss", "train/grad_norm")
    expected = [[entry[key] for key in logged] for entry in single.history]
    assert [[pytest.approx(entry[key], rel=1e-4) for key in logged] for entry in double.history] == expected
    # tokens are counted over both processes: the run saw as many as the single process
    assert double.metrics["train/real_tokens"] == single.metrics["train/real_tokens"]
    # rank 0 alone logs into the run: one value per step
    assert [metric.step for metric in client.get_metric_history(run_id, "train/loss")] == [1, 2, 3, 4, 5, 6]
    # and alone shows progress, in the launch's log
    log = (tmp_path / "two" / "torchrun.log").read_text()
    assert "rank 0 INFO step 6/6 (100%) loss" in log and "rank 1 INFO step" not in log


@pytest.mark.slow  # two torchrun launches: about a minute
def test_two_processes_checkpoint_together_and_resume_to_the_same_weights(
    tmp_path: Path, tokenized: tuple[Path, BaseModelRef]
) -> None:
    data, base = tokenized
    plan = CheckpointPlan(Storage.local(tmp_path / "store"), "adapter-key", every_steps=3, keep=2)
    config = TrainingConfig(batch_size=2, distributed=DistributedConfig(num_processes=2), **TRAINING)
    whole = train_adapter_distributed(data, base, METHOD, config, CPU, "fp32", tmp_path / "whole", checkpoints=plan)
    assert complete_steps(plan) == [3, 6]
    halfway = plan.local_root / "checkpoint-3"
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "adapter_model.safetensors"} <= {
        path.name for path in halfway.iterdir()}  # each process's part was in before the folder was marked
    resumed = train_adapter_distributed(data, base, METHOD, config, CPU, "fp32", tmp_path / "resumed",
                                        resume_from=halfway)
    one, two = adapter_weights(whole.output_dir), adapter_weights(resumed.output_dir)
    assert all(torch.equal(one[name], two[name]) for name in one)
    assert [entry["step"] for entry in resumed.history] == [1, 2, 3, 4, 5, 6]


def test_a_failing_rank_fails_the_launch_with_its_own_error(
    tmp_path: Path, tokenized: tuple[Path, BaseModelRef], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, base = tokenized
    monkeypatch.setenv(TEST_FAIL_RANK, "1")
    config = TrainingConfig(batch_size=2, distributed=DistributedConfig(num_processes=2), **TRAINING)
    with pytest.raises(AdapterflowError) as failure:
        train_adapter_distributed(data, base, METHOD, config, CPU, "fp32", tmp_path / "out")
    message = str(failure.value)
    assert message.startswith("distributed training failed in rank 1 of 2: RuntimeError: failure injected into rank 1")
    assert "Traceback" not in message and len(message.splitlines()) == 2  # the error and a hint, not the logs


def test_fsdp_is_refused_on_cpu_and_a_single_process_refuses_a_distributed_config(
    tmp_path: Path, tokenized: tuple[Path, BaseModelRef]
) -> None:
    data, base = tokenized
    fsdp = TrainingConfig(distributed=DistributedConfig(num_processes=2, strategy="fsdp"), **TRAINING)
    with pytest.raises(AdapterflowError, match="strategy fsdp needs CUDA GPUs"):
        train_adapter_distributed(data, base, METHOD, fsdp, CPU, "fp32", tmp_path / "fsdp")
    ddp = TrainingConfig(distributed=DistributedConfig(num_processes=2), **TRAINING)
    with pytest.raises(AdapterflowError, match="num_processes is 2 but this process is one of 1"):
        train_adapter(data, base, METHOD, ddp, CPU, "fp32", tmp_path / "single")
