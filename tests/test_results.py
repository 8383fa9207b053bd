"""README's headline verdicts, recomputed from the committed storage in results/: the test fails
when a figure in README.md is not what the units in results/ give under today's statistics."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from ghostsearch.confirm import Candidate, companion, design_verdicts, results
from ghostsearch.search.storage import make_storage
from ghostsearch.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# (study, recipe, the number of recipes its README verdict is read with)
HEADLINE = [
    ("cpu-shallow-100M", "ground-truth", 3),
    ("cpu-shallow-100M", "full-data", 3),
    ("cpu-shallow-100M", "onecycle-cutout", 3),
    ("cpu-shallow-200M", "ground-truth", 2),
    ("cpu-shallow-200M", "full-data", 2),
]


def verdict_row(study_name: str, recipe: str, n_recipes: int) -> dict:
    db = ROOT / "results" / study_name / "study.db"
    if not db.exists():
        pytest.skip(f"{db} is not in this checkout")
    storage = make_storage(f"sqlite:///{db}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    confirm = companion(study, storage, load_recipe(recipe))
    assert confirm is not None, f"{study_name} has no confirmation under {recipe}"
    cands = [Candidate(**c) for c in confirm.user_attrs["meta"]["candidates"]]
    table = design_verdicts(confirm, cands, results(confirm), recipes=n_recipes)
    return next(r for r in table if not r["baseline"])


@pytest.mark.parametrize("study_name, recipe, n_recipes", HEADLINE)
def test_readme_states_the_verdict_the_units_give(study_name, recipe, n_recipes):
    row = verdict_row(study_name, recipe, n_recipes)
    figure = f"{row['diff_vs_ref']:+.2f} ± {row['ci_half']:.2f}"
    assert figure in README, f"README lacks {study_name} under {recipe}: {figure}"
    seeds = f"{row['seeds']} seeds an arm"
    assert seeds in README, f"README lacks {study_name} under {recipe}: {seeds}"


def test_readme_states_the_depth_gap_the_records_give():
    """The depth row, recomputed from the unit records and the ground truth's runs rather than
    read from depth.json, so that a record changed without rerunning the script fails too."""
    import json

    import pandas as pd

    from ghostsearch.bench.depth_full_data import depth_effect, table

    folder = ROOT / "results" / "depth-full-data"
    if not (folder / "choice.json").exists():
        pytest.skip(f"{folder} is not in this checkout")
    choice = json.loads((folder / "choice.json").read_text())
    frame = table(choice, folder, pd.read_csv(ROOT / "results" / "ground_truth" / "runs.csv"))
    done = frame[frame.full_seeds > 0]
    for recipe in ("full", "short"):
        e = depth_effect(done, f"{recipe}_test")
        figure = f"{e['shallow_minus_deep']:+.2f} ± {e['half']:.2f}"
        assert figure in README, f"README lacks the {recipe} shallow - deep gap {figure}"
    assert f"{len(done)} architectures chosen beforehand" in README
