"""The headline ratios again, as alternating rounds of the two engines on fresh items.

The scenarios measure each engine once, one after the other, minutes apart. On the shared 2-core VMs this
project runs on, the host's speed drifts more than the differences being measured: three runs of the same
code on one Intel Xeon (AMX-BF16) within 15 minutes gave paretorm HTTP 32 x 1 at 43.8, 61.8 and 39.9 items/s
and vLLM at 44.2, 43.0 and 52.0, so the ratio of two sequential figures carried the drift (0.77-1.44). Here
each round runs both engines back to back on its own fresh items, in alternating order, so two rounds run
A B B A: the geometric mean of their two ratios cancels a steady drift exactly, and the reported ratio is the
median of those two-round means (robust to one round that a burst from another process hit).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.bench.loadgen import Target
from service.bench.scenarios_http import throughput
from service.bench.scenarios_inprocess import InProcessTarget
from service.bench.servers import VLLM_SERVED_NAME
from service.bench.targets import paretorm_groups, paretorm_items, vllm_classify
from service.bench.workload import WorkloadSource, flatten_groups, rendered_texts

if TYPE_CHECKING:
    from service.bench.runner import BenchConfig


@dataclass(frozen=True)
class Side:
    """One engine's half of a pairing: its target (a server, or the service's path in this process) and how
    to build a round's fresh units."""

    target: Target | InProcessTarget
    units: Callable[[], Sequence[Any]]  # called once per round: never-seen work
    concurrency: int
    per_request: int


@dataclass(frozen=True)
class Pairing:
    name: str  # the ratio's name, "ours / theirs"
    ours: Side
    theirs: Side


def _items_per_s(side: Side) -> float:
    if isinstance(side.target, InProcessTarget):
        row = side.target.throughput(side.units(), side.concurrency, side.per_request).summary()
    else:
        row = throughput(side.target, side.units(), concurrency=side.concurrency,
                         per_request=side.per_request)
    if row["errors"] or not row["items_per_s"]:
        raise RuntimeError(f"paired rounds: {side.target.name}: {row.get('first_error')}")
    return float(row["items_per_s"])


def paired_ratios(
    pairings: Sequence[Pairing], rounds: int, measure: Callable[[Side], float] = _items_per_s,
    settle: Callable[[], object] = lambda: None,
) -> dict[str, dict[str, Any]]:
    """Per pairing: each round's items/s of both engines, the median of the two-round ratios, the rounds' spread.

    `measure(side)` runs one round of one engine (closed-loop HTTP by default) and returns its items/s;
    `settle()` runs before each (`ProcessSet.settle`: the engine measured last has gone idle)."""
    out: dict[str, dict[str, Any]] = {}
    for pairing in pairings:
        ours: list[float] = []
        theirs: list[float] = []
        for r in range(rounds):
            order = (ours, pairing.ours), (theirs, pairing.theirs)
            for rates, side in order if r % 2 == 0 else order[::-1]:
                settle()
                rates.append(measure(side))
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        pairs = [math.prod(ratios[i : i + 2]) ** (1 / len(ratios[i : i + 2])) for i in range(0, len(ratios), 2)]
        out[pairing.name] = {
            "rounds": rounds,
            "median": round(statistics.median(pairs), 3) if pairs else None,
            "min": round(min(ratios), 3) if ratios else None,
            "max": round(max(ratios), 3) if ratios else None,
            "ours_items_per_s": [round(x, 1) for x in ours],
            "theirs_items_per_s": [round(x, 1) for x in theirs],
        }
    return out


def grpo_client_count(group: int) -> int:
    """Clients of the GRPO rows, one group each: a GRPO step in flight is ~64 conversations."""
    return max(1, 64 // group)


def http_pairing(
    cfg: BenchConfig, source: WorkloadSource, service_url: str, in_process: InProcessTarget
) -> Pairing:
    """HTTP 32 x 1 against the same scorer, batcher and backend in this process: what the service around
    the model costs (goal >= 0.9), paired because two single passes minutes apart carry the host's drift
    (0.81-1.12 in three runs on one CPU). It needs no vLLM."""
    c, items = cfg.concurrency, max(4 * cfg.concurrency, cfg.items // 2)
    return Pairing(f"http_{c}x1 / in_process_{c}x1",
                   Side(paretorm_items(service_url, cfg.shape.objectives), lambda: source.chat(items), c, 1),
                   Side(in_process, lambda: source.chat(items), c, 1))  # fmt: skip


def goal_pairings(
    cfg: BenchConfig, source: WorkloadSource, tokenizer: Any, service_url: str, vllm_url: str, backend_url: str | None
) -> list[Pairing]:
    """The goal ratios of issue 15 as pairings: 32 x 1, 4 x 64 and GRPO against vLLM's server, and
    `--backend vllm` against it when that server is up. Every round draws fresh traffic from `source`."""
    c, bc, bs, objectives = cfg.concurrency, cfg.batch_clients, cfg.batch_size, cfg.shape.objectives
    chat_items, grpo_prompts = max(4 * c, cfg.items // 2), max(2, cfg.grpo_prompts // 4)
    grpo_clients = grpo_client_count(cfg.grpo_group)
    vllm_target = vllm_classify(vllm_url, objectives, VLLM_SERVED_NAME)

    def grpo() -> list[Any]:
        return source.grpo(grpo_prompts, cfg.grpo_group, cfg.shared_tokens)

    def texts(items: Sequence[Any]) -> list[str]:
        return rendered_texts(tokenizer, items)

    theirs_single = Side(vllm_target, lambda: texts(source.chat(chat_items)), c, 1)
    pairings = [
        Pairing(f"http_{c}x1 / vllm_classify_{c}x1",
                Side(paretorm_items(service_url, objectives), lambda: source.chat(chat_items), c, 1), theirs_single),
        Pairing(f"http_{bc}x{bs} / vllm_classify_{bc}x{bs}",
                Side(paretorm_items(service_url, objectives), lambda: source.chat(bc * bs), bc, bs),
                Side(vllm_target, lambda: texts(source.chat(bc * bs)), bc, bs)),
        Pairing("grpo_http_groups / vllm_grpo_items",
                Side(paretorm_groups(service_url, objectives), grpo, grpo_clients, 1),
                Side(vllm_target, lambda: texts(flatten_groups(grpo())), c, 1)),
    ]  # fmt: skip
    if backend_url is not None:
        backend_target = paretorm_items(backend_url, objectives, "paretorm-vllm-backend")
        ours_backend = Side(backend_target, lambda: source.chat(chat_items), c, 1)
        pairings.append(Pairing(f"http_vllm_backend_{c}x1 / vllm_classify_{c}x1", ours_backend, theirs_single))
    return pairings
