"""paretorm's client library: typed, retrying HTTP clients for the reward service, and trainer adapters.

Imports only httpx, pydantic and the standard library (never torch), so a trainer can install it alone.

    from clients import RewardClient
    with RewardClient("http://rm:8000") as rc:
        batch = rc.score_pairs(prompts, completions)
        batch[0].rewards["helpsteer-helpfulness"], batch.scores

The wire schemas live in `clients.protocol` and are the very classes the service validates with.
Trainer adapters: `clients.adapters.trl`, `clients.adapters.openrlhf`, `clients.adapters.verl`.
"""

from clients._base import API_KEY_ENV, URL_ENV, RetryPolicy
from clients.async_client import AsyncRewardClient
from clients.client import RewardClient
from clients.errors import BadRequest, Overloaded, RewardServiceError, Timeout, Unauthorized, Unavailable
from clients.protocol import Message, ModelInfo, ScoreGroup, ScoreItem
from clients.results import GroupResult, NamedVector, ScoreBatch, ScoredItem

__all__ = [
    "API_KEY_ENV",
    "AsyncRewardClient",
    "BadRequest",
    "GroupResult",
    "Message",
    "ModelInfo",
    "NamedVector",
    "Overloaded",
    "RetryPolicy",
    "RewardClient",
    "RewardServiceError",
    "ScoreBatch",
    "ScoreGroup",
    "ScoreItem",
    "ScoredItem",
    "Timeout",
    "URL_ENV",
    "Unauthorized",
    "Unavailable",
]
