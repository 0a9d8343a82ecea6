"""Your own item or user text as a *_text table, validated like generated text (augment/text/external_text.py).

    python -m augment import-text --config configs/ml100k.yaml --kind item|user --file F [--source NAME]
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Literal, Mapping

import pandas as pd

from augment.kinds import KINDS, kind_spec
from augment.publishing import (
    STATIC_TIME,
    pinned,
    publish_table,
    stats_dir,
    store_for,
    versions_of,
)
from common.stage_stats import stage_timer
from configs import RunConfig
from feature_store import TableRef

log = logging.getLogger(__name__)


def external_table(cfg: RunConfig, kind: str, path: Path, source: str | None, v: Mapping[str, str],
                    rec: dict) -> TableRef:
    """Publish (or reuse) the *_text table of `kind` from an external file, checked against the pinned
    items/user_cutoffs version; the recipe names the file by name and sha256, the source and that version."""
    from augment.data.errors import DataError
    from augment.text.external_text import check_source_name, load_external_text
    from augment.text.output_validation import flag_counts
    from common.files import file_sha256, json_digest

    if not path.is_file():
        raise DataError(f"file not found ({path})", file=path.name)
    source = check_source_name(source or path.stem)
    k = kind_spec(kind)
    check, id_map = k.external_check, k.id_map
    store = store_for(cfg)

    # A daily run reads a file that grows: only the rows written before its interval end (they carry their time)
    daily = cfg.stream is not None and k.time != "static"
    before = pd.Timestamp(cfg.stream.require_end()) if daily else None

    @functools.cache  # a daily run loads the rows once: their digest names the version, then they are published
    def build() -> pd.DataFrame:
        table = store.read_pandas(check, v[check])
        # No time in the file: static for catalogue text, else the user's history cutoff (external_check's `cutoff`).
        default = STATIC_TIME if k.time == "static" else None if daily else table.set_index(k.key)["cutoff"]
        out = load_external_text(path, kind, table[k.key], default, source, cfg.generation.validation,
                                 known_label=f"{check}@{v[check]}", id_map=store.read_pandas(id_map, v[id_map]),
                                 map_label=f"{id_map}@{v[id_map]}", before=before)
        rec["validation"] = flag_counts(out)
        rec["coverage"] = {"rows": len(out), f"{check}_rows": len(table)}
        log.info("%s text from %s: %s", kind, path.name, rec["validation"])
        return out

    # daily: the rows that landed, not the whole file, name the version (tomorrow's rows leave today's alone)
    content = (json_digest({"rows": build()[[k.key, "event_timestamp", "text"]].astype("str").to_numpy().tolist()})
               if daily else file_sha256(path))
    recipe = {"external": {"file": path.name, "sha256" if not daily else "landed_sha256": content,
                           "source": source}, check: v[check],
              id_map: v[id_map],
              "validation": cfg.generation.validation.model_dump(mode="json")}
    rec["external"] = recipe["external"]
    return publish_table(cfg, k.text_spec(), build, recipe, __name__)


def import_text(cfg: RunConfig, kind: Literal["item", "user"], path: str | Path, inputs: Mapping[str, str],
                source: str | None = None) -> dict[str, str]:
    """Publish a CSV/Parquet file of item or user text as item_knowledge_text / user_profile_text, validated like
    generated text (augment/text/external_text.py); `inputs` pins the items (item) or user_cutoffs (user) version."""
    v = pinned("import-text", inputs, kind)
    with stage_timer(stats_dir(cfg), f"import-{kind}-text") as rec:
        ref = external_table(cfg, kind, Path(path).expanduser().resolve(), source, v, rec)
        return versions_of({KINDS[kind].text_table: ref}, rec)
