"""The `answer_score` feature group: one score per answer from a GBDT with a pairwise (Davidson) objective.

A trained group. LightGBM fits a function s(answer) over *answer rows*: the per-answer columns (`g__a_x` of an
answer when it is A, `g__b_x` when it is B) and the prompt's columns (`g__prompt_x`) of the computed groups the
frame carries; model names are never used. Each distinct (prompt, answer) is one row, so an answer in twelve
pairs is one row whose gradient sums its twelve pairs. The objective is the pairs' Davidson log likelihood: pair
(A, B) has logits ((s_A − s_B)/2, −(s_A − s_B)/2, log ν), the tie parameter ν fixed at the training pairs' tie
rate while boosting and refitted on held-out prompts' pairs afterwards. Gradient and hessian are analytic
(`pair_gradients`, checked against finite differences by the tests); the rounds are chosen on held-out prompts.

Columns for a pair: each answer's score, and their difference (d, the Davidson log-odds of A over B). The
estimator that stacks it (models/lgbm.py) fits it nested by prompt, like `author`; models/answer_gbdt.py uses
it alone as a model family. State is plain arrays (the booster as UTF-8 bytes): saved as .npz without pickle.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from competition.errors import InputError
from competition.folds import prompt_groups
from competition.labels import CLASS_A, CLASS_B, CLASS_TIE

VERSION = 1
NAME = "answer_score"
EXCLUDED_GROUPS = ("model_names", NAME)  # names are not known at scoring time; never its own output


def davidson_log_probabilities(d: np.ndarray, log_nu: float) -> np.ndarray:
    """(n, 3) log P(a), P(b), P(tie) of pairs whose score difference is d = s_A − s_B."""
    d = np.asarray(d, dtype=np.float64)
    return log_softmax(np.stack([d / 2, -d / 2, np.full_like(d, log_nu)], axis=1), axis=1)


def pair_log_loss(scores: np.ndarray, side_a: np.ndarray, side_b: np.ndarray, y: np.ndarray, log_nu: float) -> float:
    """Summed negative log likelihood of the pairs (the objective the boosting minimises)."""
    log_probs = davidson_log_probabilities(scores[side_a] - scores[side_b], log_nu)
    return float(-log_probs[np.arange(len(y)), y].sum())


def pair_gradients(
    scores: np.ndarray, side_a: np.ndarray, side_b: np.ndarray, y: np.ndarray, log_nu: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per answer: first and second derivative of `pair_log_loss` in its own score, summed over its pairs.

    With p = softmax(d/2, −d/2, log ν): dL/dd = ((p_a − p_b) − ([y=a] − [y=b]))/2 and
    d²L/dd² = ((p_a + p_b) − (p_a − p_b)²)/4; s_A enters d with +1 and s_B with −1.
    """
    p = np.exp(davidson_log_probabilities(scores[side_a] - scores[side_b], log_nu))
    wins = (y == CLASS_A).astype(np.float64) - (y == CLASS_B).astype(np.float64)
    first = ((p[:, 0] - p[:, 1]) - wins) / 2
    second = ((p[:, 0] + p[:, 1]) - (p[:, 0] - p[:, 1]) ** 2) / 4
    n = len(scores)
    grad = np.bincount(side_a, first, minlength=n) - np.bincount(side_b, first, minlength=n)
    hess = np.bincount(side_a, second, minlength=n) + np.bincount(side_b, second, minlength=n)
    return grad, hess


def fit_log_nu(d: np.ndarray, y: np.ndarray) -> float:
    """The tie parameter maximising the pairs' likelihood given their score differences."""
    if len(y) == 0:
        return 0.0
    rows = np.arange(len(y))
    fit = minimize_scalar(lambda t: -davidson_log_probabilities(d, t)[rows, y].sum(), bounds=(-10, 10), method="bounded")
    return float(fit.x)


def answer_columns(columns) -> tuple[list[str], list[str], list[str]]:
    """(A-side columns, the matching B-side columns, prompt columns) among a pair table's columns."""
    present = set(columns)
    side_a, side_b, prompt = [], [], []
    for col in columns:
        group, _, rest = col.partition("__")
        if not rest or group in EXCLUDED_GROUPS:
            continue
        if rest.startswith("a_") and f"{group}__b_{rest[2:]}" in present:
            side_a.append(col)
            side_b.append(f"{group}__b_{rest[2:]}")
        elif rest.startswith("prompt_"):
            prompt.append(col)
    return side_a, side_b, prompt


def _answer_name(column: str) -> str:
    group, _, rest = column.partition("__")
    return f"{group}__{rest[2:]}"


