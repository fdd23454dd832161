"""The test suite's own machinery: the server tests share one xdist worker, as `make test` relies on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_server_tests_run_on_one_xdist_worker(tmp_path: Path) -> None:
    # Six server tests and six others over two workers: without the grouping xdist spreads them, and each worker
    # would start its own stack (as happened with pytest 9.2, whose nodeids ignore xdist 3.8's group suffix).
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.xdist_groups"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n  servers: shares the stack\n")
    (tmp_path / "test_servers.py").write_text(
        "import os, pytest\npytestmark = pytest.mark.servers\n"
        "@pytest.mark.parametrize('i', range(6))\n"
        "def test_server(i):\n"
        "    with open('workers.txt', 'a') as seen:\n        seen.write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
    )
    (tmp_path / "test_others.py").write_text("import pytest\n@pytest.mark.parametrize('i', range(6))\n"
                                              "def test_other(i):\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workers = (tmp_path / "workers.txt").read_text().split()
    assert len(workers) == 6 and len(set(workers)) == 1, workers
