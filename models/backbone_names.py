"""The backbones this package trains, by name, and what each can take: plain data, so the feature spec and the
trainers can ask without importing each other (models/backbones.py maps a name to its trainer and model class).

    from models.backbone_names import BACKBONES, reads_history
"""
from __future__ import annotations

DEEPCTR_BACKBONES = ("deepfm", "din", "dcnmix", "autoint")
BACKBONES = ("lightgbm", *DEEPCTR_BACKBONES)


def reads_history(name: str, sequence_backbones: tuple[str, ...]) -> bool:
    """Whether the backbone is fed each sample's item history: DIN always (its attention needs it), others when
    `train.sequence_backbones` lists them (mean-pooled)."""
    return name == "din" or name in sequence_backbones


def supports_adaptor(name: str) -> bool:
    """Whether the backbone can take KAR's adaptor (a torch module): the deepctr ones can, LightGBM cannot."""
    _check(name)
    return name in DEEPCTR_BACKBONES


def _check(name: str) -> None:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
