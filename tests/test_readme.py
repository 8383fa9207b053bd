"""README's Python API example runs as written (on generated images, in a fresh folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def api_block() -> str:
    text = README.read_text()
    marker = "<!-- tests/test_readme.py runs this block -->"
    assert marker in text, "README.md lost the marked API example"
    block = re.search(r"```python\n(.*?)```", text.split(marker, 1)[1], re.S)
    assert block is not None
    return block.group(1)


def test_the_readme_api_example_runs(tmp_path):
    script = tmp_path / "try_api.py"  # a file, as a user saves it: spawned workers import it
    script.write_text(api_block())
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "results" / "api-try"
    assert (out / "best_arch.json").exists() and (out / "report.md").exists()
    assert (out / "confirmed-quick-check.csv").exists()
    assert "GhostNet 1.0x" in run.stdout and "trial-" in run.stdout
