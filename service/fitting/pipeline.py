"""``paretorm fit`` end to end: data → embeddings → stage 1 → debiasing → stage 2 → checkpoint + report.

Order and choices follow the ArmoRM recipe (armorm.md §3): a frozen backbone loaded with ``AutoModel``;
ridge heads on rating data; the verbosity λ search on a reference set (default: the preference data's
chosen and rejected responses, as the authors' script does when no reference set is given); the gate
trained on preference pairs with the transform applied. Everything the stages produced goes into
``report.json`` / ``report.png`` beside the checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from service.fitting.data import PreferenceData, RatingData, Skip
from service.fitting.data import read_intra_pairs, read_preferences, read_ratings
from service.fitting.debias import DebiasConfig, DebiasResult, find_verbosity_penalties
from service.fitting.embed import BackboneEmbedder, Embeddings, cache_key, embed_with_cache
from service.fitting.encoding import EncodedItem, encode_conversations
from service.model.gate_pattern import derive_gate_pattern
from service.fitting.gating_fit import GatingFitConfig, GatingFitResult, PreferencePairs, build_pairs, fit_gating
from service.fitting.inputs import check_local_backbone
from service.fitting.package import assemble_armorm, save_fitted_checkpoint
from service.fitting.reference import REFERENCE_CORR_THRESHOLD, REFERENCE_LAMBDA_GRID
from service.fitting.regression import RegressionResult, RidgeConfig, fit_regression_heads
from service.fitting.report import build_report, write_report
from service.model.armorm import ArmoRMRewardModel
from service.model.loading import checkpoint_revision

DEFAULT_VERBOSITY_OBJECTIVE = "helpsteer-verbosity"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class FitConfig:
    backbone: Path
    ratings: Path
    preferences: Path
    out: Path
    objectives: tuple[str, ...] | None = None
    reference: Path | None = None
    intra_pairs: Path | None = None
    verbosity_objective: str | None = None
    """None: ``helpsteer-verbosity`` if it is an objective, else no debiasing. "" disables debiasing."""
    corr_threshold: float = REFERENCE_CORR_THRESHOLD
    lambda_grid: tuple[float, ...] = REFERENCE_LAMBDA_GRID
    ridge: RidgeConfig = field(default_factory=RidgeConfig)
    gating: GatingFitConfig = field(default_factory=GatingFitConfig)
    dtype: str = "float32"
    device: str = "cpu"
    batch_tokens: int = 16384
    shard_size: int = 1024
    max_tokens: int | None = 8192
    cache_dir: Path | None = None
    gate_pattern: tuple[int, ...] | None = None
    skip_bad: bool = False
    progress: bool = True
    max_shard_size: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        check_local_backbone(Path(self.backbone))


@dataclass
class FitOutcome:
    model: ArmoRMRewardModel
    regression: RegressionResult
    debias: DebiasResult | None
    gating: GatingFitResult
    report: dict
    out: Path


def default_cache_dir() -> Path:
    base = os.environ.get("PARETORM_CACHE_DIR") or Path.home() / ".cache" / "paretorm"
    return Path(base).expanduser() / "embeddings"


def run_fitting(cfg: FitConfig) -> FitOutcome:
    """Fit heads, debiasing and gate on `cfg`'s data over its frozen backbone; save checkpoint and report."""
    data = _read_data(cfg)
    fit = _Fitter.load(cfg)
    regression, rating_kept, rating_skips = fit.regression_heads(data.ratings)
    pair_emb, pair_kept, pair_skips = fit.embed_pairs("preferences", data.prefs)
    debias = fit.debias(regression, pair_emb, data.reference, data.verbosity)
    transform = debias.transform if debias is not None else torch.eye(len(data.ratings.objectives))
    pairs = _pairs(pair_emb, regression.weight, transform, same_prompt=True)
    intra_pairs = None
    if data.intra is not None:
        intra_emb = fit.embed_pairs("intra", data.intra)[0]
        intra_pairs = _pairs(intra_emb, regression.weight, transform, same_prompt=False)
    gating = fit_gating(pairs, cfg.gating, intra=intra_pairs)
    model, out = fit.package(data.ratings.objectives, regression, transform, gating)
    sample_idx = gating.val_index[:12]
    prompts = [_prompt_label(data.prefs.pairs[pair_kept[i]].chosen) for i in sample_idx]
    with torch.no_grad():
        sample_weights = gating.gating(pairs.gate[torch.as_tensor(sample_idx, dtype=torch.long), 0]).numpy()
    report = build_report(
        objectives=data.ratings.objectives, regression=regression, debias=debias, gating=gating,
        sample_prompts=prompts, sample_gating=sample_weights,
        data={
            "ratings": {"path": data.ratings.path, "used": len(rating_kept),
                        "skipped": _skips(data.ratings.skipped + rating_skips)},
            "preferences": {"path": data.prefs.path, "used": len(pair_kept),
                            "skipped": _skips(data.prefs.skipped + pair_skips)},
            "reference": data.reference.path if data.reference else "preferences",
            "intra_pairs": data.intra.path if data.intra else None,
            "gate_pattern": list(fit.pattern),
            "backbone": str(cfg.backbone),
        },
    )  # fmt: skip
    write_report(report, out)
    return FitOutcome(model, regression, debias, gating, report, out)


