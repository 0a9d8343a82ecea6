"""The split stage: interactions -> interaction_splits (prompt history vs CTR samples) and user_cutoffs.

    python -m augment split --config configs/ml100k.yaml [--input interactions=<version>]
"""
from __future__ import annotations

import functools
import logging
from typing import Mapping

from augment.publishing import pinned, publish_table, stats_dir, store_for, versions_of
from common.stage_stats import stage_timer
from configs import RunConfig
from feature_store import definitions as defs

log = logging.getLogger(__name__)


def split(cfg: RunConfig, inputs: Mapping[str, str]) -> dict[str, str]:
    """KAR split: prompt history vs CTR samples per user, users into train/valid/test."""
    from augment.data.split import split_interactions
    from augment.data.stream_split import stream_split

    v = pinned("split", inputs)
    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), "split") as rec:
        negatives = cfg.data.feedback == "positive_only"

        @functools.cache
        def result():
            frame = store.read_pandas("interactions", v["interactions"])
            if cfg.stream is not None:
                return stream_split(frame, cfg.split, cfg.stream, sample_negatives=negatives)
            return split_interactions(frame, cfg.split, sample_negatives=negatives)

        split_settings = cfg.split.model_dump(mode="json")
        if not negatives:  # the negative-sampling settings shape nothing here: keep the version
            split_settings.pop("negatives")
        recipe = {**v, "split": split_settings, "negatives": negatives}
        if cfg.stream is not None:
            recipe["stream"] = cfg.stream.model_dump(mode="json")
        refs = {"interaction_splits": publish_table(cfg, defs.INTERACTION_SPLITS, lambda: result()[0], recipe, __name__,
                                               build_stats=lambda: {"negatives": result()[0].attrs.get("negatives")}),
                "user_cutoffs": publish_table(cfg, defs.USER_CUTOFFS, lambda: result()[1], recipe, __name__)}
        built = store.manifest("interaction_splits", refs["interaction_splits"].version).get("build_stats", {})
        if built.get("negatives"):
            rec["negatives"] = built["negatives"]
            log.info("split: sampled negatives %s", built["negatives"])
        return versions_of(refs, rec)
