"""Judge-crowd ranking on arena-bench-pairs, as JSON + CSV + PNG: Spearman with the truth (the models' ranking by
mean grade over all prompts) against the number of judgments, for the full round-robin, De-Arena's binary
insertion, and random pairs with the insertion's number of judgments; judges: the graded outcomes (an oracle, with
normal noise on the grades) and this project's text-only LightGBM out of fold (each pair judged by a model that
never saw its prompt). Every figure is the mean over `--repeats` seeds (insertion order, seed models, prompt
samples).

    python bench/arena.py --judge-run runs/m13/lgbm --out docs/figures/arena
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from analysis.arena.answers import AnswerBook  # noqa: E402
from analysis.arena.judges import graded_oracle, run_judge  # noqa: E402
from analysis.arena.procedure import Arena, ArenaSettings  # noqa: E402
from competition.folds import prompt_groups  # noqa: E402
from data.loader import load_arena_csv  # noqa: E402


def spearman(arena: Arena, models: list[str], truth: pd.Series) -> float:
    return float(spearmanr(arena.fitted(models).ratings_, truth.loc[models]).statistic)


def random_pairs(book: AnswerBook, judge, models: list[str], judgments: int, settings: ArenaSettings) -> Arena:
    """`judgments` judgments on uniformly drawn (pair, prompt) combinations."""
    arena = Arena(book, {"judge": judge}, settings)
    rng = np.random.default_rng(settings.seed + 7919)
    pairs = [(x, y) for i, x in enumerate(models) for y in models[i + 1 :]]
    keys = []
    while len(keys) < judgments:
        x, y = pairs[rng.integers(len(pairs))]
        keys.append((rng.choice(book.shared_prompts(x, y)), x, y))
    arena.log.add(keys, judge.judge(keys))
    arena.asked.update(dict.fromkeys(keys))
    return arena


def one_setting(book, judge, models, truth, k: int, seed: int, n_seeds: int) -> list[dict]:
    settings = ArenaSettings(prompts_per_comparison=k, coarse_prompts=max(2, k // 2), window=1, seed=seed)
    order = list(np.random.default_rng(seed).permutation(models))
    full = Arena(book, {"judge": judge}, settings)
    full.round_robin(models)
    inserted = Arena(book, {"judge": judge}, settings)
    inserted.rank(order[:n_seeds], order[n_seeds:])
    rand = random_pairs(book, judge, models, len(inserted.asked), settings)
    return [
        {
            "method": name,
            "prompts_per_comparison": k,
            "seed": seed,
            "judgments": len(a.asked),
            "spearman": spearman(a, models, truth),
        }
        for name, a in (("round-robin", full), ("binary insertion", inserted), ("random pairs", rand))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="../shared/data/arena-bench-pairs/train.csv")
    parser.add_argument("--grades", default="../shared/data/arena-bench-pairs/grades.csv")
    parser.add_argument("--judge-run", default="runs/m13/lgbm", help="a cv run whose out-of-fold predictions judge")
    parser.add_argument("--prompts", default="10,20,40")
    parser.add_argument("--noise", default="0,2", help="oracle noise sds (grade points, grades are 1-10)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="seed models ranked round-robin")
    parser.add_argument("--out", default="", help="folder for arena_curve.csv / .png")
    args = parser.parse_args()

    frame = load_arena_csv(args.train, require_labels=True)
    book = AnswerBook.from_pairs(frame, args.train)
    grades = pd.read_csv(args.grades).rename(columns={"question_id": "prompt"})
    truth = grades.groupby("model")["grade"].mean()
    models = list(book.models)
    judges = {f"oracle, noise {n}": graded_oracle(grades, book, float(n), 0) for n in args.noise.split(",")}
    if args.judge_run:
        judges["LightGBM out of fold"] = run_judge(args.judge_run, frame, prompt_groups(frame).astype(str).to_numpy())
    rows = []
    for name, judge in judges.items():
        for k in (int(v) for v in args.prompts.split(",")):
            for seed in range(args.repeats):
                rows += [r | {"judge": name} for r in one_setting(book, judge, models, truth, k, seed, args.seeds)]
    table = pd.DataFrame(rows)
    summary = table.groupby(["judge", "prompts_per_comparison", "method"]).agg(
        judgments=("judgments", "mean"), spearman=("spearman", "mean"), spearman_sd=("spearman", "std")
    )
    out = {"models": len(models), "repeats": args.repeats, "seed_models": args.seeds, "by_setting": []}
    for (judge, k), part in summary.groupby(level=[0, 1]):
        part = part.droplevel([0, 1])
        rr, ins = part.loc["round-robin"], part.loc["binary insertion"]
        out["by_setting"].append(
            {
                "judge": judge,
                "prompts_per_comparison": int(k),
                **{f"{m}: spearman": round(float(part.loc[m, "spearman"]), 4) for m in part.index},
                **{f"{m}: judgments": float(part.loc[m, "judgments"]) for m in part.index},
                "insertion share of round-robin judgments": float(ins["judgments"] / rr["judgments"]),
                "insertion minus round-robin spearman": float(ins["spearman"] - rr["spearman"]),
            }
        )
    out["prompt_selection"] = selection_figures(book, frame, judges, truth, grades, models, args)
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        summary.reset_index().to_csv(folder / "arena_curve.csv", index=False)
        plot(summary.reset_index(), folder / "arena_curve.png")
    print(json.dumps(out, indent=2))


def selection_figures(book, frame, judges, truth, grades, models, args, k: int = 10) -> list[dict]:
    """Per category: all models ranked round-robin on k selected prompts vs k random prompts of the category
    (Spearman with the category's own mean-grade ranking), mean over repeats of the seed models."""
    from analysis.arena.selection import select_prompts
    from analysis.dissection.scenarios import scenarios

    category = dict(zip(prompt_groups(frame).astype(str), scenarios(frame["prompt"]), strict=True))
    rows = []
    for name in ("code", "math", "writing"):
        pool = sorted(p for p, c in category.items() if c == name)
        local_truth = grades[grades["prompt"].isin(pool)].groupby("model")["grade"].mean()
        for judge_name, judge in judges.items():
            chosen_s, random_s = [], []
            for seed in range(args.repeats):
                rng = np.random.default_rng(seed)
                seeds = list(rng.choice(models, size=4, replace=False))
                for prompts, sink in (
                    (select_prompts(book, judge, seeds, pool, k), chosen_s),
                    (list(rng.choice(pool, size=k, replace=False)), random_s),
                ):
                    sink.append(round_robin_on(book, judge, models, prompts, local_truth))
            rows.append(
                {
                    "category": name,
                    "pool": len(pool),
                    "judge": judge_name,
                    "k": k,
                    "selected: spearman": float(np.mean(chosen_s)),
                    "random: spearman": float(np.mean(random_s)),
                }
            )
    return rows


def round_robin_on(book, judge, models, prompts, truth) -> float:
    from models.bradley_terry import BradleyTerry

    keys = [
        (p, x, y)
        for p in prompts
        for i, x in enumerate(models)
        for y in models[i + 1 :]
        if (p, x) in book.answers and (p, y) in book.answers
    ]
    probs = judge.judge(keys)
    index = {m: i for i, m in enumerate(models)}
    a = np.array([index[k[1]] for k in keys])
    b = np.array([index[k[2]] for k in keys])
    fit = BradleyTerry(len(models), "half", l2=1e-6).fit(a, b, probs[:, 0] + probs[:, 2] / 2)
    return float(spearmanr(fit.ratings_, truth.loc[models]).statistic)


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judges = list(dict.fromkeys(summary["judge"]))
    fig, axes = plt.subplots(1, len(judges), figsize=(4.2 * len(judges), 3.6), sharey=True)
    for ax, judge in zip(np.atleast_1d(axes), judges, strict=True):
        for method, part in summary[summary["judge"] == judge].groupby("method"):
            part = part.sort_values("judgments")
            ax.errorbar(part["judgments"], part["spearman"], yerr=part["spearman_sd"], marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_title(judge)
        ax.set_xlabel("judgments")
    np.atleast_1d(axes)[0].set_ylabel("Spearman with the mean-grade ranking")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