@dataclass(frozen=True)
class _FitData:
    """Every input file, read and validated before the backbone loads (a bad line fails in seconds)."""

    ratings: RatingData
    prefs: PreferenceData
    reference: PreferenceData | None
    intra: PreferenceData | None
    verbosity: int | None


def _read_data(cfg: FitConfig) -> _FitData:
    ratings = read_ratings(cfg.ratings, cfg.objectives, skip_bad=cfg.skip_bad)
    return _FitData(
        ratings=ratings,
        prefs=read_preferences(cfg.preferences, skip_bad=cfg.skip_bad),
        reference=read_preferences(cfg.reference, skip_bad=cfg.skip_bad) if cfg.reference else None,
        intra=read_intra_pairs(cfg.intra_pairs, skip_bad=cfg.skip_bad) if cfg.intra_pairs else None,
        verbosity=_verbosity_index(cfg, ratings.objectives),
    )


@dataclass
class _Fitter:
    """The frozen backbone, its tokenizer and gate pattern, and the stages that embed through them."""

    cfg: FitConfig
    tokenizer: Any
    backbone: Any
    pattern: tuple[int, ...]
    embedder: BackboneEmbedder
    fingerprint: str  # the backbone's content and dtype: part of every embedding cache key

    @classmethod
    def load(cls, cfg: FitConfig) -> _Fitter:
        tokenizer = AutoTokenizer.from_pretrained(str(cfg.backbone), local_files_only=True)
        backbone = AutoModel.from_pretrained(
            str(cfg.backbone), dtype=_DTYPES[cfg.dtype], local_files_only=True
        ).to(cfg.device)
        pattern = cfg.gate_pattern or _configured_pattern(cfg.backbone) or derive_gate_pattern(tokenizer)
        pad_id = tokenizer.pad_token_id
        embedder = BackboneEmbedder(
            backbone, pad_id=pad_id if pad_id is not None else 0, batch_tokens=cfg.batch_tokens,
            device=cfg.device,
        )
        fingerprint = f"{checkpoint_revision(Path(cfg.backbone))}:{cfg.dtype}"
        return cls(cfg, tokenizer, backbone, pattern, embedder, fingerprint)

    def embed(self, name: str, items: list[EncodedItem]) -> Embeddings:
        cfg = self.cfg
        key = cache_key(self.fingerprint, _DTYPES[cfg.dtype], items)
        return embed_with_cache(
            self.embedder, items, cache_root=Path(cfg.cache_dir or default_cache_dir()), name=name, key=key,
            shard_size=cfg.shard_size, progress=cfg.progress,
        )  # fmt: skip

    def regression_heads(self, ratings: RatingData) -> tuple[RegressionResult, list[int], list[Skip]]:
        """Stage 1: ridge heads on the rating data; also which rating lines were used and which skipped."""
        examples = ratings.examples
        items, skipped = encode_conversations(
            self.tokenizer, [ex.messages for ex in examples], self.pattern, path=ratings.path,
            lines=[ex.line for ex in examples], max_tokens=self.cfg.max_tokens,
        )  # fmt: skip
        kept = [i for i, item in enumerate(items) if item is not None]
        rating_emb = self.embed("ratings", [item for item in items if item is not None])
        labels = ratings.labels[kept]
        heads = fit_regression_heads(rating_emb.last.float(), labels, ratings.objectives, self.cfg.ridge)
        return heads, kept, skipped

    def embed_pairs(self, name: str, data: PreferenceData) -> tuple[Embeddings, list[int], list[Skip]]:
        """Chosen and rejected of every pair, embedded as interleaved conversations, (pairs, 2, H); a pair
        with either side over the token limit is dropped. Also the pairs kept and a skip per pair dropped."""
        max_tokens, pairs = self.cfg.max_tokens, data.pairs
        items, skipped = encode_conversations(
            self.tokenizer, [c for p in pairs for c in (p.chosen, p.rejected)], self.pattern, path=data.path,
            lines=[p.line for p in pairs for _ in range(2)], max_tokens=max_tokens,
        )  # fmt: skip
        kept = [i for i in range(len(pairs)) if items[2 * i] is not None and items[2 * i + 1] is not None]
        if not kept:
            raise ValueError(
                f"{data.path}: every pair is over the {max_tokens}-token limit; raise --max-tokens"
            )
        both = [item for i in kept for item in (items[2 * i], items[2 * i + 1]) if item is not None]
        emb = self.embed(name, both)
        h = emb.last.shape[-1]
        pairs_emb = Embeddings(emb.last.reshape(len(kept), 2, h), emb.gate.reshape(len(kept), 2, h))
        by_line = {s.line: s for s in skipped}  # one entry per dropped pair
        return pairs_emb, kept, list(by_line.values())

    def debias(
        self, regression: RegressionResult, pair_emb: Embeddings, reference: PreferenceData | None,
        verbosity: int | None,
    ) -> DebiasResult | None:
        """The verbosity penalties, searched on the reference set (default: the preference pairs)."""
        if verbosity is None:
            return None
        ref_emb = pair_emb if reference is None else self.embed_pairs("reference", reference)[0]
        ref_rewards = (ref_emb.last.float().reshape(-1, ref_emb.last.shape[-1]) @ regression.weight.T).numpy()
        cfg = self.cfg
        return find_verbosity_penalties(
            ref_rewards, DebiasConfig(verbosity, threshold=cfg.corr_threshold, grid=cfg.lambda_grid)
        )

    def package(
        self,
        objectives: list[str],
        regression: RegressionResult,
        transform: torch.Tensor,
        gating: GatingFitResult,
    ) -> tuple[ArmoRMRewardModel, Path]:
        """The ArmoRM checkpoint: this backbone, the heads, the transform and the gate, saved to `cfg.out`."""
        model = assemble_armorm(
            self.backbone.cpu(), objective_names=objectives, regression_weight=regression.weight,
            transform=transform, gating=gating.gating, gate_pattern=self.pattern,
            pad_token_id=self.tokenizer.pad_token_id,
        )  # fmt: skip
        description = f"fitted by paretorm fit from backbone {Path(self.cfg.backbone).name}"
        out = save_fitted_checkpoint(
            model, self.tokenizer, self.cfg.out, max_shard_size=self.cfg.max_shard_size,
            extra_config={"paretorm_description": description},
        )  # fmt: skip
        return model, out


