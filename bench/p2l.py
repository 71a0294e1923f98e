"""P2L figures, printed as JSON.

python bench/p2l.py figures [--run runs/p2l/minilm] [--names runs/exp/names | --names ""]
    From a finished train-p2l run (python -m competition train-p2l --config configs/p2l/minilm.toml): its
    out-of-fold log loss and per-prompt Spearman beside the names-only Bradley-Terry, the blend (skipped with --names "") with a
    names-aware LightGBM cv run on the same fold table (weights cross-fitted by fold), and routing on
    arena-bench-pairs grades at several budgets (half the best model's cost among them): P2L's batch router and
    P2L's own per-query LP router (randomized; opponents uniform, or the best model only) beside the ridge router
    with registry prompt features and with MiniLM added. Per prompt category, P2L's aggregate leaderboard of the
    held-out prompts against the category's Bradley-Terry on its battles, beside the global leaderboard.
python bench/p2l.py coverage [--worlds 10]
    Coverage of the 95 % intervals for new prompts in simulation (analysis/p2l_coverage.py): the fold jackknife
    with Student's t at F - 1 degrees of freedom (what prompt-leaderboard reports) beside the normal z = 1.96.
python bench/p2l.py gpu-check --model DIR [--steps 20]
    The GPU preset (configs/p2l/qwen25_lora.toml) on a local model directory: a few training steps on
    simulated battles on CUDA (bf16 backbone, LoRA, float32 head), prediction, save and reload; and the frozen
    encoder with last-token pooling on the same model. Timings and dtypes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from competition.config import load_config  # noqa: E402

SHARES = (0.125, 0.25, 0.5, 1.0)


def figures(run: str, names: str) -> dict:
    from analysis.p2l import field_win_rates, held_out_coefficients
    from analysis.routing.evaluate import evaluate_routing, load_graded
    from analysis.routing.quality import prompt_features
    from analysis.routing.settings import RouterConfig, RoutingConfig
    from competition.metric import score_report
    from ensemble.blend import cross_fitted_blend, honest_blend_folds
    from ensemble.runs import load_runs

    summary = json.loads((Path(run) / "p2l_summary.json").read_text(encoding="utf-8"))
    out: dict = {"train_p2l": summary}
    if names:  # the blend needs a names-aware LightGBM cv run on the same fold table
        runs = load_runs([names, run])
        folds = honest_blend_folds(runs.y, runs.folds, runs.groups)
        out["blend"] = {name: score_report(runs.y, p)["log_loss"] for name, p in zip(runs.names, runs.oof, strict=True)}
        out["blend"]["blend_weights_cross_fitted_by_fold"] = score_report(
            runs.y, cross_fitted_blend(runs.oof, runs.y, folds, False)
        )["log_loss"]
    out["categories_held_out"] = category_boards(run)
    out["routing"] = []
    for config in ("configs/routing/bench.toml", "configs/routing/bench_embed.toml"):
        cfg = load_config(RoutingConfig, config)
        data = load_graded(cfg)
        X = prompt_features(data.prompts, cfg.quality.embed)
        coefficients = held_out_coefficients(run, data.ids, data.models)
        p2l = {"p2l_router": field_win_rates(*coefficients)}
        best = np.nanmean(data.grades, axis=0).argmax()
        lp = {
            "p2l_lp_router": p2l["p2l_router"],
            "p2l_lp_router_vs_best": field_win_rates(*coefficients, np.eye(len(data.models))[best]),
        }
        for share in SHARES:
            at = replace(cfg, router=RouterConfig(**{**cfg.router.__dict__, "budget_share_of_best": share}))
            _, s, _ = evaluate_routing(data, X, at, p2l, lp)
            out["routing"].append(
                {
                    "config": config,
                    "budget_share_of_best": share,
                    "budget": s["budget_per_prompt"],
                    "ridge_router_share": s["router_share_of_oracle_gain_at_budget"],
                    "p2l_router_share": s["p2l_router_share_of_oracle_gain_at_budget"],
                    "p2l_lp_router_share": s["p2l_lp_router_share_of_oracle_gain_at_budget"],
                    "p2l_lp_router_vs_best_share": s["p2l_lp_router_vs_best_share_of_oracle_gain_at_budget"],
                    "p2l_lp_router_share_of_per_query_oracle": s["p2l_lp_router_share_of_per_query_oracle_gain_at_budget"],
                    "means_only_share": s["means_only_share_of_oracle_gain_at_budget"],
                    "ridge_router_grade": s["router_at_budget"]["mean_grade"],
                    "p2l_router_grade": s["p2l_router_at_budget"]["mean_grade"],
                    "p2l_lp_router_grade": s["p2l_lp_router_at_budget"]["mean_grade"],
                    "p2l_lp_router_one_draw": s["p2l_lp_router_drawn_at_budget"],
                    "oracle_grade": s["oracle_at_budget"]["mean_grade"],
                    "oracle_per_query": s["oracle_per_query_at_budget"],
                }
            )
    return out


def category_boards(run: str, data: str = "../shared/data/arena-bench-pairs/train.csv") -> list[dict]:
    """Per prompt category (analysis/dissection/scenarios.py's keyword rules): P2L's aggregate leaderboard over the
    category's held-out prompts against the category's Bradley-Terry on its battles (analysis/p2l.py)."""
    from analysis.dissection.scenarios import scenarios
    from analysis.p2l import held_out_category_boards
    from competition.folds import prompt_groups
    from data.loader import load_arena_csv

    frame = load_arena_csv(data, require_labels=True)
    frame["group"] = prompt_groups(frame).astype(str).to_numpy()
    category_of_group = dict(zip(frame["group"], scenarios(frame["prompt"]), strict=True))
    return held_out_category_boards(run, frame, category_of_group).to_dict(orient="records")


def gpu_check(model_dir: str, steps: int) -> dict:
    import torch

    from models.p2l.estimator import P2LPreference
    from models.p2l.settings import EncoderConfig, TuneConfig
    from stages.training import training_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_p2l import simulated_battles

    cfg = load_config(
        training_config("p2l"), "configs/p2l/qwen25_lora.toml", [f"encoder.model_path={model_dir!r}", f"tune.max_steps={steps}"]
    )
    frame = simulated_battles(n_prompts=40, repeats=2)
    y = frame["label"].to_numpy()
    out: dict = {
        "cuda": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    start = time.perf_counter()
    model = P2LPreference(cfg.encoder, cfg.head, cfg.tune).fit(frame, y)
    out["finetune_fit_seconds"] = time.perf_counter() - start
    out["device"] = str(model.device_)
    out["backbone_dtype"] = str(model.network_.get_input_embeddings().weight.dtype)
    out["head_dtype"] = str(model.network_.head.weight.dtype)
    out["trainable_parameters"] = sum(p.numel() for p in model.network_.parameters() if p.requires_grad)
    start = time.perf_counter()
    probs = model.predict_proba(frame)
    out["predict_seconds"] = time.perf_counter() - start
    out["rows_sum_to_one"] = bool(np.allclose(probs.sum(axis=1), 1.0))
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        out["reload_max_abs_difference"] = float(np.abs(P2LPreference.load(tmp).predict_proba(frame) - probs).max())
    encoder = EncoderConfig(
        model_path=model_dir, model_package="", pooling="last", dtype="auto", cache_dir="", prompt_features=False
    )
    start = time.perf_counter()
    frozen = P2LPreference(encoder, cfg.head, TuneConfig()).fit(frame, y)
    out["frozen_last_token_fit_seconds"] = time.perf_counter() - start
    out["frozen_rows_sum_to_one"] = bool(np.allclose(frozen.predict_proba(frame).sum(axis=1), 1.0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    fig = sub.add_parser("figures")
    fig.add_argument("--run", default="runs/p2l/minilm")
    fig.add_argument("--names", default="runs/exp/names")
    cover = sub.add_parser("coverage")
    cover.add_argument("--worlds", type=int, default=10)
    gpu = sub.add_parser("gpu-check")
    gpu.add_argument("--model", required=True)
    gpu.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if args.what == "coverage":
        from analysis.p2l_coverage import coverage

        result = {"worlds": args.worlds, "level": 0.95, "coverage": coverage(args.worlds)}
    else:
        result = figures(args.run, args.names) if args.what == "figures" else gpu_check(args.model, args.steps)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
