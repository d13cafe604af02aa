"""The prompt-state cache: entries live in one slab, least recently used out first, spans reused."""

from __future__ import annotations

import random

import pytest
import torch

from service.engine.prefix_cache import PrefixState, PrefixStateCache, SpanAllocator


def _state(prompt_tokens: int, seed: int, layers: int = 2) -> PrefixState:
    generator = torch.Generator().manual_seed(seed)
    # (prompt_tokens, kv_heads, head_dim) transposed, as the packed forward hands them over: not contiguous
    pairs = [
        tuple(torch.randn(prompt_tokens, 2, 4, generator=generator).transpose(0, 1)[None] for _ in range(2))
        for _ in range(layers)
    ]
    return torch.randn(8, generator=generator), pairs  # type: ignore[return-value]  # tuple() of a generator


def _elements(prompt_tokens: int, layers: int = 2) -> int:
    return layers * 2 * 2 * 4 * prompt_tokens


def test_spans_are_first_fit_and_merge_back_into_one_run() -> None:
    spans = SpanAllocator(100)
    a, b, c = spans.allocate(30), spans.allocate(30), spans.allocate(30)
    assert (a, b, c) == ((0, 30), (30, 30), (60, 30))
    assert spans.allocate(20) is None  # 10 left
    spans.release(b)
    assert spans.allocate(40) is None  # 30 + 10 free, not contiguous
    spans.release(a)  # merges with b's run
    assert spans.allocate(60) == (0, 60)
    spans.release((0, 60))
    spans.release(c)  # merges before and after: the whole range again
    assert spans.free_elements == 100
    assert spans.allocate(100) == (0, 100)


def test_random_allocations_never_overlap_and_all_come_back() -> None:
    rng = random.Random(0)
    spans, held = SpanAllocator(1000), []
    for _ in range(2000):
        if held and rng.random() < 0.5:
            spans.release(held.pop(rng.randrange(len(held))))
        else:
            span = spans.allocate(rng.randint(1, 120))
            if span is not None:
                held.append(span)
        taken = sorted(held)
        ends = [start + length for start, length in taken]
        assert all(end <= after for end, (after, _) in zip(ends, taken[1:], strict=False))
        assert spans.free_elements == 1000 - sum(length for _, length in held)
    for span in held:
        spans.release(span)
    assert spans.allocate(1000) == (0, 1000)


def test_entries_read_back_exactly_and_share_one_slab() -> None:
    cache = PrefixStateCache(4 * _elements(10) * 4)  # float32: room for four 10-token prompts
    states = {seed: _state(10, seed) for seed in range(3)}
    for seed, state in states.items():
        cache.store((seed,), state)
    for seed, (gate, layers) in states.items():
        got = cache.get((seed,))
        assert got is not None
        assert torch.equal(got[0], gate)
        for (keys, values), (got_keys, got_values) in zip(layers, got[1], strict=True):
            assert got_keys.shape == keys.shape and torch.equal(got_keys, keys)
            assert torch.equal(got_values, values)
            slab = cache._slab
            assert slab is not None
            assert got_keys.untyped_storage().data_ptr() == slab.untyped_storage().data_ptr()
    assert cache.used == 3 * _elements(10) * 4


def test_least_recently_used_goes_first_and_a_freed_span_is_reused() -> None:
    cache = PrefixStateCache(3 * _elements(10) * 4)
    for seed in range(3):
        cache.store((seed,), _state(10, seed))
    assert cache.get((0,)) is not None  # 1 is now the least recently used
    cache.store((3,), _state(10, 3))
    assert (1,) not in cache and len(cache) == 3
    assert cache.used == 3 * _elements(10) * 4
    expected = _state(10, 3)[1][0][0]
    assert torch.equal(cache.get((3,))[1][0][0], expected)  # type: ignore[index]
    untouched = cache.get((2,))
    assert untouched is not None and torch.equal(untouched[1][0][0], _state(10, 2)[1][0][0])


def test_a_bigger_entry_evicts_until_a_contiguous_span_fits() -> None:
    cache = PrefixStateCache(4 * _elements(10) * 4)
    for seed in range(4):
        cache.store((seed,), _state(10, seed))
    cache.get((0,))  # order of age now 1, 2, 3, 0
    cache.store((9,), _state(20, 9))  # needs two neighbouring entries' room: 1 and 2 go
    assert (1,) not in cache and (2,) not in cache
    assert (0,) in cache and (3,) in cache and (9,) in cache
    assert torch.equal(cache.get((9,))[1][1][1], _state(20, 9)[1][1][1])  # type: ignore[index]


def test_a_state_larger_than_the_cache_is_not_kept_and_storing_a_key_again_replaces_it() -> None:
    cache = PrefixStateCache(_elements(10) * 4)
    cache.store((1,), _state(11, 1))
    assert len(cache) == 0
    cache.store((1,), _state(10, 1))
    cache.store((1,), _state(10, 2))
    assert len(cache) == 1 and cache.used == _elements(10) * 4
    assert torch.equal(cache.get((1,))[0], _state(10, 2)[0])  # type: ignore[index]


def test_a_state_of_another_dtype_is_refused() -> None:
    cache = PrefixStateCache(_elements(10) * 4)
    cache.store((1,), _state(5, 1))
    gate, layers = _state(5, 2)
    with pytest.raises(ValueError, match="prefix cache holds torch.float32"):
        cache.store((2,), (gate, [(k.to(torch.bfloat16), v.to(torch.bfloat16)) for k, v in layers]))