def answer_table(frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(one row per distinct (prompt, answer) with its features, index of each pair's A answer, of its B answer)."""
    side_a, side_b, prompt = answer_columns(columns)
    groups = frame["group"] if "group" in frame.columns else prompt_groups(frame)
    names = [_answer_name(c) for c in side_a] + prompt
    halves = []
    for side, cols in (("response_a", side_a), ("response_b", side_b)):
        half = frame[cols + prompt].set_axis(names, axis=1).reset_index(drop=True)
        half["key"] = [f"{g}\x00{r!r}" for g, r in zip(groups, frame[side], strict=True)]
        halves.append(half)
    both = pd.concat(halves, ignore_index=True)
    codes, uniques = pd.factorize(both["key"])
    first = pd.Series(np.arange(len(both))).groupby(codes).first().to_numpy()
    table = both.iloc[first][names].reset_index(drop=True)
    n = len(frame)
    return table, codes[:n].astype(np.int64), codes[n:].astype(np.int64)


class AnswerScorer:
    """fit(frame with feature columns, y) then transform(frame) → the group's columns; state() ↔ from_state()."""

    def __init__(
        self,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_data_in_leaf: int = 20,
        max_rounds: int = 2000,
        early_stopping_rounds: int = 100,
        stop_share: float = 0.15,
        seed: int = 0,
        num_threads: int = 1,  # a few thousand answer rows: a second thread adds little and spin-waits on a busy CPU
    ):
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.stop_share = stop_share
        self.seed = seed
        self.num_threads = num_threads

    def _params(self, n_rows: int) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            # a few answers (small files, inner folds of tests) still get splits
            "min_data_in_leaf": min(self.min_data_in_leaf, max(2, n_rows // 20)),
            "feature_fraction": 0.8,
            "lambda_l2": 1.0,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "verbose": -1,
            "metric": "None",
        }

    def _boost(self, table: pd.DataFrame, side_a, side_b, y, log_nu: float, rounds: int, watched=None) -> lgb.Booster:
        def objective(preds, _data):
            return pair_gradients(preds, side_a, side_b, y, log_nu)

        params = self._params(len(table)) | {"objective": objective}
        data = lgb.Dataset(table, np.zeros(len(table)), free_raw_data=False)
        if watched is None:
            return lgb.train(params, data, rounds)
        w_table, w_a, w_b, w_y = watched

        def pair_loss(preds, _data):
            return "pair_log_loss", pair_log_loss(preds, w_a, w_b, w_y, log_nu) / len(w_y), False

        valid = lgb.Dataset(w_table, np.zeros(len(w_table)), reference=data)
        stop = lgb.early_stopping(self.early_stopping_rounds, verbose=False)
        return lgb.train(params, data, rounds, valid_sets=[valid], feval=pair_loss, callbacks=[stop])

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> AnswerScorer:
        """Rounds and ν from held-out prompts' pairs, then a refit on every pair with that many rounds."""
        y = np.asarray(y, dtype=np.int64)
        side_a, _, _ = answer_columns(frame.columns)
        if not side_a:
            raise InputError(f"feature group {NAME!r} needs per-answer feature columns (a computed group such as 'lengths')")
        self.columns_ = [c for c in frame.columns if c in set(sum(answer_columns(frame.columns), []))]
        groups = (frame["group"] if "group" in frame.columns else prompt_groups(frame)).astype(str).to_numpy()
        prompts = np.unique(groups)
        if len(prompts) < 2:
            raise InputError(f"feature group {NAME!r} needs rows from at least two prompts")
        rng = np.random.default_rng(self.seed)
        held = np.isin(groups, rng.choice(prompts, size=max(1, round(self.stop_share * len(prompts))), replace=False))
        tie_rate = float(np.clip(np.mean(y == CLASS_TIE), 1e-3, 1 - 1e-3))
        log_nu = float(np.log(2 * tie_rate / (1 - tie_rate)))  # the likelihood's maximum when every d is 0
        fit_part = answer_table(frame.iloc[np.flatnonzero(~held)], self.columns_)
        stop_part = answer_table(frame.iloc[np.flatnonzero(held)], self.columns_)
        probe = self._boost(*fit_part, y[~held], log_nu, self.max_rounds, (*stop_part, y[held]))
        self.rounds_ = max(1, int(round(probe.best_iteration / (1 - self.stop_share))))
        stop_scores = probe.predict(stop_part[0], num_iteration=probe.best_iteration)
        self.log_nu_ = fit_log_nu(stop_scores[stop_part[1]] - stop_scores[stop_part[2]], y[held])
        self.booster_ = self._boost(*answer_table(frame, self.columns_), y, log_nu, self.rounds_)
        return self

    def scores(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(score of each pair's A answer, of its B answer)."""
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise InputError(f"feature group {NAME!r} needs column {missing[0]!r}, which the frame lacks")
        side_a, side_b, prompt = answer_columns(self.columns_)
        names = [_answer_name(c) for c in side_a] + prompt
        score = lambda cols: self.booster_.predict(frame[cols + prompt].set_axis(names, axis=1))  # noqa: E731
        return score(side_a), score(side_b)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        a, b = self.scores(frame)
        out = {f"{NAME}__a_score": a, f"{NAME}__b_score": b, f"{NAME}__diff_score": a - b}
        return pd.DataFrame(out, index=frame.index, dtype=np.float64)

    def state(self) -> dict[str, np.ndarray]:
        settings = [self.learning_rate, self.num_leaves, self.min_data_in_leaf, self.max_rounds]
        settings += [self.early_stopping_rounds, self.stop_share, self.seed, self.num_threads, VERSION]
        return {
            "columns": np.asarray(self.columns_, dtype=str),
            "booster": np.frombuffer(self.booster_.model_to_string().encode("utf-8"), dtype=np.uint8),
            "log_nu": np.asarray([self.log_nu_, self.rounds_], dtype=np.float64),
            "settings": np.asarray(settings, dtype=np.float64),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> AnswerScorer:
        rate, leaves, min_data, rounds, stopping, share, seed, threads, version = state["settings"]
        if int(version) != VERSION:
            raise InputError(f"answer scorer of version {int(version)}; this code reads version {VERSION}")
        model = cls(float(rate), int(leaves), int(min_data), int(rounds), int(stopping), float(share), int(seed), int(threads))
        model.columns_ = [str(c) for c in state["columns"]]
        model.booster_ = lgb.Booster(model_str=state["booster"].tobytes().decode("utf-8"))
        model.log_nu_, model.rounds_ = float(state["log_nu"][0]), int(state["log_nu"][1])
        return model
