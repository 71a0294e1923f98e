"""Judge-crowd ranking figures, as JSON + CSV + PNG.

python bench/arena.py votes [--sizes 13,26,53] [--repeats 5] [--out docs/figures]
    Human votes as the judge, at scale: arena-140k's recorded battles replayed (analysis/arena/votes.py). Truth:
    the Bradley-Terry ranking fitted on all votes among the models ranked. For 13, 26 and 53 models (a seeded
    draw of the 53, or all), Spearman with the truth against the votes used, for the full round-robin at k votes
    per pair, De-Arena's binary insertion at k votes per comparison, random pairs (a uniformly drawn pair's next
    vote, the same sample without replacement), and the adaptive procedure (insertion at a small k, then
    analysis/arena/adaptive.py). Mean ± sd over `--repeats` seeds (model draw, seed models, insertion order,
    vote samples).
python bench/arena.py bound [--step 5]
    What any allocation of votes could reach on arena-140k's 53 models (bench/arena_bound.py): expected
    discordant pairs of round-robin and of a greedy allocation that knows the true ratings, at shares of
    round-robin's votes at k = 10.
python bench/arena.py graded [--judge-run runs/m13/lgbm] [--out docs/figures]
    arena-bench-pairs (13 models, graded answers): truth the mean-grade ranking; judges the graded oracle with
    noise and a run's out-of-fold predictions; round-robin, insertion and random pairs with the insertion's
    number of judgments; prompt selection per category.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from arena_graded import random_pairs, spearman  # noqa: E402

from analysis.arena.adaptive import spend  # noqa: E402
from analysis.arena.procedure import Arena, ArenaSettings  # noqa: E402
from models.bradley_terry import BradleyTerry, aggregate  # noqa: E402

FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)  # checkpoints, as shares of the round-robin's votes at k = 10


def vote_world(battles: pd.DataFrame, models: list[str]):
    from analysis.arena.votes import RecordedVotes

    inside = battles[battles["model_a"].isin(models) & battles["model_b"].isin(models)]
    index = {m: i for i, m in enumerate(models)}
    a, b = inside["model_a"].map(index).to_numpy(), inside["model_b"].map(index).to_numpy()
    truth = BradleyTerry(len(models), "half", l2=1e-6).fit(*aggregate(a, b, inside["outcome"].to_numpy())).ratings_
    return RecordedVotes(inside), pd.Series(truth, index=models)


def votes_one(battles: pd.DataFrame, all_models: list[str], size: int, seed: int, args) -> list[dict]:
    rng = np.random.default_rng(seed)
    models = sorted(all_models) if size >= len(all_models) else sorted(rng.choice(all_models, size, replace=False))
    votes, truth = vote_world(battles, models)
    rows = []

    def row(method: str, k, judgments: int, value: float, seconds: float = 0.0) -> None:
        rows.append(
            {"models": size, "seed": seed, "method": method, "k": k, "votes": judgments, "spearman": value, "seconds": seconds}
        )

    def fresh(k: int, coarse: int) -> Arena:
        return Arena(votes, {"votes": votes}, ArenaSettings(prompts_per_comparison=k, coarse_prompts=coarse, seed=seed))

    def measure(arena: Arena) -> float:
        return spearman(arena, models, truth)

    robin = fresh(max(args.rr_k), 1)
    robin.ranked = list(models)
    for k in sorted(args.rr_k):
        started = time.perf_counter()
        for i, x in enumerate(models):
            for y in models[i + 1 :]:
                if robin.comparable(x, y):
                    robin.compare(x, y, k)
        row("round-robin", k, robin.judgments(), measure(robin), time.perf_counter() - started)
    reference = next(r["votes"] for r in rows if r["method"] == "round-robin" and r["k"] == 10)
    checkpoints = [int(f * reference) for f in FRACTIONS]
    order = list(np.random.default_rng(seed).permutation(models))
    for k in args.insertion_k:
        started = time.perf_counter()
        arena = fresh(k, max(1, k // 2))
        arena.rank(order[:3], order[3:])
        row("insertion", k, arena.judgments(), measure(arena), time.perf_counter() - started)
    started = time.perf_counter()
    arena = fresh(args.adaptive_k, max(1, args.adaptive_k // 2))
    arena.rank(order[:3], order[3:])
    row("adaptive", args.adaptive_k, arena.judgments(), measure(arena), time.perf_counter() - started)
    pending = [c for c in checkpoints if c > arena.judgments()]

    def record(state: Arena) -> None:
        while pending and state.judgments() >= pending[0]:
            row("adaptive", args.adaptive_k, state.judgments(), measure(state), time.perf_counter() - started)
            pending.pop(0)

    spend(arena, max(checkpoints), args.step, progress=record)
    record(arena)
    budgets = sorted({*checkpoints, *(r["votes"] for r in rows)})
    for judgments, value in random_pairs(fresh(1, 1), models, budgets, seed, measure):
        row("random pairs", None, judgments, value)
    return rows


def votes_study(args) -> dict:
    from data.battles import read_battles

    battles = read_battles(args.battles)
    all_models = sorted(set(battles["model_a"]) | set(battles["model_b"]))
    rows = []
    for size in args.sizes:
        for seed in range(args.repeats):
            rows += votes_one(battles, all_models, size, seed, args)
            print(f"models {size}, seed {seed}: done", file=sys.stderr, flush=True)
            if args.out:  # every finished seed is kept: a long study stopped early still leaves its runs
                Path(args.out).mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(Path(args.out) / "arena_votes_runs.csv", index=False)
    return summarise_runs(pd.DataFrame(rows), args)


def summarise_runs(table: pd.DataFrame, args) -> dict:
    """The curve (means ± sd over seeds at matching points), the target check, and the files under `args.out`."""
    table = table.assign(point=point_labels(table))
    curve = summarise(table)
    out = {"battles": args.battles, "repeats": int(table["seed"].nunique()), "sizes": sorted(table["models"].unique())}
    out |= {"curve": curve.to_dict("records"), "target_53": target_check(curve)}
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        table.drop(columns="point").to_csv(folder / "arena_votes_runs.csv", index=False)
        curve.to_csv(folder / "arena_votes_curve.csv", index=False)
        plot_votes(curve, folder / "arena_votes_curve.png")
    return out


def point_labels(table: pd.DataFrame) -> list[str]:
    """What each measurement is averaged with across seeds: k for round-robin and insertion; for adaptive and random
    pairs the budget it was taken at (a share of the seed's round-robin k = 10 votes, or another method's count),
    since at 13 and 26 models each seed draws other models and the counts differ."""
    labels = []
    for _, part in table.groupby(["models", "seed"], sort=False):
        reference = part[(part["method"] == "round-robin") & (part["k"] == 10)]["votes"].iloc[0]
        shares = {int(f * reference): f"{f:.0%} of round-robin k=10" for f in FRACTIONS}
        inserted = part[part["method"] == "adaptive"]["votes"].min()
        named = {
            v: f"{m} k={k:g}"
            for m, k, v in part[part["method"].isin(["round-robin", "insertion"])][["method", "k", "votes"]].to_numpy()
        }
        for index, (method, k, votes) in zip(part.index, part[["method", "k", "votes"]].to_numpy(), strict=True):
            if method in ("round-robin", "insertion"):
                label = f"k={k:g}"
            elif method == "adaptive":
                passed = [f for c, f in shares.items() if c <= votes]
                label = passed[-1] if passed else "after insertion"
            else:
                label = shares.get(votes) or named.get(votes) or ("after insertion" if votes == inserted else "")
            labels.append((index, label))
    return [label for _, label in sorted(labels)]


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd per size, method and point (random pairs' checks at the adaptive run's other counts are left out)."""
    return (
        table[table["point"] != ""]
        .groupby(["models", "method", "point"], sort=False)
        .agg(k=("k", "first"), votes=("votes", "mean"), spearman=("spearman", "mean"), spearman_sd=("spearman", "std"))
        .reset_index()
        .sort_values(["models", "method", "votes"], ignore_index=True)
    )


