"""The layering that docs/architecture.md draws is what the code does: import-linter checks
pyproject's contract (every import points down, siblings on one line are independent)."""

from __future__ import annotations

import re
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(config: Path) -> subprocess.CompletedProcess:
    """import-linter in a process of its own (it disables the loggers of the one it runs in)."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, "
            "no_logo=True))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)


def test_every_import_points_down():
    run = lint_imports(ROOT / "pyproject.toml")
    assert run.returncode == 0, run.stdout


def test_the_contract_catches_an_upward_import(tmp_path):
    """The same check with two layers swapped must fail (so the one above can)."""
    text = (ROOT / "pyproject.toml").read_text()
    swapped = text.replace('    "ghostsearch.workflow",\n    "ghostsearch.report",\n',
                           '    "ghostsearch.report",\n    "ghostsearch.workflow",\n')
    assert swapped != text
    config = tmp_path / "pyproject.toml"
    config.write_text(swapped)
    run = lint_imports(config)
    assert run.returncode == 1 and "ghostsearch.workflow" in run.stdout


def test_the_architecture_map_names_every_layer():
    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"][0]["layers"]
    names = {n.strip().removeprefix("ghostsearch.") for line in layers for n in line.split("|")}
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}(/|\.py)", doc))
    assert not missing, f"docs/architecture.md does not place {missing}"


def test_no_module_hides_an_import_of_the_package_in_a_function():
    """Function-local imports are for optional extras and the standard library; one of
    ghostsearch itself would hide an edge from the layers contract above. The lazy public
    face (`ghostsearch.__getattr__`, through importlib) is the one exception, and the
    benchmarks sit on top, where nothing can be above them."""
    import ast

    hidden = []
    for path in sorted((ROOT / "ghostsearch").rglob("*.py")):
        if "bench" in path.relative_to(ROOT / "ghostsearch").parts:
            continue
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                inner = (isinstance(node, ast.ImportFrom)
                         and (node.level > 0 or (node.module or "").startswith("ghostsearch")))
                inner |= isinstance(node, ast.Import) and any(
                    a.name.startswith("ghostsearch") for a in node.names)
                if inner:
                    hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not hidden, f"imports of ghostsearch inside functions: {hidden}"
