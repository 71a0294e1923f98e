"""The graded study of bench/arena.py: judge-crowd ranking of the 13 models of arena-bench-pairs.

Truth: the models' ranking by mean grade over all prompts. Judges: the graded outcomes (an oracle, with normal
noise on the grades) and a run's out-of-fold predictions (each pair judged by a model that never saw its
prompt). Per judge and prompts per comparison: round-robin, binary insertion, and random pairs given exactly
the insertion's number of judgments; every figure is the mean over `--repeats` seeds. Then prompt selection
per category.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.arena.answers import AnswerBook
from analysis.arena.judges import graded_oracle, run_judge
from analysis.arena.procedure import Arena, ArenaSettings
from competition.folds import prompt_groups
from data.loader import load_arena_csv


def spearman(arena: Arena, models: list[str], truth: pd.Series) -> float:
    return float(spearmanr(arena.fitted(models).ratings_, truth.loc[models]).statistic)


def random_pairs(arena: Arena, models: list[str], checkpoints: list[int], seed: int, measure) -> list[tuple[int, float]]:
    """Verdicts one at a time on a uniformly drawn pair (among pairs with items left), the pair's next item;
    (judgments, measure) at each checkpoint. Every judgment is a new one: the count is exact."""
    rng = np.random.default_rng(seed + 7919)
    left = {(x, y): len(arena.sample(x, y)) for i, x in enumerate(models) for y in models[i + 1 :]}
    left = {pair: n for pair, n in left.items() if n > 0}
    arena.ranked = list(models)
    used = dict.fromkeys(left, 0)
    points = []
    for target in sorted(checkpoints):
        while arena.judgments() < target and left:
            pairs = list(left)
            pair = pairs[rng.integers(len(pairs))]
            used[pair] += 1
            arena.compare(*pair, used[pair])
            if used[pair] == left[pair]:
                del left[pair]
        points.append((arena.judgments(), measure(arena)))
    return points


def one_setting(book, judge, models, truth, k: int, seed: int, n_seeds: int) -> list[dict]:
    settings = ArenaSettings(prompts_per_comparison=k, coarse_prompts=max(2, k // 2), window=1, seed=seed)
    order = list(np.random.default_rng(seed).permutation(models))
    full = Arena(book, {"judge": judge}, settings)
    full.round_robin(models)
    inserted = Arena(book, {"judge": judge}, settings)
    inserted.rank(order[:n_seeds], order[n_seeds:])
    rand = Arena(book, {"judge": judge}, settings)
    random_pairs(rand, models, [inserted.judgments()], seed, lambda arena: None)
    return [
        {
            "method": name,
            "prompts_per_comparison": k,
            "seed": seed,
            "judgments": a.judgments(),
            "spearman": spearman(a, models, truth),
        }
        for name, a in (("round-robin", full), ("binary insertion", inserted), ("random pairs", rand))
    ]


def graded_study(args) -> dict:
    frame = load_arena_csv(args.train, require_labels=True)
    book = AnswerBook.from_pairs(frame, args.train)
    grades = pd.read_csv(args.grades).rename(columns={"question_id": "prompt"}).astype({"prompt": str})
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
    out["prompt_selection"] = selection_figures(book, frame, judges, grades, models, args)
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        summary.reset_index().to_csv(folder / "arena_curve.csv", index=False)
        plot(summary.reset_index(), folder / "arena_curve.png")
    return out


def selection_figures(book, frame, judges, grades, models, args, k: int = 10) -> list[dict]:
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
