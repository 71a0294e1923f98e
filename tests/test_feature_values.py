"""Feature values stay what they were: every default group on the sample test file plus rows that stress
tokenisation (tabs, CR, odd spaces, case folding, scripts, long texts), against a table written by the code
before the speed-up (commit b8e1458)."""

import json
from pathlib import Path

import pandas as pd

from competition.folds import prompt_groups
from data.loader import load_arena_csv
from features.registry import DEFAULT_GROUPS, as_alone, build_features

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "fixtures" / "feature_reference.parquet"
LONG = "Word " * 150 + "I'm sorry, I cannot help with that. " + "ΣΟΦΟΣ ὈΔΌΣ 123 ٣٤٥ ＡＢＣ１２ " * 60
TEXTS = (
    "Tab\tseparated\twords  double  spaces \n\n trailing ",
    "\r\nWindows\r\nlines\r\n and\u00a0non-breaking\u3000ideographic spaces",
    "ΟΔΟΣ ΣΟΦΟΣ İstanbul STRASSE Straße ǅemal The the THE",
    "👍🏽 great! Really?? ¿Qué tal? 我无法帮助 申し訳ありません 죄송합니다",
    "## Header\n\n- **bold** point\n* item two\n• bullet\n1) first\n2. second\n\n| a | b |\n|---|---|\n"
    "```python\nprint('x')\n```\n`inline` [link](http://x.org) https://y.com __under__",
    "However, it depends. I'm not sure; consult a doctor. Unfortunately my apologies.",
    LONG,
    LONG[::-1],
    "   \n  ",
    "",
    "!!! ??? ... ,,, ;;; :::",
    "Same words here in order",
    "order in here words Same",
    "x" * 1200 + "é" * 5,
)
PROMPTS = ('["Write a SQL query"]', '["Hi", null, "again"]', '["ΟΔΟΣ?\\tcode please"]')


def edge_rows() -> pd.DataFrame:
    """Each prompt gets several rows so consensus sees shared and repeated answers."""
    rows = []
    for p, prompt in enumerate(PROMPTS):
        for i, text in enumerate(TEXTS):
            other = TEXTS[(i * 5 + p + 1) % len(TEXTS)]
            turns_b = [other, None] if i % 4 == 1 else [other]
            rows.append(
                {"id": f"edge{p}_{i}", "prompt": prompt, "response_a": json.dumps([text]), "response_b": json.dumps(turns_b)}
            )
        rows.append(
            {"id": f"edge{p}_dup", "prompt": prompt, "response_a": json.dumps([TEXTS[4]]), "response_b": json.dumps([TEXTS[4]])}
        )
        rows.append({"id": f"edge{p}_null", "prompt": prompt, "response_a": "[null]", "response_b": "{not json"})
    return pd.DataFrame(rows)


def reference_input(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "reference.csv"
    sample = pd.read_csv(ROOT / "data" / "sample" / "test.csv", dtype=str, keep_default_na=False)
    pd.concat([sample, edge_rows()], ignore_index=True).to_csv(path, index=False)
    frame = load_arena_csv(path)
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def reference_table(frame: pd.DataFrame) -> pd.DataFrame:
    whole = build_features(frame, DEFAULT_GROUPS, cache_dir=None)
    alone = build_features(as_alone(frame), ("consensus",), cache_dir=None).add_prefix("alone:")
    return pd.concat([frame[["id"]], whole, alone], axis=1)


def test_feature_values_equal_the_reference(tmp_path):
    expected = pd.read_parquet(REFERENCE)
    actual = reference_table(reference_input(tmp_path))
    assert list(actual.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(actual, expected, check_exact=True)


def test_a_file_without_repeated_texts_gets_the_reference_values(tmp_path):
    """Rows whose texts appear nowhere else take the path that evaluates in place (nothing to share)."""
    frame = reference_input(tmp_path)
    seen, keep = set(), []
    for row in frame[["prompt", "response_a", "response_b"]].itertuples(index=False):
        texts = {json.dumps(turns) for turns in row}
        keep.append(len(texts) == 3 and not texts & seen)
        seen |= texts if keep[-1] else set()
    subset = frame[keep].reset_index(drop=True)
    assert len(subset) >= 6  # one row per prompt: the sample has 4 prompts, the edge rows 3
    expected = pd.read_parquet(REFERENCE).set_index("id").loc[subset["id"]].reset_index()
    actual = reference_table(as_alone(subset))
    per_row = [c for c in expected.columns if not c.startswith("consensus__")]
    pd.testing.assert_frame_equal(actual[per_row], expected[per_row], check_exact=True)
