"""Consistency and format rewards on hand-made groups (docs/math.md, "Rewards"), and the registry."""

import asyncio

import pytest

from self_evolve_trl.rewards import RewardError, RewardValueError, get_reward_function


def boxed(*answers):
    return [f"<think>work</think> \\boxed{{{a}}}" if a is not None else "<think>I give up</think>" for a in answers]


def test_majority_vote_counts_equivalent_answers_as_one_class():
    fn = get_reward_function("majority_vote")
    # 1/2, 0.5 and \frac{1}{2} are one class of 3; "3" is a class of 2 that would win by exact-string counting.
    group = boxed("3", "1/2", "0.5", "3", "\\frac{1}{2}", None)
    assert fn(group, group_size=6) == [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]


def test_majority_vote_exact_matching_splits_the_vote():
    fn = get_reward_function("majority_vote", match="exact")
    group = boxed("3", "1/2", "0.5", "3", "\\frac{1}{2}", None)
    assert fn(group, group_size=6) == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_degrees_and_roots():
    fn = get_reward_function("soft_frequency")
    group = boxed("140°", "140", "2\\sqrt{3}", "\\sqrt{12}", "140^\\circ", "7", None, None)
    assert fn(group, group_size=8) == [3 / 8, 3 / 8, 2 / 8, 2 / 8, 3 / 8, 1 / 8, 0.0, 0.0]


def test_abstentions_get_zero_and_are_not_a_class():
    fn = get_reward_function("majority_vote")
    group = boxed(None, None, None, "5")  # most completions forget the box
    assert fn(group, group_size=4) == [0.0, 0.0, 0.0, 1.0]


def test_abstain_as_answer_reproduces_the_released_behaviour():
    fn = get_reward_function("majority_vote", abstain_as_answer=True)
    group = boxed(None, None, None, "5")
    assert fn(group, group_size=4) == [1.0, 1.0, 1.0, 0.0]  # forgetting the box wins the vote


def test_ties():
    group = boxed("2", "3", "3", "2")
    assert get_reward_function("majority_vote")(group, group_size=4) == [1.0, 0.0, 0.0, 1.0]  # first seen wins
    assert get_reward_function("majority_vote", tie="none")(group, group_size=4) == [0.0] * 4


def test_soft_frequency_hard_threshold():
    group = boxed("4", "4", "4", "4", "4", "4", "4", "9")  # p_max = 7/8 = 0.875 > 0.85
    soft = get_reward_function("soft_frequency")
    hard = get_reward_function("soft_frequency", hard_threshold=0.85)
    assert soft(group, group_size=8) == [7 / 8] * 7 + [1 / 8]
    assert hard(group, group_size=8) == [1.0] * 7 + [0.0]
    below = boxed("4", "4", "4", "4", "4", "4", "9", "9")  # 6/8 = 0.75: stays soft
    assert hard(below, group_size=8) == [0.75] * 6 + [0.25] * 2


def test_soft_frequency_power():
    fn = get_reward_function("soft_frequency", power=2.0)
    assert fn(boxed("1", "1", "2", "1"), group_size=4) == [0.5625, 0.5625, 0.0625, 0.5625]


def test_groups_are_scored_separately():
    fn = get_reward_function("majority_vote")
    completions = boxed("1", "1", "2", "2") + boxed("2", "2", "2", "1")
    assert fn(completions, group_size=4) == [1.0, 1.0, 0.0, 0.0] + [1.0, 1.0, 1.0, 0.0]


def test_partial_groups_are_refused():
    with pytest.raises(ValueError, match="whole groups of 4"):
        get_reward_function("majority_vote")(boxed("1", "2", "3"), group_size=4)


def test_format_penalty():
    fn = get_reward_function("format")
    completions = [
        "<think>a</think> so \\boxed{3}",
        "\\boxed{3}",  # no think
        " <think>a</think> \\boxed{3}",  # must start with <think>
        "<think>a</think> 3",  # no box
        "<think>multi\nline</think>\n\\boxed{3}.",
    ]
    assert fn(completions, group_size=5) == [0.0, -0.5, -0.5, -0.5, 0.0]
    no_think = get_reward_function("format", pattern=r".*\\boxed\{.*\}.*", penalty=1.0)
    assert no_think(completions, group_size=5) == [0.0, 0.0, 0.0, -1.0, 0.0]


