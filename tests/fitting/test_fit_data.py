"""Bad fitting data fails with the file and line, or is skipped and counted when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.fitting.data import DataError, read_intra_pairs, read_preferences, read_ratings

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "ratings": {"help": 0.5, "safe": None}}  # fmt: skip


def _write(tmp_path: Path, name: str, lines: list[object]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"ratings": {"help": 1}}, r"missing field\(s\) \['messages'\]"),
        ({**GOOD, "ratings": {"help": float("nan")}}, "write null for a missing rating"),
        ({**GOOD, "ratings": {"help": "high"}}, "must be a number or null"),
        ({**GOOD, "messages": [{"role": "user", "content": "hi"}]}, "no assistant turn at the end"),
        ({**GOOD, "messages": [{"role": "assistant", "content": "x"}]}, "no prompt before the assistant turn"),
        ("{not json", "invalid JSON"),
    ],
)
def test_bad_rating_line_names_file_and_line(tmp_path: Path, bad: object, message: str) -> None:
    path = _write(tmp_path, "r.jsonl", [GOOD, "", bad])  # line 2 is blank, the bad one is line 3
    with pytest.raises(DataError, match=message) as info:
        read_ratings(path)
    assert info.value.line == 3 and str(info.value).startswith(f"{path}:3: ")


def test_skip_bad_lines_counts_them(tmp_path: Path) -> None:
    path = _write(tmp_path, "r.jsonl", [GOOD, {"ratings": {}}, {**GOOD, "ratings": {"help": 0.1, "safe": 1}}])
    data = read_ratings(path, skip_bad=True)
    assert [s.line for s in data.skipped] == [2]
    assert data.objectives == ["help", "safe"]
    assert data.labels.shape == (2, 2) and data.labels[0, 1] != data.labels[0, 1]  # null -> NaN


def test_objective_without_labels_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "r.jsonl", [GOOD, GOOD])
    with pytest.raises(DataError, match=r"\['safe'\] have no rating") as info:
        read_ratings(path)
    assert info.value.path == str(path) and info.value.line is None
    assert read_ratings(path, ["help"]).objectives == ["help"]  # an explicit list leaves it out


def test_preference_forms_normalise_to_full_conversations(tmp_path: Path) -> None:
    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}]
    path = _write(tmp_path, "p.jsonl", [
        {"prompt": "q", "chosen": "good", "rejected": "bad"},
        {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
         "rejected": [{"role": "assistant", "content": "bad"}]},
        {"chosen": conv, "rejected": [conv[0], {"role": "assistant", "content": "bad"}]},
    ])  # fmt: skip
    pairs = read_preferences(path).pairs
    assert all(p.chosen == conv for p in pairs)
    assert all(p.rejected[-1]["content"] == "bad" and p.rejected[:-1] == conv[:-1] for p in pairs)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt": "q", "chosen": "a"}, r"missing field\(s\) \['rejected'\]"),
        ({"chosen": "a", "rejected": "b"}, "no 'prompt' to attach it to"),
        ({"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}],
          "rejected": [{"role": "user", "content": "y"}, {"role": "assistant", "content": "b"}]}, "different prompts"),
        ({"prompt": "q", "chosen": [{"role": "user", "content": "q"}], "rejected": "b"}, "no assistant turn"),
    ],
)
def test_bad_preference_line(tmp_path: Path, bad: dict, message: str) -> None:
    path = _write(tmp_path, "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}, bad])
    with pytest.raises(DataError, match=message) as info:
        read_preferences(path)
    assert info.value.line == 2


def test_intra_pairs_share_the_response_not_the_prompt(tmp_path: Path) -> None:
    path = _write(tmp_path, "i.jsonl", [{"prompt_chosen": "in French", "prompt_rejected": "in German", "response": "Bonjour"}])
    pair = read_intra_pairs(path).pairs[0]
    assert pair.chosen[-1] == pair.rejected[-1] == {"role": "assistant", "content": "Bonjour"}
    assert pair.chosen[0]["content"] == "in French" and pair.rejected[0]["content"] == "in German"


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_preferences(tmp_path / "nope.jsonl")
