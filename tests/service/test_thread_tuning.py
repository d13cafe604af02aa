"""`thread_tuning`: each CPU forward runs on N or N-1 torch threads, whichever measured faster lately."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from service.engine.thread_tuning import FIRST_INTERVAL, LAST_INTERVAL, PROBE_FORWARDS, ThreadWidthTuner
from service.engine.transformers_backend import TransformersBackend
from service.settings import ServiceSettings
from tests.service.test_backend_exactness import PROMPTS, RESPONSES, encode

TOKENS = 1000


class FakeCores:
    """A clock and a thread setting: a forward costs `seconds_per_token[width]` per token at the width set."""

    def __init__(self, wide: float, narrow: float) -> None:
        self.now = 0.0
        self.seconds_per_token = {2: wide, 1: narrow}
        self.width: int | None = None
        self.settings: list[int] = []  # every call of set_threads

    def set_threads(self, width: int) -> None:
        self.width = width
        self.settings.append(width)

    def clock(self) -> float:
        return self.now

    def forward(self, tokens: int) -> int:
        assert self.width is not None, "the tuner ran a forward before setting a width"
        self.now += tokens * self.seconds_per_token[self.width]
        return self.width


def tuner_on(cores: FakeCores) -> ThreadWidthTuner:
    return ThreadWidthTuner(2, set_threads=cores.set_threads, clock=cores.clock)


def run(tuner: ThreadWidthTuner, cores: FakeCores, forwards: int, tokens: int = TOKENS) -> Counter[int]:
    """How many of `forwards` ran at each width."""
    return Counter(tuner.run(tokens, lambda: cores.forward(tokens)) for _ in range(forwards))


def test_on_quiet_cores_all_threads_win_and_the_other_width_is_probed_ever_less_often() -> None:
    cores = FakeCores(wide=1.0, narrow=1.25)
    tuner = tuner_on(cores)
    widths = run(tuner, cores, 600)
    assert tuner.width == 2
    # probes after 8, then 16, 32, 64, 64, ... forwards at the winning width: the cost of looking stays small
    probes = widths[1] // PROBE_FORWARDS
    assert 6 <= probes <= 2 + 600 // LAST_INTERVAL, widths
    assert widths[1] / 600 < 0.05


def test_on_contended_cores_one_thread_fewer_takes_over_after_the_first_probe() -> None:
    cores = FakeCores(wide=1.5, narrow=1.0)
    tuner = tuner_on(cores)
    first = run(tuner, cores, FIRST_INTERVAL + PROBE_FORWARDS)
    assert first == {2: FIRST_INTERVAL, 1: PROBE_FORWARDS} and tuner.width == 1
    later = run(tuner, cores, 300)
    assert later[1] / 300 > 0.95


def test_when_the_contention_comes_the_width_follows_within_a_few_forwards_and_returns_after_it() -> None:
    cores = FakeCores(wide=1.0, narrow=1.25)
    tuner = tuner_on(cores)
    run(tuner, cores, 400)  # quiet long enough for the probes to be 64 forwards apart
    assert tuner.width == 2
    cores.seconds_per_token = {2: 1.6, 1: 1.2}  # a burst: the wide team's time per token moves > a fifth
    burst = run(tuner, cores, 20)
    assert tuner.width == 1 and burst[1] >= 12, burst
    cores.seconds_per_token = {2: 1.0, 1: 1.1}  # quiet again: found by the next probe, at most 64 forwards on
    after = run(tuner, cores, LAST_INTERVAL + PROBE_FORWARDS)
    assert tuner.width == 2, after


def test_close_widths_do_not_flap() -> None:
    cores = FakeCores(wide=1.0, narrow=0.98)  # within the 5 % margin
    tuner = tuner_on(cores)
    run(tuner, cores, 300)
    assert tuner.width == 2


def test_short_forwards_run_at_the_current_width_and_teach_nothing() -> None:
    cores = FakeCores(wide=1.5, narrow=1.0)
    tuner = tuner_on(cores)
    assert run(tuner, cores, 100, tokens=100) == {2: 100}  # under min_tokens (256): never probed
    assert run(tuner, cores, FIRST_INTERVAL + PROBE_FORWARDS) == {2: FIRST_INTERVAL, 1: PROBE_FORWARDS}


def test_the_thread_count_is_set_only_when_the_width_changes() -> None:
    cores = FakeCores(wide=1.0, narrow=1.25)
    tuner = tuner_on(cores)
    run(tuner, cores, FIRST_INTERVAL + PROBE_FORWARDS + 1)
    assert cores.settings == [2, 1, 2]


def test_compiling_ahead_runs_the_work_at_each_width_then_returns_to_the_current_one() -> None:
    cores = FakeCores(wide=1.0, narrow=1.25)
    tuner = tuner_on(cores)
    seen: list[int | None] = []
    tuner.at_each_width(lambda: seen.append(cores.width))
    assert seen == [2, 1] and cores.width == 2


def test_a_failed_compile_still_leaves_the_current_width_set() -> None:
    cores = FakeCores(wide=1.0, narrow=1.25)
    tuner = tuner_on(cores)

    def failing() -> None:
        if cores.width == 1:
            raise RuntimeError("no working C++ compiler")

    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        tuner.at_each_width(failing)
    assert cores.width == 2


def test_one_thread_leaves_nothing_to_choose() -> None:
    with pytest.raises(ValueError, match="at least 2 threads"):
        ThreadWidthTuner(1, set_threads=lambda width: None)


@pytest.fixture
def torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="thread tuning needs 2 or more torch threads")
def test_a_tuned_backend_scores_as_a_fixed_one_and_compiles_both_widths_ahead(
    loaded_model: Any, torch_threads: None
) -> None:
    graphs: list[int] = []

    def counting_compiler(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> Any:
        graphs.append(1)
        return graph.forward

    encoded = encode(loaded_model, [(p, r) for p in PROMPTS for r in RESPONSES] * 8)
    assert sum(item.num_tokens for item in encoded) >= 256  # long enough for the tuner to record
    fixed = TransformersBackend(loaded_model.model).run(encoded)
    tuned = TransformersBackend(
        loaded_model.model, compile_layers=True, compile_backend=counting_compiler, thread_tuning=True
    )
    assert tuned.threads.endswith("measured per forward")
    tuned.compile_now()
    compiled = len(graphs)
    for _ in range(FIRST_INTERVAL + PROBE_FORWARDS):
        rows = tuned.run(encoded)
        for field in ("rewards", "gating", "score"):
            np.testing.assert_allclose(getattr(rows, field), getattr(fixed, field), atol=1e-5, rtol=0)
    assert tuned._threads is not None and min(tuned._threads.forwards.values()) > 0  # both widths ran
    assert len(graphs) == compiled, "a forward at one of the widths compiled again while serving"


def test_the_setting_is_off_by_default_and_on_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().thread_tuning is False
    monkeypatch.setenv("PARETORM_THREAD_TUNING", "1")
    assert ServiceSettings().thread_tuning is True