def test_conversational_completions():
    fn = get_reward_function("majority_vote")
    completions = [[{"role": "assistant", "content": c}] for c in boxed("1", "1", "2", None)]
    assert fn(completions, group_size=4) == [1.0, 1.0, 0.0, 0.0]


def test_unknown_reward_names_the_valid_ones():
    with pytest.raises(RewardError, match=r"Unknown reward 'majority'.*format, .*majority_vote, .*soft_frequency"):
        get_reward_function("majority")


def test_bad_kwargs_name_the_accepted_ones():
    with pytest.raises(RewardError, match=r"unknown keyword argument\(s\) threshold.*hard_threshold"):
        get_reward_function("soft_frequency", threshold=0.85)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("majority_vote", {"match": "fuzzy"}, "match='fuzzy' is not one of: exact, normalized, math"),
        ("soft_frequency", {"extractor": "last"}, "extractor='last' is not one of: boxed, answer_tag, last_number"),
        ("soft_frequency", {"hard_threshold": "high"}, "hard_threshold='high' is not a float or None"),
        ("soft_frequency", {"abstain_as_answer": "yes"}, "abstain_as_answer='yes' is not a bool"),
        ("format", {"penalty": "x", "pattern": "["}, "penalty='x' is not a float; pattern='[' is not a valid regular"),
        ("judge_modulated", {"on_failure": "skip"}, "on_failure='skip' is not one of: zero, neutral"),
        ("retrace_frequency", {"beta": "1.2"}, "beta='1.2' is not a float"),
    ],
)
def test_bad_kwarg_values_are_refused_when_the_reward_is_built(name, kwargs, message):
    with pytest.raises(RewardValueError) as raised:
        get_reward_function(name, **kwargs)
    assert str(raised.value).startswith(f"Reward {name!r}: ") and message in str(raised.value)


def test_good_kwarg_values_pass():
    assert get_reward_function("soft_frequency", hard_threshold=1, power=2, match="exact", tie="none")
    assert get_reward_function("soft_frequency", hard_threshold=None).kwargs == {"hard_threshold": None}


def test_custom_rewards_get_type_checks_but_keep_their_own_choices(tmp_path, monkeypatch):
    (tmp_path / "choice_rewards.py").write_text(
        "def by_match(completions, match: str = 'mine', scale: float = 1.0):\n    return [scale] * len(completions)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_reward_function("choice_rewards:by_match", match="mine")(["a"]) == [1.0]
    with pytest.raises(RewardValueError, match="scale='2' is not a float"):
        get_reward_function("choice_rewards:by_match", scale="2")


def test_module_function_path(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def length_reward(completions, scale=1.0):\n    return [scale * len(c) for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = get_reward_function("my_rewards:length_reward", scale=0.5)
    assert fn(["ab", "abcd"], group_size=2) == [1.0, 2.0]
    with pytest.raises(RewardError, match="has no function 'nope'"):
        get_reward_function("my_rewards:nope")
    with pytest.raises(RewardError, match="Cannot import module 'no_such_module'"):
        get_reward_function("no_such_module:fn")


def test_async_reward_function(tmp_path, monkeypatch):
    """An `async def` reward given as module:function (TRL supports them): its coroutine is awaited, on the same
    event loop every call (so that async clients it keeps stay usable), also from inside a running loop."""
    (tmp_path / "async_rewards.py").write_text(
        "import asyncio\n"
        "loops = []\n"
        "async def length_reward(completions, scale=1.0):\n"
        "    await asyncio.sleep(0)\n"
        "    loops.append(asyncio.get_running_loop())\n"
        "    return [scale * len(c) for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = get_reward_function("async_rewards:length_reward", scale=0.5)
    assert fn(["ab", "abcd"], group_size=2) == [1.0, 2.0]
    assert fn.call_with({"completions": ["abcdef"], "group_size": 1, "prompts": [None]}) == [3.0]

    async def from_a_running_loop():
        return fn(["a"], group_size=1)

    assert asyncio.run(from_a_running_loop()) == [0.5]
    import async_rewards

    assert len(async_rewards.loops) == 3 and len(set(map(id, async_rewards.loops))) == 1
