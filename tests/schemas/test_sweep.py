"""The sweep section: what can be searched, ranges that make sense, and every bound and choice tried against the
config when it is loaded, all problems reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import load_config
from schemas.sweep import SearchRange, apply_values
from tests.schemas.test_loading import minimal, problems_of
from tests.conftest import write_config


def test_a_sweep_section_loads_and_leaves_the_run_config_as_it_is(tmp_path: Path) -> None:
    sweep = {"parameters": {"training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
                            "method.r": {"choices": [4, 8, 16]}, "training.batch_size": {"low": 2, "high": 8, "step": 2}}}
    config = load_config(write_config(tmp_path, minimal(sweep=sweep)))
    assert config.sweep.trials == 8 and config.sweep.pruner == "median"
    assert config.sweep.parameters["training.batch_size"].integer
    assert not config.sweep.parameters["training.learning_rate"].integer
    assert config.training.learning_rate is None  # the sweep section changes nothing a plain run does

    trial = apply_values(config, {"training.learning_rate": 3e-4, "method.r": 16})
    assert trial.training.learning_rate == 3e-4 and trial.method.r == 16 and trial.sweep is None
    assert trial.data == config.data and trial.method.alpha == config.method.alpha


def test_every_sweep_problem_is_reported_at_once_with_its_setting(tmp_path: Path) -> None:
    sweep = {"parameters": {
        "training.learning_rate": {"low": 0.0, "high": 0.1, "log": True},  # log needs low > 0
        "data.split.eval_size": {"choices": [0.1]},  # the data is prepared once for all trials
        "training.distributed.num_processes": {"choices": [2]},  # trials train in one process
        "training.epochs": {"low": 1, "hi": 3},  # a typo
    }}
    problems = problems_of(write_config(tmp_path, minimal(sweep=sweep)))
    assert "a log-scale range needs low > 0" in problems["sweep.parameters['training.learning_rate']"]
    assert "only training.* and method.* settings" in problems["sweep.parameters['data.split.eval_size']"]
    assert "can't vary" in problems["sweep.parameters['training.distributed.num_processes']"]
    assert problems["sweep.parameters['training.epochs'].hi"] == "unknown field"
    assert problems["sweep.parameters['training.epochs'].high"] == "required field is missing"


def test_bounds_and_choices_the_config_would_refuse_are_errors_before_any_trial(tmp_path: Path) -> None:
    sweep = {"parameters": {"method.r": {"low": 0, "high": 8}, "method.rank": {"choices": [4]},
                            "training.batch_size": {"low": 1.0, "high": 8.0},
                            "training.lr_scheduler": {"choices": ["linear", "cosine", "wavy"]}}}
    problems = problems_of(write_config(tmp_path, minimal(sweep=sweep)))
    (message,) = problems.values()
    assert "method.r=0 is not a valid setting" in message and "greater than or equal to 1" in message
    assert "'method.rank': no such setting in this config (method lora)" in message
    assert "training.batch_size=3.33" in message  # a float range draws fractions an integer setting refuses
    assert "training.lr_scheduler='wavy'" in message
    assert "training.lr_scheduler='linear'" not in message and "training.lr_scheduler='cosine'" not in message


@pytest.mark.parametrize(("space", "error"), [
    ({"low": 3, "high": 3}, "high (3) must be greater than low (3)"),
    ({"low": 1e-5, "high": 1e-3, "log": True, "step": 1e-5}, "either log or step"),
])
def test_ranges_must_make_sense(space: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        SearchRange(**space)


def test_settings_trials_cant_train_with_are_errors_at_load(tmp_path: Path) -> None:
    lists = {"parameters": {"method.target_modules": {"choices": [["q_proj", "v_proj"], "all-linear"]}}}
    problems = problems_of(write_config(tmp_path, minimal(sweep=lists)))
    assert "each choice must be one number, string, true/false or null, not ['q_proj', 'v_proj']" in \
        problems["sweep.parameters['method.target_modules'].choices"]

    sweep = {"parameters": {"method.r": {"choices": [4, 8]}, "training.max_grad_norm": {"low": 2, "high": 8.0}}}
    config = minimal(sweep=sweep, training={"warm_start": "champion", "distributed": {"num_processes": 2}})
    message = problems_of(write_config(tmp_path, config))["sweep"]
    assert "num_processes is 2: a sweep's trials train in one process each" in message
    assert "training.warm_start is champion" in message and "set training.warm_start: none" in message
    assert "max_grad_norm" not in message  # a float range on a float setting is fine


def test_a_float_range_is_tried_with_a_fraction_even_when_a_third_of_it_is_whole() -> None:
    space = SearchRange(low=2, high=8.0)  # a third of the way is 4.0: an integer setting would accept it
    assert not space.integer and any(not float(value).is_integer() for value in space.bounds())