def target_check(curve: pd.DataFrame) -> dict:
    """At 53 models: the fewest votes at which the adaptive procedure's mean Spearman reaches round-robin's at k = 10,
    and random pairs' Spearman at the same checkpoints."""
    part = curve[curve["models"] == curve["models"].max()]
    reference = part[(part["method"] == "round-robin") & (part["k"] == 10)].iloc[0]
    adaptive, rand = part[part["method"] == "adaptive"], part[part["method"] == "random pairs"]
    reached = adaptive[adaptive["spearman"] >= reference["spearman"]]
    beside = []
    for _, point in adaptive.iterrows():
        same = rand[rand["point"] == point["point"]]
        if len(same):
            beside.append({"point": point["point"], "adaptive": point["spearman"], "random pairs": same["spearman"].iloc[0]})
    return {
        "round_robin_k10": {"votes": reference["votes"], "spearman": reference["spearman"]},
        "adaptive_reaches_it_at_votes": None if reached.empty else float(reached["votes"].min()),
        "adaptive_at_60_percent": float(np.interp(0.6 * reference["votes"], adaptive["votes"], adaptive["spearman"])),
        "adaptive_vs_random_pairs": beside,
    }


def plot_votes(curve: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(curve["models"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.4 * len(sizes), 3.8))
    for ax, size in zip(np.atleast_1d(axes), sizes, strict=True):
        for method, part in curve[curve["models"] == size].groupby("method", sort=False):
            style = "o" if method == "insertion" else "-o"
            ax.errorbar(part["votes"], part["spearman"], yerr=part["spearman_sd"], fmt=style, capsize=2, ms=3, label=method)
        ax.set_xscale("log")
        ax.set_title(f"{size} models")
        ax.set_xlabel("votes used")
        ax.set_ylim(max(0.5, curve[curve["models"] == size]["spearman"].min() - 0.05), 1.0)
    np.atleast_1d(axes)[0].set_ylabel("Spearman with the all-votes ranking")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="study", required=True)
    votes = sub.add_parser("votes")
    votes.add_argument("--battles", default="../shared/data/arena-140k-battles/battles.csv")
    votes.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[13, 26, 53])
    votes.add_argument("--repeats", type=int, default=5)
    votes.add_argument("--rr-k", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3, 5, 10, 20])
    votes.add_argument("--insertion-k", type=lambda s: [int(v) for v in s.split(",")], default=[5, 10, 20])
    votes.add_argument("--adaptive-k", type=int, default=4, help="votes per comparison in the adaptive procedure's insertion")
    votes.add_argument("--step", type=int, default=4, help="fresh votes per adaptive re-comparison")
    votes.add_argument("--out", default="")
    votes.add_argument("--from-runs", default="", help="summarise an earlier study's arena_votes_runs.csv, run nothing")
    graded = sub.add_parser("graded")
    graded.add_argument("--train", default="../shared/data/arena-bench-pairs/train.csv")
    graded.add_argument("--grades", default="../shared/data/arena-bench-pairs/grades.csv")
    graded.add_argument("--judge-run", default="runs/m13/lgbm", help="a cv run whose out-of-fold predictions judge")
    graded.add_argument("--prompts", default="10,20,40")
    graded.add_argument("--noise", default="0,2", help="oracle noise sds (grade points, grades are 1-10)")
    graded.add_argument("--repeats", type=int, default=10)
    graded.add_argument("--seeds", type=int, default=3, help="seed models ranked round-robin")
    graded.add_argument("--out", default="")
    bound = sub.add_parser("bound")
    bound.add_argument("--battles", default="../shared/data/arena-140k-battles/battles.csv")
    bound.add_argument("--step", type=int, default=5, help="votes the oracle adds to a pair at a time")
    args = parser.parse_args()
    if args.study == "votes":
        result = summarise_runs(pd.read_csv(args.from_runs), args) if args.from_runs else votes_study(args)
    elif args.study == "bound":
        from arena_bound import bound_study

        result = bound_study(args)
    else:
        from arena_graded import graded_study

        result = graded_study(args)
    print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
