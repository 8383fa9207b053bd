"""The verdict across recipes: a found architecture "beats the reference under every recipe"
only when its interval under each recipe excludes 0, each interval adjusted for the number of
recipes on top of the candidates and looks (Bonferroni, so that every interval printed is the
one its verdict was read from); otherwise the verdict names the recipes it fails under.

Pure functions of the per-recipe verdict tables (`confirm.verdicts`), so that a report, a
script or a simulation reaches the same words from the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["across_recipes", "recipe_verdict"]


def _part(recipe: str, row: Mapping[str, Any]) -> str:
    half = row.get("ci_half")
    spread = "" if half is None or half != half else f" ± {half:.2f}"
    return f"{recipe} {row['diff_vs_ref']:+.2f}{spread}"


def recipe_verdict(per: Mapping[str, Mapping[str, Any]], ref: str) -> tuple[str, str]:
    """The decision and the words for one candidate from its rows under each recipe (recipe
    name -> a `confirm.verdicts` row with `decision`, `diff_vs_ref` and `ci_half`)."""
    decisions = {r: row.get("decision") for r, row in per.items()}
    beats = [r for r, d in decisions.items() if d == "beats"]
    loses = [r for r, d in decisions.items() if d == "loses to"]
    other = [r for r in per if r not in beats and r not in loses]
    figures = "; ".join(_part(r, per[r]) for r in per)
    if len(beats) == len(per):
        return "beats under every recipe", f"beats {ref} under every recipe ({figures})"
    if len(loses) == len(per):
        return "loses under every recipe", f"loses to {ref} under every recipe ({figures})"
    if beats:
        fails = ", ".join(f"{r} ({decisions[r]})" for r in other + loses)
        return ("beats under some recipes",
                f"beats {ref} under {', '.join(beats)} only; not under {fails} ({figures})")
    if loses:
        return ("loses under some recipes",
                f"loses to {ref} under {', '.join(loses)}; "
                f"{', '.join(f'{r} {decisions[r]}' for r in other)} ({figures})")
    states = ", ".join(f"{r} {decisions[r]}" for r in per)
    return "undecided", f"not decided against {ref} under any recipe: {states} ({figures})"


def across_recipes(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per found candidate compared under every recipe of `tables` (recipe name -> its
    verdict table, each made with the number of recipes in its adjustment): its difference,
    interval and decision under each recipe, and the verdict across them."""
    names = list(tables)
    rows_by = {r: {row["key"]: row for row in tables[r]
                   if "diff_vs_ref" in row and not row.get("baseline")} for r in names}
    # the reference the verdicts compare with: the first baseline (the one at the budget;
    # a reference over the budget follows it)
    ref_name = next((row["key"] for row in tables[names[0]] if row.get("baseline")),
                    "the reference")
    keys = [k for k in rows_by[names[0]] if all(k in rows_by[r] for r in names)]
    out = []
    for key in keys:
        per = {r: rows_by[r][key] for r in names}
        decision, words = recipe_verdict(per, ref_name)
        row: dict[str, Any] = {"key": key, "recipes": len(names), "decision": decision,
                               "verdict": f"{key} {words}"}
        for r in names:
            row[f"{r}:diff"] = per[r]["diff_vs_ref"]
            row[f"{r}:half"] = per[r].get("ci_half")
            row[f"{r}:decision"] = per[r].get("decision")
            row[f"{r}:seeds"] = per[r].get("seeds")
            row[f"{r}:comparisons"] = per[r].get("comparisons")
        out.append(row)
    return out
