"""`World`'s collectives on two real gloo processes: metrics whose keys differ by rank, gradients averaged by hand."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from service.training.distributed import World


def _rank(rank: int, store: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    world = World(rank=rank, size=2)
    try:
        # rank 0 drew a prompt of task a only, rank 1 of task b only; both report the step's loss
        metrics = {"loss": 1.0 + rank, f"cgpo/{'ab'[rank]}/violation_rate": 0.25 * (rank + 1)}
        mean = world.mean(metrics)
        # two parameters; rank 1 never touched the second (no forward of that task): its share counts as zeros
        first = torch.nn.Parameter(torch.zeros(3))
        second = torch.nn.Parameter(torch.zeros(2))
        first.grad = torch.full((3,), 2.0 + 4.0 * rank)
        if rank == 0:
            second.grad = torch.tensor([6.0, -2.0])
        world.average_gradients([first, second])
        results[rank] = {"mean": mean, "first": first.grad.tolist(), "second": second.grad.tolist(),
                         "any": world.any(rank == 1), "none": world.any(False),
                         "gathered": world.gather({"rank": rank})}  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_mean_over_the_ranks_that_report_each_key_and_gradients_averaged_with_zeros(tmp_path: Path) -> None:
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
    for rank in (0, 1):
        got = results[rank]
        assert got["mean"] == {"loss": 1.5, "cgpo/a/violation_rate": 0.25, "cgpo/b/violation_rate": 0.5}
        assert got["first"] == [4.0, 4.0, 4.0]  # (2 + 6) / 2
        assert got["second"] == [3.0, -1.0]  # (g + 0) / 2: the rank without a gradient is not left out
        assert got["any"] is True and got["none"] is False
        assert got["gathered"] == [{"rank": 0}, {"rank": 1}]


def test_a_single_process_world_changes_nothing() -> None:
    world = World()
    parameter = torch.nn.Parameter(torch.zeros(2))
    parameter.grad = torch.tensor([1.0, 2.0])
    world.average_gradients([parameter])
    assert parameter.grad.tolist() == [1.0, 2.0]
    assert world.mean({"loss": 3.0}) == {"loss": 3.0} and world.any(True) and world.gather("x") == ["x"]
