"""What the scorer submits for a request: CGPO baselines cost one forward per (prompt, baseline), not per item."""

from __future__ import annotations

from clients.protocol import ScoreRequest
from service.scoring.scorer import plan_request


def test_repeated_baselines_are_scored_once() -> None:
    request = ScoreRequest.model_validate({
        "items": [{"prompt": "p", "response": "a", "baseline": "gold"},
                  {"prompt": "p", "response": "b", "baseline": "gold"},
                  {"prompt": "q", "response": "c", "baseline": "gold"}],
        "groups": [{"prompt": "p", "responses": ["x", "y", "z"], "baseline": "gold"}],
    })
    plan = plan_request(request)
    assert len(plan.conversations) == 3 + 2 + 3 + 1
    assert plan.item_baseline_rows[0] == plan.item_baseline_rows[1] != plan.item_baseline_rows[2]
    assert plan.labels[plan.item_baseline_rows[0]] == "items[0].baseline"
    assert plan.group_baseline_rows[0] is not None
    assert plan.conversations[plan.group_baseline_rows[0]][-1] == {"role": "assistant", "content": "gold"}
