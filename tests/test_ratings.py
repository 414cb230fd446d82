"""Elo and Bradley–Terry as FastChat computes them: hand-computed cases, properties, and a
fixed battle set checked against numbers from a run of the reference algorithm."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.errors import InputError
from tuneloop.evaluate.ratings import (
    Battle,
    battle,
    bootstrap_bradley_terry,
    bradley_terry,
    interval_ranks,
    leaderboard,
    online_elo,
    read_battles,
    score_battles,
    write_battles,
)

# (model_a, model_b, wins of a, wins of b, ties)
SPEC = [
    ("v2", "v1", 6, 2, 2),
    ("v2", "base", 9, 1, 0),
    ("v1", "base", 7, 2, 1),
    ("teacher", "v2", 5, 3, 2),
    ("teacher", "v1", 7, 1, 2),
    ("teacher", "base", 9, 0, 1),
]


def fixed_battles() -> list[Battle]:
    """60 battles: the SPEC blocks (a-wins, then b-wins, then ties) taken round-robin."""
    blocks = [
        [battle(a, b, "model_a")] * wa + [battle(a, b, "model_b")] * wb + [battle(a, b, "tie")] * t
        for a, b, wa, wb, t in SPEC
    ]
    order: list[Battle] = []
    while any(blocks):
        for block in blocks:
            if block:
                order.append(block.pop(0))
    return order


# Expected numbers for fixed_battles(), obtained by running the reference algorithm:
# online Elo with FastChat's `compute_elo` loop (K=4, SCALE=400, BASE=10, INIT=1000), and
# Bradley–Terry with FastChat's `bt_loss_and_grad` loss (ties = outcome 0.5, alpha = ln 10,
# ratings from zeros, 400·r + 1000, no anchor model) minimised by torch.optim.LBFGS in
# float64 (strong Wolfe, gradient tolerance 1e-14) — an independent solver of the same problem.
REFERENCE_ONLINE = {"v2": 1017.5719, "v1": 991.4609, "base": 961.7842, "teacher": 1029.1830}
REFERENCE_BT = {"v2": 1114.0130, "v1": 951.1299, "base": 739.6616, "teacher": 1195.1955}


def test_fixed_battle_set_matches_the_reference_run() -> None:
    battles = fixed_battles()
    assert len(battles) == 60
    online = online_elo(battles)
    bt = bradley_terry(battles)
    for model, expected in REFERENCE_ONLINE.items():
        assert online[model] == pytest.approx(expected, abs=1e-3)
    for model, expected in REFERENCE_BT.items():
        assert bt[model] == pytest.approx(expected, abs=0.01)  # ridge 1e-4 moves it < 0.002
    assert sum(bt.values()) / len(bt) == pytest.approx(1000.0)


def test_online_elo_hand_computed() -> None:
    # equal ratings: expected score 0.5, the winner gains K/2 = 2
    assert online_elo([battle("a", "b", "model_a")]) == {"a": 1002.0, "b": 998.0}
    # second battle: a at 1002 vs b at 998; E_a = 1/(1+10^(-4/400)) = 0.505756…
    expected_a = 1 / (1 + 10 ** (-4 / 400))
    second = online_elo([battle("a", "b", "model_a"), battle("a", "b", "tie")])
    assert second["a"] == pytest.approx(1002 + 4 * (0.5 - expected_a))
    assert second["a"] + second["b"] == pytest.approx(2000.0)  # Elo is zero-sum
    assert online_elo([battle("a", "b", "tie")]) == {"a": 1000.0, "b": 1000.0}


def test_bradley_terry_two_models_closed_form() -> None:
    # a wins 3 of 4: MLE p = 3/4 → R_a - R_b = 400·log10(3); centred on 1000
    battles = [battle("a", "b", "model_a")] * 3 + [battle("a", "b", "model_b")]
    ratings = bradley_terry(battles)
    gap = 400 * __import__("math").log10(3)
    assert ratings["a"] == pytest.approx(1000 + gap / 2, abs=0.01)
    assert ratings["b"] == pytest.approx(1000 - gap / 2, abs=0.01)
    # a tie is half a win and half a loss: 2 wins + 2 ties = 3 of 4 as well
    with_ties = [battle("a", "b", "model_a")] * 2 + [battle("a", "b", "tie")] * 2
    assert bradley_terry(with_ties)["a"] == pytest.approx(ratings["a"], abs=0.01)


def test_symmetric_battles_give_equal_ratings() -> None:
    battles = [battle("a", "b", "model_a"), battle("b", "a", "model_a"), battle("a", "c", "tie")]
    battles += [battle("c", "b", "model_a"), battle("b", "c", "model_a")]
    ratings = bradley_terry(battles)
    assert ratings["a"] == pytest.approx(1000, abs=1e-6)
    assert ratings["b"] == pytest.approx(ratings["c"], abs=1e-6)


def test_a_model_that_always_wins_ranks_first_with_finite_ratings() -> None:
    battles = [battle("champ", "x", "model_a")] * 5 + [battle("y", "champ", "model_b")] * 5
    battles += [battle("x", "y", "model_a"), battle("x", "y", "model_b")]
    board = leaderboard(battles, rounds=100)
    assert board[0].model == "champ" and board[0].rank == 1
    assert all(row.rank > 1 for row in board[1:])
    assert all(abs(row.rating) < 1e5 for row in board)  # the ridge keeps the MLE finite
    assert board[0].wins == 10 and board[0].losses == 0 and board[0].battles == 10


def test_order_matters_for_online_elo_but_not_for_bradley_terry() -> None:
    battles = fixed_battles()
    reversed_battles = list(reversed(battles))
    assert online_elo(battles)["v2"] != pytest.approx(online_elo(reversed_battles)["v2"])
    assert bradley_terry(battles) == pytest.approx(bradley_terry(reversed_battles))


def test_intervals_contain_the_estimate_and_shrink_with_more_battles() -> None:
    battles = fixed_battles()
    few = bootstrap_bradley_terry(battles, rounds=200)
    many = bootstrap_bradley_terry(battles * 9, rounds=200)
    point = bradley_terry(battles)
    for model, (low, high) in few.items():
        assert low <= point[model] <= high
        many_low, many_high = many[model]
        assert many_high - many_low < (high - low) / 2  # √9 = 3× narrower, roughly
    assert bootstrap_bradley_terry(battles, rounds=200) == few  # seeded


def test_interval_ranks_respect_overlap() -> None:
    ranks = interval_ranks({"a": (10, 20), "b": (15, 25), "c": (0, 5), "d": (-10, 12)})
    # a and b overlap: both 1st. d (upper 12) is below b's lower bound 15 only: 2nd.
    # c (upper 5) is below a's and b's lower bounds but overlaps d: 3rd.
    assert ranks == {"a": 1, "b": 1, "c": 3, "d": 2}
    board = leaderboard(fixed_battles(), rounds=200)
    assert [row.model for row in board][:2] == ["teacher", "v2"]
    assert board[0].rank == board[1].rank == 1  # overlapping intervals share a rank
    assert board[-1].model == "base" and board[-1].rank > 1


def test_battles_jsonl_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "battles.jsonl"
    assert write_battles(fixed_battles(), path) == 60
    first = path.read_text().splitlines()[0]
    assert first == '{"model_a": "v2", "model_b": "v1", "winner": "model_a"}'
    assert read_battles(path) == fixed_battles()
    path.write_text('{"model_a": "a", "model_b": "b", "winner": "tie (bothbad)", "judge": 1}\n')
    assert read_battles(path) == [Battle("a", "b", "tie")]
    path.write_text('{"model_a": "a", "model_b": "b"}\n\n{"model_a": 1}\n')
    with pytest.raises(InputError, match=r"battles.jsonl:1: not a battle \(missing 'winner'\)"):
        read_battles(path)
    path.write_text('{"model_a": "a", "model_b": "b", "winner": "a"}\n')
    with pytest.raises(InputError, match=":1: .*winner 'a' must be one of"):
        read_battles(path)
    with pytest.raises(InputError, match="two different models"):
        battle("a", "a", "tie")


def test_score_battles_from_per_example_scores() -> None:
    battles = score_battles({"base": [0.1, 0.5, None], "v1": [0.9, 0.5, 1.0], "t": [1, 0, 1]})
    assert battles == [
        Battle("base", "v1", "model_b"),
        Battle("base", "t", "model_b"),
        Battle("v1", "t", "model_b"),
        Battle("base", "v1", "tie"),
        Battle("base", "t", "model_a"),
        Battle("v1", "t", "model_a"),
        Battle("v1", "t", "tie"),
    ]
    assert score_battles({"a": [0.50], "b": [0.52]}, margin=0.05) == [Battle("a", "b", "tie")]
    with pytest.raises(InputError, match="same examples"):
        score_battles({"a": [1], "b": [1, 2]})


def test_leaderboard_renders_as_table_and_markdown() -> None:
    import io

    from rich.console import Console

    from tuneloop.evaluate import leaderboard_markdown, leaderboard_table

    board = leaderboard(fixed_battles(), rounds=100)
    markdown = leaderboard_markdown(board)
    assert markdown.splitlines()[2].startswith("| 1 | teacher | 1195 |")
    assert "| 30 | 21-4-5 |" in markdown.splitlines()[2]
    buffer = io.StringIO()
    Console(file=buffer, width=120).print(leaderboard_table(board))
    assert "teacher" in buffer.getvalue() and "21-4-5" in buffer.getvalue()
