"""Which failures a sweep survives: faults of the drawn values fail their trial, anything else stops the sweep."""

from __future__ import annotations

import torch

from adapterflow.errors import AdapterflowError, DataError, NumericalFault
from adapterflow.methods.memory_plan import out_of_memory_advice
from schemas.training import TrainingConfig
from tasks.search import trial_fault


def test_divergence_and_out_of_memory_fail_the_trial_anything_else_the_sweep() -> None:
    assert trial_fault(NumericalFault("the loss is nan at step 3"))
    try:  # as tasks/train.py raises it once the micro-batch can't be halved any further
        raise out_of_memory_advice(TrainingConfig(batch_size=1), "cuda") from torch.OutOfMemoryError("CUDA out of memory")
    except AdapterflowError as error:
        assert trial_fault(error)
    assert not trial_fault(DataError("data/train.jsonl: 40% of rows are malformed"))
    assert not trial_fault(AdapterflowError("MLflow is unreachable"))
