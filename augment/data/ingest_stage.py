"""The ingest stage: raw source -> canonical interactions, items, users and id-map tables.

    python -m augment ingest --config configs/ml100k.yaml
"""
from __future__ import annotations

import functools
import logging

import pandas as pd

from augment.publishing import (
    publish_table,
    settings_for,
    stats_dir,
    store_for,
    versions_of,
)
from common.stage_stats import stage_timer
from configs import REPO_ROOT, RunConfig
from feature_store import definitions as defs

log = logging.getLogger(__name__)


def ingest(cfg: RunConfig) -> dict[str, str]:
    """Raw source -> canonical interactions/items/users tables; a DataError names file, row and column."""
    from augment.data.canonical_checks import validate
    from augment.data.ingest import load_dataset
    from augment.data.sources import partition_fingerprint, source_fingerprint, source_names

    with stage_timer(stats_dir(cfg), "ingest") as rec:
        @functools.cache
        def canon():
            data = load_dataset(cfg.data, cfg.workdir_path / "cache", base_dir=REPO_ROOT, stream=cfg.stream)
            validate(data, source_names(cfg.data), cfg.data.item_text_columns)
            return data

        # The recipe names the source by content, so a changed file is a new version and an unchanged one is not
        # even parsed again.
        recipe = {"data": settings_for(cfg.data, "item_text_columns"),
                  "source": source_fingerprint(cfg.data, cfg.workdir_path / "cache", base_dir=REPO_ROOT)}
        # A log in daily partitions (stream.partitions): the partitions read as of this run's end shape the tables
        # made from the log (interactions, and the id maps, which hold the log's ids) but not the catalogue.
        log_recipe = recipe
        if cfg.stream is not None and cfg.stream.partitions is not None:
            log_recipe = {**recipe, "partitions": partition_fingerprint(cfg.data, cfg.stream, base_dir=REPO_ROOT)}
        # A daily run sees the log as of its interval end and nothing later; the catalogue tables do not depend on
        # the interval, so they keep their versions (and item knowledge is reused) while the catalogue is unchanged.
        end = cfg.stream.require_end() if cfg.stream else None
        inter_recipe = {**log_recipe, "end": end.isoformat()} if end else log_recipe

        def interactions() -> pd.DataFrame:
            frame = canon().interactions
            return frame if end is None else frame[frame["timestamp"] < end].reset_index(drop=True)

        def interaction_stats() -> dict:
            stats = dict(canon().stats)
            if end is not None:
                stats["end"] = end.isoformat()
                stats["rows_as_of_end"] = int((canon().interactions["timestamp"] < end).sum())
            return stats

        refs = {
            "interactions": publish_table(cfg, defs.INTERACTIONS, interactions, inter_recipe, __name__,
                                     build_stats=interaction_stats),
            "items": publish_table(cfg, defs.items_spec(cfg.data.item_text_columns), lambda: canon().items, recipe, __name__),
            "users": publish_table(cfg, defs.USERS, lambda: canon().users, recipe, __name__),
            defs.USER_ID_MAP.name: publish_table(cfg, defs.USER_ID_MAP, lambda: canon().id_maps["user"], log_recipe,
                                            __name__),
            defs.ITEM_ID_MAP.name: publish_table(cfg, defs.ITEM_ID_MAP, lambda: canon().id_maps["item"], log_recipe,
                                            __name__),
        }
        # What ingest did to the data (duplicates dropped, id types), also when this run reused the tables.
        rec["data"] = store_for(cfg).manifest("interactions", refs["interactions"].version).get("build_stats", {})
        log.info("ingest: %s", rec["data"])
        return versions_of(refs, rec)
