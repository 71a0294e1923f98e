"""Transformer variants against LightGBM on the rows they share, as JSON: each variant's log loss and skill, how
it ranks the winner, how it correlates with LightGBM, and its blend with LightGBM with weights cross-fitted by
fold (on prompt-grouped sub-folds when the runs share one fold), scored whole-file and "alone".

    python bench/transformer_variants.py --lgbm runs/m13/lgbm --variants runs/m13/cross runs/m13/reward ...

"Alone": LightGBM's `oof_alone.parquet` (each row's features computed as if its file held no other answer to
its prompt) takes the place of its whole-file predictions; the transformers read one row at a time anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from competition.labels import LABEL_COLUMNS  # noqa: E402
from competition.metric import log_loss, score_report  # noqa: E402
from competition.predictions import load_predictions  # noqa: E402
from ensemble.blend import cross_fitted_blend, fit_blend_weights, honest_blend_folds  # noqa: E402


def probabilities(path: Path, ids: np.ndarray) -> np.ndarray:
    frame = load_predictions(path).set_index("id")
    return frame.loc[ids, list(LABEL_COLUMNS)].to_numpy(dtype=np.float64)


def variant_figures(lgbm_dir: Path, variant_dir: Path) -> dict:
    variant = load_predictions(variant_dir / "oof.parquet")
    lgbm = load_predictions(lgbm_dir / "oof.parquet").set_index("id")
    ids = variant["id"].to_numpy()
    y = variant["label"].to_numpy()
    folds = variant["fold"].to_numpy()
    if not np.array_equal(lgbm.loc[ids, "fold"].to_numpy(), folds):
        raise SystemExit(f"{variant_dir} and {lgbm_dir} disagree on folds: not the same fold table")
    groups = lgbm.loc[ids, "group"].to_numpy() if "group" in lgbm.columns else None
    probs = variant[list(LABEL_COLUMNS)].to_numpy(dtype=np.float64)
    blend_folds = honest_blend_folds(y, folds, groups)
    not_tie = y != 2
    out = {
        "rows": len(ids),
        "folds": sorted(int(f) for f in np.unique(folds)),
        "blend_cross_fitted_on": "the runs' folds" if len(np.unique(folds)) >= 2 else "prompt-grouped sub-folds",
        "variant": score_report(y, probs),
        "winner_ranked_first": float(((probs[:, 0] > probs[:, 1]) == (y == 0))[not_tie].mean()),
    }
    for view, file in (("whole_file", "oof.parquet"), ("alone", "oof_alone.parquet")):
        if not (lgbm_dir / file).exists():
            continue
        base = probabilities(lgbm_dir / file, ids)
        blended = cross_fitted_blend([base, probs], y, blend_folds)
        weights = fit_blend_weights([base, probs], y).weights
        out[view] = {
            "lgbm": log_loss(y, base),
            "blend_cross_fitted": log_loss(y, blended),
            "gain": log_loss(y, base) - log_loss(y, blended),
            "in_sample_weights": [float(w) for w in weights],
            "correlation_of_a_minus_b": float(np.corrcoef(probs[:, 0] - probs[:, 1], base[:, 0] - base[:, 1])[0, 1]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lgbm", required=True, help="a LightGBM cv run directory (oof.parquet, oof_alone.parquet)")
    parser.add_argument("--variants", nargs="+", required=True, help="transformer run directories")
    args = parser.parse_args()
    result = {Path(v).name: variant_figures(Path(args.lgbm), Path(v)) for v in args.variants}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
