"""Typed results: per-objective numbers with their names attached.

The wire format keeps every per-objective list aligned with a separate `objectives` list; trainers want
`result.rewards["helpsteer-helpfulness"]` as often as they want the raw vector. `NamedVector` gives both:
it is a read-only `Mapping[str, float]` (so `dict(result.rewards)` and `rewards["name"]` work) that also
accepts integer positions, slices, `tolist()` and `numpy.asarray(...)` (numpy is imported only when numpy
itself asks for the array, so the client never needs it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from clients.protocol import GroupScores, ItemScore, ScoreResponse


class NamedVector(Mapping[str, float]):
    """Values aligned with objective names: a mapping by name that also indexes by position."""

    __slots__ = ("_index", "_names", "_values")

    def __init__(self, names: Sequence[str], values: Sequence[float]) -> None:
        if len(names) != len(values):
            raise ValueError(
                f"{len(values)} values for {len(names)} objectives: the service's response is inconsistent "
                "(objectives and per-objective lists must have the same length)"
            )
        self._names = tuple(names)
        self._values = tuple(float(v) for v in values)
        self._index = {name: i for i, name in enumerate(self._names)}

    @overload
    def __getitem__(self, key: str | int) -> float: ...
    @overload
    def __getitem__(self, key: slice) -> list[float]: ...
    def __getitem__(self, key: str | int | slice) -> float | list[float]:
        if isinstance(key, str):
            try:
                return self._values[self._index[key]]
            except KeyError:
                raise KeyError(
                    f"no objective named {key!r}; the model's objectives are {list(self._names)}"
                ) from None
        if isinstance(key, slice):
            return list(self._values[key])
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NamedVector):
            return self._names == other._names and self._values == other._values
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def tolist(self) -> list[float]:
        """The values in objective order (the array view)."""
        return list(self._values)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy  # only reached when numpy itself converts us, so numpy is already imported

        return numpy.asarray(self._values, dtype=dtype)

    def __repr__(self) -> str:
        body = ", ".join(f"{n!r}: {v:.4g}" for n, v in zip(self._names, self._values, strict=True))
        return f"NamedVector({{{body}}})"


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """The scores of one conversation, with names attached (see `clients.protocol.ItemScore`)."""

    rewards: NamedVector
    gating: NamedVector
    coefficients: NamedVector
    score: float
    num_tokens: int
    truncated_tokens: int = 0
    weighted: float | None = None
    calibrated: float | None = None

    @classmethod
    def from_wire(cls, objectives: Sequence[str], item: ItemScore) -> ScoredItem:
        return cls(
            rewards=NamedVector(objectives, item.rewards),
            gating=NamedVector(objectives, item.gating),
            coefficients=NamedVector(objectives, item.coefficients),
            score=item.score,
            num_tokens=item.num_tokens,
            truncated_tokens=item.truncated_tokens,
            weighted=item.weighted,
            calibrated=item.calibrated,
        )


class _ItemList(Sequence[ScoredItem]):
    """A list of `ScoredItem` with column views (`scores`, `objective(name)`, `rewards_matrix`)."""

    def __init__(self, objectives: Sequence[str], items: Sequence[ScoredItem]) -> None:
        self.objectives: tuple[str, ...] = tuple(objectives)
        self._items = list(items)

    @overload
    def __getitem__(self, index: int) -> ScoredItem: ...
    @overload
    def __getitem__(self, index: slice) -> list[ScoredItem]: ...
    def __getitem__(self, index: int | slice) -> ScoredItem | list[ScoredItem]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    @property
    def scores(self) -> list[float]:
        """The gated aggregate score of each conversation, in input order."""
        return [item.score for item in self._items]

    @property
    def weighted(self) -> list[float | None]:
        """`w . rewards` (or `v . rewards`) of each conversation, when weights or a direction were sent."""
        return [item.weighted for item in self._items]

    @property
    def calibrated(self) -> list[float | None]:
        return [item.calibrated for item in self._items]

    def objective(self, name: str) -> list[float]:
        """One objective's reward for every conversation, in input order."""
        return [item.rewards[name] for item in self._items]

    @property
    def rewards_matrix(self) -> list[list[float]]:
        """Rewards as rows (conversations) x columns (objectives): `numpy.asarray(batch.rewards_matrix)`."""
        return [item.rewards.tolist() for item in self._items]


class GroupResult(_ItemList):
    """The scored responses of one group (one prompt), in the order sent."""

    def __init__(
        self, objectives: Sequence[str], items: Sequence[ScoredItem], baseline_score: float | None = None
    ) -> None:
        super().__init__(objectives, items)
        self.baseline_score = baseline_score

    @classmethod
    def from_wire(cls, objectives: Sequence[str], group: GroupScores) -> GroupResult:
        items = [ScoredItem.from_wire(objectives, r) for r in group.results]
        return cls(objectives, items, group.baseline_score)


class ScoreBatch(_ItemList):
    """The answer to a score call: the items in input order, plus the groups (if any) in input order."""

    def __init__(
        self,
        *,
        model: str,
        revision: str,
        objectives: Sequence[str],
        items: Sequence[ScoredItem],
        groups: Sequence[GroupResult] = (),
    ) -> None:
        super().__init__(objectives, items)
        self.model = model
        self.revision = revision
        self.groups: list[GroupResult] = list(groups)

    @classmethod
    def from_wire(cls, response: ScoreResponse) -> ScoreBatch:
        names = response.objectives
        return cls(
            model=response.model,
            revision=response.revision,
            objectives=names,
            items=[ScoredItem.from_wire(names, r) for r in response.results],
            groups=[GroupResult.from_wire(names, g) for g in response.groups],
        )

    def __repr__(self) -> str:
        return (
            f"ScoreBatch(model={self.model!r}, revision={self.revision!r}, items={len(self)}, "
            f"groups={len(self.groups)})"
        )


__all__ = ["GroupResult", "NamedVector", "ScoreBatch", "ScoredItem"]