def _verbosity_index(cfg: FitConfig, objectives: list[str]) -> int | None:
    name = cfg.verbosity_objective
    if name == "":
        return None
    if name is None:
        return objectives.index(DEFAULT_VERBOSITY_OBJECTIVE) if DEFAULT_VERBOSITY_OBJECTIVE in objectives else None
    if name not in objectives:
        raise ValueError(f"--verbosity-objective {name!r} is not one of the objectives {objectives}")
    return objectives.index(name)


def _configured_pattern(backbone: Path) -> tuple[int, ...] | None:
    """A backbone that is itself a paretorm/ArmoRM checkpoint carries its gate pattern in config."""
    pattern = getattr(AutoConfig.from_pretrained(str(backbone)), "gating_token_pattern", None)
    return tuple(int(t) for t in pattern) if pattern else None


def _pairs(emb: Embeddings, weight: torch.Tensor, transform: torch.Tensor, *, same_prompt: bool) -> PreferencePairs:
    gate = emb.gate.float()
    if same_prompt:  # one prompt per pair: use the chosen side's gate state for both (equal up to numerics)
        gate = gate[:, :1].expand(-1, 2, -1).contiguous()
    return build_pairs(emb.last, gate, weight, transform)


def _prompt_label(messages: list[dict[str, str]]) -> str:
    user = [m["content"] for m in messages[:-1] if m["role"] == "user"]
    text = " ".join((user[-1] if user else messages[0]["content"]).split())
    return text if len(text) <= 48 else text[:45] + "..."


def _skips(skips: list[Skip]) -> dict:
    return {"count": len(skips), "lines": [{"line": s.line, "reason": s.reason} for s in skips[:100]]}


__all__ = ["FitConfig", "FitOutcome", "default_cache_dir", "run_fitting"]
