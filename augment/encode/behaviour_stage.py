"""The behaviour-encoder stage: NoteLLM-style encoders tuned on co-occurring items, and the tables they encode.

    python -m augment behaviour-encoder --config configs/ml100k.yaml
"""
from __future__ import annotations

import logging
from typing import Mapping

import pandas as pd

from augment.publishing import (
    pinned,
    publish_table,
    reuse_table,
    stats_dir,
    store_for,
    versions_of,
)
from common.files import digest
from common.stage_stats import stage_timer
from configs import RunConfig
from feature_store import definitions as defs

log = logging.getLogger(__name__)


def behaviour_encoder(cfg: RunConfig, inputs: Mapping[str, str], force: bool = False) -> dict:
    """NoteLLM-style behaviour alignment (augment/encode/behaviour_encoder.py): encode.model tuned on item pairs that
    co-occur in training interactions, twice with the same pairs and settings (on the item knowledge text and on
    the raw item text), each copy encoding the text it was tuned on into item_knowledge_emb_bt / item_raw_emb_bt.
    Head mode (behaviour_encoder.mode) encodes each text once with the frozen encoder and writes the table by
    applying the trained head to those vectors; full mode encodes the table with the fine-tuned model.
    A no-op ({"skipped": ...}) unless behaviour_encoder.enabled or `force`."""
    import time

    import numpy as np

    from augment.embedded_models import resolve_encoder
    from augment.encode.behaviour_encoder import (
        base_vectors,
        encoder_version,
        finetune,
        head_encode,
        mine_pairs,
        pair_settings,
        train_settings,
    )
    from augment.encode.text_encoder import (
        dimension,
        encode_texts,
        encoder_id,
        raw_item_texts,
    )
    from augment.text.output_validation import ACCEPTED

    bc = cfg.behaviour_encoder
    if not (bc.enabled or force):
        return {"skipped": "behaviour_encoder.enabled is false"}
    v = pinned("behaviour-encoder", inputs)
    store = store_for(cfg)
    # Always sentence-transformers: that is what gets fine-tuned, whatever encode.backend serves the plain tables.
    base_cfg = cfg.encode.model_copy(update={"backend": "sentence-transformers"})
    base = encoder_id(base_cfg)
    # The pairs are the items with accepted knowledge text, for BOTH encoders: the same pairs, a fair control.
    pairs_recipe = {"interaction_splits": v["interaction_splits"], "item_knowledge_text": v["item_knowledge_text"],
                    **pair_settings(bc)}
    train_recipe = train_settings(bc)
    if bc.mode == "head":  # the head is trained on (and its artefact ends in) normalised vectors or not
        train_recipe["normalize"] = cfg.encode.normalize
    texts_recipe = {"item": {"item_knowledge_text": v["item_knowledge_text"]},
                    "item_raw": {"items": v["items"], "raw_item_columns": list(cfg.encode.raw_item_columns)}}
    enc_versions = {kind: encoder_version({"base": base, "text": t, "pairs": pairs_recipe, "train": train_recipe})
                    for kind, t in texts_recipe.items()}
    tables = {"item": "item_knowledge_emb_bt", "item_raw": "item_raw_emb_bt"}
    specs = {"item": defs.item_knowledge_emb_bt, "item_raw": defs.item_raw_emb_bt}
    recipes = {kind: {**v, "encoder": enc_versions[kind], "normalize": cfg.encode.normalize} for kind in tables}
    with stage_timer(stats_dir(cfg), "behaviour-encoder") as rec:
        refs = {tables[k]: reuse_table(cfg, tables[k], recipes[k], __name__) for k in tables}
        if all(refs.values()):  # nothing new: no splits read, no model loaded
            rec["encoders"] = enc_versions
            return versions_of(refs, rec)
        text = store.read_pandas("item_knowledge_text", v["item_knowledge_text"])
        text = text[text["flag"].isin(ACCEPTED)].set_index("item_id")
        items = store.read_pandas("items", v["items"])
        raw = pd.Series(raw_item_texts(items, cfg.encode.raw_item_columns), index=items["item_id"].to_numpy())
        pairs = mine_pairs(store.read_pandas("interaction_splits", v["interaction_splits"]), bc.window,
                           bc.pair_cap, bc.seed, keep_items=set(text.index) & set(raw.index))
        rec["pairs"] = len(pairs)
        sources = {"item": text["text"], "item_raw": raw}
        root = cfg.workdir_path / "encoders"
        for kind, table in tables.items():
            if refs[table] is not None:
                continue
            texts = sources[kind]
            base_dir = resolve_encoder(cfg.encode.model)
            base_vecs, encode_seconds = None, 0.0
            if bc.mode == "head":  # the frozen encoder reads every text of the table once: training and table
                start = time.perf_counter()
                base_vecs = base_vectors(base_dir, texts.tolist(), bc, cfg.encode.normalize, cfg.encode.batch_size)
                encode_seconds = time.perf_counter() - start
            manifest = finetune(base_dir, texts.reindex(pairs["item_a"]).tolist(),
                                texts.reindex(pairs["item_b"]).tolist(), bc, bc.seed, root / enc_versions[kind],
                                lineage={"base": base, "text": texts_recipe[kind], "pairs": pairs_recipe},
                                normalize=cfg.encode.normalize, base=base_vecs)
            rec[f"{kind}_encoder"] = {**{k: manifest[k] for k in ("version", "pairs", "seconds", "steps", "reused")},
                                      "mode": bc.mode, "base_encode_seconds": round(encode_seconds, 2)}
            enc_cfg = base_cfg.model_copy(update={"model": str(root / enc_versions[kind])})
            name = f"{base}+behaviour:{enc_versions[kind]}"

            def build() -> pd.DataFrame:  # called by _publish within this iteration
                if kind == "item":  # the knowledge text's own times, as item_knowledge_emb has them
                    frame = text[["event_timestamp", "created_timestamp"]].reset_index()
                else:
                    frame = pd.DataFrame({"item_id": texts.index.to_numpy()})
                values = texts.reindex(frame["item_id"]).tolist()
                if base_vecs is not None:  # the head on the base vectors: what the artefact encodes, no 2nd pass
                    vecs = head_encode(enc_cfg.model, np.stack([base_vecs[t] for t in values]), cfg.encode.normalize)
                else:
                    vecs = encode_texts(values, enc_cfg)
                frame["emb"] = list(vecs)
                frame["encoder"] = name
                frame["source_hash"] = [digest(t) for t in values]
                return frame

            dim = len(next(iter(base_vecs.values()))) if base_vecs else dimension(enc_cfg)
            refs[table] = publish_table(cfg, specs[kind](dim), build, recipes[kind], __name__)
        rec["encoders"] = enc_versions
        return versions_of(refs, rec)
