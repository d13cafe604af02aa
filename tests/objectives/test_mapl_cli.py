"""The MAPL JSONL augmenter: round trip, verified labels, determinism, and errors naming file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.objectives.judges import evaluate_judges
from service.objectives.mapl_cli import MaplInputError, augment_jsonl, main

PAIRS = [
    {
        "prompt": "Describe Paris.",
        "chosen": "Paris is the capital of France.\n\n* The Seine\n* The Louvre",
        "rejected": "paris, a city",
    },
    {
        "prompt": [{"role": "user", "content": "Add 2 and 2."}],
        "chosen": "The answer is 4.",
        "rejected": "I think it's five, maybe.",
    },
]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_pass(prompt: object, response: str, instructions: list[dict]) -> list[bool]:
    specs = [{"name": i["name"], "args": i["args"]} for i in instructions]
    return [r.passed for r in evaluate_judges(str(prompt), response, specs).results]


def test_round_trip_writes_originals_and_verified_pairs(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", PAIRS)
    stats = augment_jsonl(source, tmp_path / "out.jsonl", seed=5, intra_per_response=2)
    rows = read_jsonl(tmp_path / "out.jsonl")
    originals = [r for r in rows if r["kind"] == "original"]
    assert [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in originals] == PAIRS
    assert [r["source_line"] for r in originals] == [1, 2]
    intra = [r for r in rows if r["kind"] == "intra"]
    inter = [r for r in rows if r["kind"] == "inter"]
    assert (stats.lines, stats.original, stats.intra, stats.inter) == (2, 2, len(intra), len(inter))
    assert {r["response_role"] for r in intra} == {"chosen", "rejected"}
    for row in intra:
        source_pair = PAIRS[row["source_line"] - 1]
        assert row["response"] == source_pair[row["response_role"]]
        assert all(all_pass(row["prompt_chosen"], row["response"], row["instructions_chosen"]))
        assert not all(all_pass(row["prompt_rejected"], row["response"], row["instructions_rejected"]))
    assert inter
    for row in inter:
        assert all(all_pass(row["prompt_more"], row["chosen"], row["instructions_more"]))
        violated = all_pass(row["prompt_more"], row["rejected"], row["instructions_more"]).count(False)
        assert violated == row["rejected_violations_more"] > row["rejected_violations_fewer"]


def test_same_seed_same_output(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", PAIRS)
    augment_jsonl(source, tmp_path / "a.jsonl", seed=11)
    augment_jsonl(source, tmp_path / "b.jsonl", seed=11)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_options_drop_originals_rejected_halves_and_inter_pairs(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", PAIRS)
    augment_jsonl(source, tmp_path / "out.jsonl", responses="chosen", keep_original=False, inter_per_pair=0)
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert rows and {r["kind"] for r in rows} == {"intra"}
    assert {r["response_role"] for r in rows} == {"chosen"}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", r"in.jsonl:2: not valid JSON"),
        ("[1, 2]", r"in.jsonl:2: expected a JSON object, got list"),
        ('{"prompt": "p", "chosen": "c"}', r"in.jsonl:2: 'rejected' must be a string \(got nothing\)"),
        ('{"prompt": 3, "chosen": "c", "rejected": "r"}', r"in.jsonl:2: 'prompt' must be a string or a list"),
    ],
)
def test_bad_lines_are_named_by_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(PAIRS[0]) + "\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(MaplInputError, match=message):
        augment_jsonl(source, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written


def test_main_runs_the_cli_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", PAIRS)
    out = tmp_path / "out.jsonl"
    assert main([str(source), str(out), "--seed", "3", "--n-instructions", "2"]) == 0
    assert "2 input pairs" in capsys.readouterr().err
    assert all(len(r.get("instructions_chosen", [None, None])) == 2 for r in read_jsonl(out))
    (tmp_path / "bad.jsonl").write_text("\n\n{oops\n", encoding="utf-8")
    assert main([str(tmp_path / "bad.jsonl"), str(out)]) == 2
    assert "bad.jsonl:3: not valid JSON" in capsys.readouterr().err
