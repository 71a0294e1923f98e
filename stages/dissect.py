"""dissect: which properties of an answer move a judge, with 95% credible intervals, per scenario and per judge;
with --row and --model, the SHAP waterfall of one pair (models/dissection/).

Run directory (a unit): effects.csv/.png (every judge × property), scenarios.csv/.png (labels judge: odds ratio
per property × scenario; a scenario with too few pairs is reported, not fitted), judges.csv/.png (correlation
of the judges' effect vectors), shap_<id>.csv/.png (with --row), summary.json (the prior used; per judge, the
pairs it leaves out and those dropped because another judge left them out: every judge is fitted on the pairs all
judges keep), config.toml, manifest.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from competition.errors import InputError
from competition.rundir import check_run, run_unit, safe_name


def property_differences(frame: pd.DataFrame, settings) -> pd.DataFrame:
    from analysis.dissection.properties import differences, external_differences, feature_groups, select
    from data.loader import read_csv_checked
    from features.registry import build_features

    chosen = select(settings.properties)
    diffs = differences(build_features(frame, feature_groups(chosen), None), chosen).reset_index(drop=True)
    if settings.property_table:
        table = read_csv_checked(Path(settings.property_table))
        extra = external_differences(table, frame["id"], settings.property_table)
        clash = sorted(set(extra.columns) & set(diffs.columns))
        if clash:
            raise InputError(f"column {clash[0]!r} is also a measured property: rename it", settings.property_table)
        diffs = pd.concat([diffs, extra], axis=1)
    return diffs


def judge_name(source: str) -> str:
    return safe_name(Path(source).resolve().stem or "judge")


def read_judges(frame: pd.DataFrame, settings) -> tuple[dict, dict[str, str]]:
    """name → (target, weight) per row, the labels first, and name → the rows that judge leaves out, in words."""
    from analysis.dissection.analysis import LABELS_JUDGE
    from analysis.dissection.judges import judge_targets, label_targets, what_is_left_out

    judges = {LABELS_JUDGE: label_targets(frame["label"].to_numpy(), settings.ties)}
    left_out = {LABELS_JUDGE: what_is_left_out(None, settings.ties)}
    for run_dir in settings.judges:
        name = judge_name(run_dir)
        if name in judges:
            raise InputError(f"two judges are named {name!r}: give the runs distinct folder names", run_dir)
        judges[name] = judge_targets(run_dir, frame["id"], settings.ties)
        left_out[name] = what_is_left_out(run_dir, settings.ties)
    return judges, left_out


def rows_summary(rows: pd.DataFrame, left_out: dict[str, str]) -> dict:
    """Per judge: the rows it leaves out itself (and why), and those dropped because another judge left them out."""
    return {
        "fitted_on": "the pairs every judge keeps",
        "per_judge": {
            name: {
                "keeps": int(row.keeps),
                "leaves_out": int(row.left_out),
                "why": left_out[name],
                "dropped_for_others": int(row.dropped_for_others),
            }
            for name, row in rows.iterrows()
        },
    }


def run_dissection(cfg) -> dict:
    from analysis.dissection import plots
    from analysis.dissection.analysis import LABELS_JUDGE, dissect, shared_rows
    from analysis.dissection.scenarios import scenarios
    from data.loader import load_arena_csv

    settings = cfg.dissect
    if bool(settings.row) != bool(settings.model):
        raise InputError("--row and --model go together: a SHAP waterfall needs a pair id and a LightGBM run")
    check_run(cfg)
    start = time.perf_counter()
    frame = load_arena_csv(cfg.data.train, require_labels=True, max_rows=cfg.data.max_rows)
    diffs = property_differences(frame, settings)
    judges, left_out = read_judges(frame, settings)
    judges, rows = shared_rows(judges)
    scenario = scenarios(frame["prompt"])
    if settings.scenario:
        inside = (scenario == settings.scenario).to_numpy()
        decided = float(judges[LABELS_JUDGE][1][inside].sum())
        if decided < settings.min_pairs:
            raise InputError(
                f"scenario {settings.scenario!r} has {decided:g} pairs every judge keeps, fewer than "
                f"min_pairs={settings.min_pairs}: too few to fit",
                cfg.data.train,
            )
        judges = {name: (t[inside], w[inside]) for name, (t, w) in judges.items()}
        diffs, scenario = diffs[inside].reset_index(drop=True), scenario[inside].reset_index(drop=True)
    prior = settings.prior_used()
    result = dissect(diffs, judges, scenario, prior, settings.min_pairs, settings.mcmc_steps)
    shap = None
    if settings.row:
        from analysis.dissection.shap import pair_contributions
        from models.registry import load_model

        model_dir = Path(settings.model)
        model = load_model(model_dir / "model" if (model_dir / "model").is_dir() else model_dir)
        shap = pair_contributions(model, frame, settings.row)
    seconds = time.perf_counter() - start
    too_small = {k: v for k, v in result.scenario_pairs.items() if 0 < v < settings.min_pairs}
    summary = {
        "pairs": len(frame),
        "fitted_pairs": float(judges[LABELS_JUDGE][1].sum()),  # every judge's, the same rows
        "rows": rows_summary(rows, left_out),
        "prior": prior.describe(),
        "mcmc_steps": settings.mcmc_steps if prior.family == "laplace" else None,
        "properties": list(diffs.columns),
        "judges": list(judges),
        "scenario_pairs": result.scenario_pairs.to_dict(),
        "scenarios_too_small": too_small,
        "seconds": seconds,
    }
    with run_unit(cfg, {"pairs": len(frame)}) as staging:
        result.effects.to_csv(staging / "effects.csv", index=False)
        labels = result.effects[result.effects["judge"] == LABELS_JUDGE]
        plots.effects_plot(labels, staging / "effects.png", "what moves the labels' judge")
        result.scenarios.to_csv(staging / "scenarios.csv")
        plots.heatmap(result.scenarios, staging / "scenarios.png", "odds ratio per typical difference", "odds ratio", center=1.0)
        result.similarity.to_csv(staging / "judges.csv")
        plots.heatmap(result.similarity, staging / "judges.png", "correlation of the judges' effects", "correlation")
        if shap is not None:
            per_group, per_feature, base = shap
            name = safe_name(settings.row)
            per_feature.rename("contribution").to_csv(staging / f"shap_{name}.csv")
            plots.waterfall(per_group, base, staging / f"shap_{name}.png", f"pair {settings.row}: 'A wins' by feature group")
            summary["shap_groups"] = per_group.to_dict()
        (staging / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return {"summary": summary, "result": result, "labels": labels}
