"""The encode stage: a text table (or the raw item metadata, the no-LLM control) -> a vector table.

    python -m augment encode --config configs/ml100k.yaml --kind item|user|item_raw
"""
from __future__ import annotations

import logging
from typing import Mapping

import pandas as pd

from augment.kinds import KINDS, EncodeKind
from augment.publishing import (
    kind_off,
    pinned,
    publish_table,
    reuse_table,
    settings_for,
    skipped,
    stats_dir,
    store_for,
    versions_of,
)
from common.files import digest
from common.stage_stats import stage_timer
from configs import RunConfig

log = logging.getLogger(__name__)


def encode(cfg: RunConfig, kind: EncodeKind, inputs: Mapping[str, str]) -> dict[str, str]:
    """Encode a text table (or the raw item metadata, the no-LLM control) into a vector table."""
    from augment.encode.cache import EncodeCache
    from augment.encode.text_encoder import (
        dimension,
        encode_texts,
        encoder_id,
        raw_item_texts,
    )
    from augment.text.output_validation import ACCEPTED

    if off := kind_off(cfg, kind):
        return skipped(off)
    v = pinned("encode", inputs, kind)
    k = KINDS[kind]
    source_name = k.encode_source
    store = store_for(cfg)
    encoder = encoder_id(cfg.encode)
    # Shared by all kinds and versions: a new version of a text table re-encodes only the texts it changed.
    cache = EncodeCache(cfg.workdir_path / "encode_cache", cfg.encode)
    table = k.emb_table
    raw = source_name != k.text_table  # the raw catalogue (the no-LLM control), not an LLM text table
    with stage_timer(stats_dir(cfg), f"encode-{kind}") as rec:
        def build() -> pd.DataFrame:
            src = store.read_pandas(source_name, v[source_name])
            if raw:
                texts = raw_item_texts(src, cfg.encode.raw_item_columns)
                frame = pd.DataFrame({"item_id": src["item_id"].to_numpy()})
            else:
                # Rejected outputs carry text "" and a flag: they get no vector row, so the join gives the default
                # vector and a missing flag instead of an embedding of nothing.
                if "flag" in src:
                    rec["skipped_rejected"] = int((~src["flag"].isin(ACCEPTED)).sum())
                    src = src[src["flag"].isin(ACCEPTED)].reset_index(drop=True)
                texts = src["text"].tolist()
                key = k.key
                # created_timestamp: when the text was generated (from the input table, not the clock).
                frame = pd.DataFrame({key: src[key].to_numpy(), "event_timestamp": src["event_timestamp"],
                                      "created_timestamp": src["created_timestamp"]})
            # dim is set below before _publish calls build; it shapes the result only when there are no texts.
            vectors, counts = cache.vectors(texts, lambda missing: encode_texts(missing, cfg.encode), dim)
            rec.update(counts)
            frame["emb"] = list(vectors)
            frame["encoder"] = encoder
            frame["source_hash"] = [digest(t) for t in texts]
            rec["dim"] = int(vectors.shape[1])
            return frame

        # raw_item_columns shapes only the item_raw text: the other kinds' versions ignore it.
        encode_settings = (settings_for(cfg.encode, "raw_item_columns") if raw
                           else cfg.encode.model_dump(mode="json", exclude={"raw_item_columns"}))
        recipe = {**v, "encoder": encoder, "encode": encode_settings}
        # Nothing new: reused without loading the encoder (it would only give the vector width). A new version
        # takes the width from the cache when it can, so one whose texts are all cached loads no encoder either.
        ref = reuse_table(cfg, table, recipe, __name__)
        if ref is None:
            dim = cache.dim() or dimension(cfg.encode)
            ref = publish_table(cfg, k.emb_spec(dim), build, recipe, __name__)
        rec["encoder"] = encoder
        return versions_of({table: ref}, rec)
