"""Dedup: exact duplicates by folded text, near duplicates by verified Jaccard, every removal traced."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from adapterflow.data.tables import iter_rows
from schemas.data import DedupConfig, NearDedupConfig
from tasks.dedup import dedup_rows
from tests.tasks.helpers import chat, filtered, questions


def test_exact_duplicates_fold_case_and_whitespace_and_keep_the_first(tmp_path: Path) -> None:
    rows = [chat("What is X?", "It is Y.", 1), chat("what  is x?", "it is\ny.", 2), chat("What is Z?", "It is Y.", 3)]
    result = dedup_rows(filtered(tmp_path, rows), DedupConfig(), tmp_path / "out.parquet", workers=1)
    assert [row["line"] for row in iter_rows(result.table)] == [1, 3]
    assert result.dropped == {"dedup.exact": 1}
    removed = pq.read_table(result.removed_path).to_pylist()
    assert removed == [{"source": "s", "line": 2, "reason": "exact", "kept_source": "s", "kept_line": 1, "jaccard": 1.0}]


def test_prompt_and_response_boundary_matters_for_exact_keys(tmp_path: Path) -> None:
    rows = [chat("a b", "c d e", 1), chat("a", "b c d e", 2)]
    result = dedup_rows(filtered(tmp_path, rows), DedupConfig(near=NearDedupConfig(enabled=False)), tmp_path / "o.parquet", 1)
    assert result.table.rows == 2


def test_near_duplicates_are_removed_for_an_earlier_kept_row(tmp_path: Path) -> None:
    rows = questions(40)
    base = rows[5]["messages"][1]["content"]
    near = base.replace("arguments", "parameters")  # one word changed out of ~20
    rows.append(chat(rows[5]["messages"][0]["content"], near, 41))
    rows.append(chat("completely different question here today", "and a completely different answer to it", 42))
    result = dedup_rows(filtered(tmp_path, rows), DedupConfig(near=NearDedupConfig(threshold=0.5)), tmp_path / "o.parquet", 2)
    assert result.dropped == {"dedup.near": 1}
    assert 41 not in [row["line"] for row in iter_rows(result.table)]
    (cluster,) = result.near_clusters
    assert cluster["kept"] == "s:6" and cluster["removed"] == ["s:41"] and 0.5 <= cluster["jaccard"][0] < 1
    removed = pq.read_table(result.removed_path).to_pylist()
    assert [(r["line"], r["reason"], r["kept_line"]) for r in removed] == [(41, "near", 6)]


def test_near_dedup_can_be_switched_off_and_is_deterministic(tmp_path: Path) -> None:
    rows = questions(30) + [chat(r["messages"][0]["content"], r["messages"][1]["content"] + " indeed", 100 + i)
                            for i, r in enumerate(questions(30)[:10])]
    on = [dedup_rows(filtered(tmp_path / f"a{i}", rows), DedupConfig(), tmp_path / f"a{i}" / "o.parquet", w)
          for i, w in enumerate((1, 2))]
    off = dedup_rows(filtered(tmp_path / "b", rows), DedupConfig(near=NearDedupConfig(enabled=False)), tmp_path / "b" / "o.parquet", 1)
    assert on[0].dropped == on[1].dropped == {"dedup.near": 10}
    assert [r["line"] for r in iter_rows(on[0].table)] == [r["line"] for r in iter_rows(on[1].table)]
    assert off.dropped == {} and off.table.rows == 40
