"""Split: deterministic, stable across retrains, prompts kept on one side; eval examples that repeat a
training example (question and answer) are removed, and a too small eval set is warned about."""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from adapterflow.data.leak_removal import eval_size_warning, remove_leaks
from adapterflow.data.leakage import find_leaks
from adapterflow.data.near_dedup import NearDedupSettings
from adapterflow.data.scan import scan_table
from adapterflow.data.splitting import split_rows
from adapterflow.data.tables import iter_rows
from adapterflow.storage.records import RunContext
from adapterflow.storage.store import Storage
from schemas.data import LeakageConfig, SplitConfig
from tasks.split import split
from tests.tasks.helpers import chat, filtered, questions, table_of

NO_LEAK_CHECK = LeakageConfig(enabled=False)


def home_in(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home")
    home.cache.mkdir(parents=True, exist_ok=True)
    return home


def eval_prompts(result) -> set[str]:
    return {row["messages"][0]["content"] for row in iter_rows(result.eval)}


def test_split_is_deterministic_and_sized(tmp_path: Path) -> None:
    home = home_in(tmp_path)
    config = SplitConfig(eval_size=0.1, max_eval_rows=None)
    first = split_rows(filtered(tmp_path / "a", questions(200)), config, NO_LEAK_CHECK, Storage.local(home.cache), 1)
    second = split_rows(filtered(tmp_path / "b", questions(200)), config, NO_LEAK_CHECK, Storage.local(home.cache), 2)
    assert first.eval.rows == 20 and first.validation.rows == 9 and first.train.rows == 171  # validation: 5% of 180
    assert first.fingerprint == second.fingerprint and second.skipped
    assert eval_prompts(first) == eval_prompts(second)


def test_rows_keep_their_side_when_data_grows(tmp_path: Path) -> None:
    home = home_in(tmp_path)
    config = SplitConfig(eval_size=0.1, max_eval_rows=None)
    small = split_rows(filtered(tmp_path / "a", questions(200)), config, NO_LEAK_CHECK, Storage.local(home.cache), 1)
    grown = split_rows(filtered(tmp_path / "b", questions(220)), config, NO_LEAK_CHECK, Storage.local(home.cache), 1)
    assert len(eval_prompts(small) - eval_prompts(grown)) <= 2  # the threshold moves a little with the count
    assert small.fingerprint != grown.fingerprint


def test_same_prompt_lands_on_one_side_and_caps_apply(tmp_path: Path) -> None:
    home = home_in(tmp_path)
    rows = questions(100)
    rows.append(chat(rows[3]["messages"][0]["content"], "another answer", 999))
    result = split_rows(filtered(tmp_path / "a", rows), SplitConfig(eval_size=0.5, max_eval_rows=5), NO_LEAK_CHECK, Storage.local(home.cache), 1)
    assert result.eval.rows in (5, 6)
    train_prompts = {row["messages"][0]["content"] for row in iter_rows(result.train)}
    assert not eval_prompts(result) & train_prompts
    count = split_rows(filtered(tmp_path / "b", questions(100)), SplitConfig(eval_size=7, max_eval_rows=None),
                       NO_LEAK_CHECK, Storage.local(home.cache), 1)
    assert count.eval.rows == 7


PREAMBLE = "You are the finance desk assistant. Answer in the house style, with figures in millions and no speculation."
DESKS = ["rates", "credit", "FX", "equities", "commodities"]
FIRMS = ["Meridian Capital", "Northwind Partners", "Halcyon Fund", "Bluewater Trust", "Orion Holdings", "Kestrel AM"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
TERMS = ["long", "short", "net", "exposure", "hedged", "swaps", "futures", "notional", "duration", "spread", "carry",
         "basis", "curve", "steepener", "flattener", "delta", "gamma", "vega", "margin", "collateral"]


def desk_rows() -> list[dict]:
    """360 templated questions ("Summarise the <desk> position for <firm> as of <month> 2026"), each with its
    own answer."""
    rng = random.Random(0)
    rows = []
    for desk, firm, month in itertools.product(DESKS, FIRMS, MONTHS):
        answer = " ".join(rng.choice(TERMS) for _ in range(20)) + f" at {rng.randint(1, 900)}m"
        rows.append(chat(f"{PREAMBLE} Summarise the {desk} position for {firm} as of {month} 2026", answer, len(rows) + 1))
    return rows


def leaks_by_question(result, folder: Path, threshold: float = 0.8) -> int:
    """How many eval rows a question-only comparison would call leaked."""
    settings = NearDedupSettings(threshold, 3)
    train = scan_table(Path(result.train.path), settings, folder, 1, view="prompt")
    held_out = scan_table(Path(result.eval.path), settings, folder, 1, view="prompt")
    leaks = find_leaks(train, held_out, threshold)
    return int((leaks.exact | leaks.near).sum())


def test_templated_questions_with_different_answers_stay_in_eval(tmp_path: Path) -> None:
    home = home_in(tmp_path)
    config = SplitConfig(eval_size=60, max_eval_rows=None)
    result = split_rows(filtered(tmp_path / "a", desk_rows()), config, LeakageConfig(), Storage.local(home.cache), 1)
    assert result.eval.rows == 60 and result.dropped == {} and result.eval_warning is None
    assert leaks_by_question(result, tmp_path) >= 40  # the questions alone are near duplicates of training questions


def test_the_same_question_and_answer_leaks_exactly_or_nearly(tmp_path: Path) -> None:
    train_rows = questions(40)
    context = " ".join(f"clause {i} of the master agreement binds the counterparty" for i in range(12))
    answer = ("rotate the signing key first, then deploy the services that verify tokens, wait one token lifetime "
              "and only then retire the old key from the key store so no session is cut off")
    train_rows += [chat("How do I rotate the API keys of the billing service without any downtime?", answer, 41),
                   chat(f"{context} Who signs the agreement?", "the treasurer", 42)]
    held_out_rows = [
        chat(train_rows[3]["messages"][0]["content"].upper(), "  " + train_rows[3]["messages"][1]["content"], 101),
        chat("Please, how do I rotate the API keys of the billing service without any downtime?",
             answer.replace("no session", "no user session"), 102),
        # templated question, another answer; another question, the same answer; a shared context, another answer
        chat("How do I rotate the API keys of the search service without any downtime?", "restart it at night", 103),
        chat("What is the rollout order for our new release?", answer, 104),
        chat(f"{context} Who signs the agreement?", "the board", 105),
        *[chat(f"an unrelated question {i} about gardening in spring", f"plant bulbs {i} weeks early", 106 + i)
          for i in range(4)],
    ]
    train = table_of(tmp_path / "t", train_rows)
    held_out = table_of(tmp_path / "e", held_out_rows)
    kept, dropped, examples = remove_leaks(train, held_out, LeakageConfig(), tmp_path, 1)
    assert dropped == {"split.leak_exact": 1, "split.leak_near": 1}
    assert [row["line"] for row in iter_rows(kept)] == [103, 104, 105, 106, 107, 108, 109]
    assert [(e["eval"], e["train"], e["kind"]) for e in examples] == [("s:101", "s:4", "exact"), ("s:102", "s:41", "near")]
    assert 0.8 <= examples[1]["jaccard"] < 1


def test_eval_size_warning_fires_below_the_floor_and_names_the_settings() -> None:
    dropped = {"split.leak_near": 43}
    examples = [{"eval": "desk.jsonl:12", "train": "desk.jsonl:40", "kind": "near", "jaccard": 0.9}]
    warning = eval_size_warning(60, 17, dropped, examples, SplitConfig(eval_size=60, max_eval_rows=None))
    assert warning is not None
    assert "only 17 of 60 eval rows" in warning and "0 exact and 43 near duplicates" in warning
    assert "fewer than data.split.min_eval_rows (50)" in warning and "data.split.eval_size (now 60)" in warning
    assert "eval desk.jsonl:12 repeats train desk.jsonl:40" in warning
    assert eval_size_warning(60, 50, dropped, examples, SplitConfig()) is None
    assert eval_size_warning(60, 17, dropped, examples, SplitConfig(min_eval_rows=0)) is None
    # a small dataset is held to the size its split held out
    small = eval_size_warning(10, 9, {"split.leak_near": 1}, [], SplitConfig())
    assert small is not None and "fewer than the 10 the split held out" in small
    assert eval_size_warning(10, 10, {}, [], SplitConfig()) is None


def test_split_stage_logs_eval_size_after_leakage_and_warns(tmp_path: Path, home: Home, caplog) -> None:
    rows = questions(60)
    # copies of 30 rows with a word added to the question: near duplicates, half of them land in eval
    rows += [chat(row["messages"][0]["content"] + " please", row["messages"][1]["content"], 500 + i)
             for i, row in enumerate(rows[:30])]
    client = MlflowClient()
    run = RunContext(run_name="r", run_dir=str(tmp_path), home=str(home.root),
                     mlflow_run_id=client.create_run(client.create_experiment("split")).info.run_id,
                     experiment="split", config_sha256="c", storage=str(home.cache))
    config = SplitConfig(eval_size=0.5, max_eval_rows=None, min_eval_rows=40, validation_size=0)
    with caplog.at_level(logging.WARNING, logger="adapterflow"):
        result = split.fn(filtered(tmp_path / "a", rows), config, LeakageConfig(), 1, run)
    metrics = client.get_run(run.mlflow_run_id).data.metrics
    leaked = result.dropped["split.leak_near"]
    assert leaked >= 1 and metrics["data/eval_rows_after_leakage"] == result.eval.rows
    assert metrics["data/eval_rows_before_leakage"] == result.eval.rows + leaked
    assert result.eval.rows < 40 and result.eval_warning
    warnings = [r.getMessage() for r in caplog.records if r.name == "adapterflow" and r.levelno == logging.WARNING]
    assert warnings == [result.eval_warning]
    assert "data.split.min_eval_rows (40)" in result.eval_warning
