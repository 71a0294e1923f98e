"""Quality-vs-cost figure (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.leaderboard.plots import plt, save_figure


def plot_curve(curve: pd.DataFrame, summary: dict, path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for policy, style in (("oracle", "k--"), ("router", "C0-")):
        part = curve[curve["policy"] == policy].sort_values("mean_cost")
        ax.plot(part["mean_cost"], part["mean_grade"], style, marker=".", label=f"{policy} under a budget")
    known = {"oracle", "router", "best_single", "random"}
    others = [p for p in curve["policy"].unique() if p not in known and not p.startswith("single:")]
    for colour, policy in enumerate(others, start=4):  # C0-C3 mark the ridge router, oracle and baselines
        part = curve[curve["policy"] == policy].sort_values("mean_cost")
        ax.plot(
            part["mean_cost"], part["mean_grade"], f"C{colour}-", marker=".", label=f"{policy.replace('_', ' ')} under a budget"
        )
        point = summary.get(f"{policy}_at_budget")
        if point:
            label = f"{policy.replace('_', ' ')} at budget"
            ax.scatter([point["mean_cost"]], [point["mean_grade"]], marker="*", s=80, color=f"C{colour}", zorder=3, label=label)
    singles = curve[curve["policy"].str.startswith("single:")]
    ax.scatter(singles["mean_cost"], singles["mean_grade"], s=14, c="C1", label="single models")
    for row in singles.itertuples():
        ax.annotate(
            row.policy.split(":", 1)[1], (row.mean_cost, row.mean_grade), fontsize=6, xytext=(3, 2), textcoords="offset points"
        )
    for key, marker, label in (
        ("random", "x", "random"),
        ("router_at_budget", "*", "router at budget"),
        ("oracle_at_budget", "P", "oracle at budget"),
    ):
        ax.scatter([summary[key]["mean_cost"]], [summary[key]["mean_grade"]], marker=marker, s=80, label=label, zorder=3)
    ax.axvline(summary["budget_per_prompt"], color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per prompt (illustrative price units)")
    ax.set_ylabel(f"mean {summary.get('quality', 'grade')} achieved (out of fold)")
    ax.set_title(f"routing on {summary['prompts']} prompts, {summary['models']} models")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)
