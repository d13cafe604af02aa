"""Reward models: native ArmoRM (no remote code), plain multi-label classifiers, tiny test checkpoints.

Pure torch + transformers; knows nothing about HTTP. ``loading`` is the only module that touches disk
(``tiny`` writes through it and through transformers' ``save_pretrained``).
"""

from .armorm import ArmoRMRewardModel
from .config import ARMORM_OBJECTIVES, LLAMA3_GATE_PATTERN, ArmoRMHeadConfig
from .errors import CheckpointError, GatePatternNotFound, ModelInputError
from .gating import GatingNetwork
from .loading import (
    LoadedRewardModel,
    checkpoint_revision,
    load_reward_model,
    parameters_on_meta,
    save_armorm_checkpoint,
)
from .outputs import RewardOutput, RewardRow
from .positions import gate_position, gate_positions, reward_position, reward_positions
from .sequence_classification import SequenceClassificationRewardModel
from .tiny import (
    build_tiny_armorm,
    build_tiny_sequence_classifier,
    build_tiny_tokenizer,
    default_demo_dir,
    derive_gate_pattern,
    ensure_demo_model,
)

__all__ = [
    "ARMORM_OBJECTIVES",
    "LLAMA3_GATE_PATTERN",
    "ArmoRMHeadConfig",
    "ArmoRMRewardModel",
    "CheckpointError",
    "GatePatternNotFound",
    "GatingNetwork",
    "LoadedRewardModel",
    "ModelInputError",
    "RewardOutput",
    "RewardRow",
    "SequenceClassificationRewardModel",
    "build_tiny_armorm",
    "build_tiny_sequence_classifier",
    "build_tiny_tokenizer",
    "checkpoint_revision",
    "default_demo_dir",
    "derive_gate_pattern",
    "ensure_demo_model",
    "gate_position",
    "gate_positions",
    "load_reward_model",
    "parameters_on_meta",
    "reward_position",
    "reward_positions",
    "save_armorm_checkpoint",
]
