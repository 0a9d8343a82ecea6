"""Content-addressed vector cache for the encode stage: a text that was encoded once, with the same encoder
settings, is never encoded again.

A daily run gives a text table a new version when a handful of its rows changed; the table's version then misses,
but almost every text in it was encoded yesterday. The cache lives under
`<workdir>/encode_cache/<settings digest>/` as Parquet part files of (`text_digest`, `vector`), one part per
encode call that added vectors; once there are more than `COMPACT_AT` parts (a daily deployment adds one a day),
the next add folds them into one (written whole before the parts it replaces are deleted, so a reader sees every
vector at any moment; a reader whose listing went stale lists again). The settings digest covers everything that changes a vector (encoder id, model,
backend, pooling, prompt, normalize, max_model_len), so changing one of them starts an empty directory instead of
serving vectors of another encoder. The vector width is the width of the cached vectors, so a fully cached
encode never loads the encoder.

    from augment.encode.text_encoder import encode_texts
    from augment.encode.cache import EncodeCache

    cache = EncodeCache(cfg.workdir_path / "encode_cache", cfg.encode)
    dim = cache.dim()                      # None until something is cached
    vectors, counts = cache.vectors(texts, lambda missing: encode_texts(missing, cfg.encode), dim)
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from augment.encode.text_encoder import NOTELLM_PROMPT, encoder_id
from common.files import atomic_path, digest, json_digest
from configs import EncodeConfig

# batch_size and raw_item_columns are left out: the first changes only speed, the second which text is made
# (and the text is the key), not the vector a given text gets.
VECTOR_SETTINGS = ("model", "backend", "pooling", "prompt", "normalize", "max_model_len")
KEY_LENGTH = 32  # 128 bits: a collision would silently hand a text another text's vector
COMPACT_AT = 32  # parts; a lookup opens every part, so a year of daily parts would cost a year of file opens


def settings_digest(cfg: EncodeConfig) -> str:
    """The name of the cache directory: a digest of everything besides the text that decides its vector."""
    settings = {name: getattr(cfg, name) for name in VECTOR_SETTINGS}
    # The NoteLLM prompt is code, not config: a reworded prompt gives other vectors under the same settings.
    prompt_text = NOTELLM_PROMPT if cfg.prompt == "notellm" else None
    return json_digest({"encoder": encoder_id(cfg), "settings": settings, "prompt_text": prompt_text})


def text_key(text: str) -> str:
    return digest(text, KEY_LENGTH)


def _schema(dim: int) -> pa.Schema:
    return pa.schema([("text_digest", pa.string()), ("vector", pa.list_(pa.float32(), dim))])


class EncodeCache:
    """The vectors of one encoder setting, keyed by text digest."""

    def __init__(self, root: str | Path, cfg: EncodeConfig) -> None:
        self.dir = Path(root) / settings_digest(cfg)

    def parts(self) -> list[Path]:
        # Only committed parts: a run killed mid-write leaves at most a `.tmp-part-*` file, never a `part-*`.
        return sorted(self.dir.glob("part-*.parquet")) if self.dir.is_dir() else []

    def dim(self) -> int | None:
        """The width of the cached vectors (read from a part's schema, no data), None while the cache is empty."""
        parts = self.parts()
        return pq.read_schema(parts[0]).field("vector").type.list_size if parts else None

    def lookup(self, keys: Iterable[str]) -> tuple[list[str], np.ndarray]:
        """(keys found, their vectors as a (n, dim) float32 array), each key once, in no particular order."""
        wanted = sorted(set(keys))
        for attempt in range(3):
            parts = self.parts()
            if not parts or not wanted:
                return [], np.zeros((0, self.dim() or 0), dtype=np.float32)
            try:
                dim = pq.read_schema(parts[0]).field("vector").type.list_size
                table = ds.dataset(parts, format="parquet").to_table(filter=ds.field("text_digest").isin(wanted))
                break
            except FileNotFoundError:  # a compaction replaced parts after we listed them: list again
                if attempt == 2:
                    raise
        # Two runs at once may both add a text: same settings, same vector, so any one copy will do.
        found = table.column("text_digest").to_pandas()
        first = ~found.duplicated().to_numpy()
        vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        return found[first].tolist(), vectors[first]

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> Path | None:
        """Commit new vectors as one part file; nothing to add writes nothing."""
        if not len(keys):
            return None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
        table = pa.Table.from_arrays([pa.array(list(keys), pa.string()), column], schema=_schema(vectors.shape[1]))
        # A unique name per call: parallel encodes of the same settings (item and user texts) never collide, and
        # the temp file + rename means readers and crashed runs see the whole part or none of it.
        final = self.dir / f"part-{uuid.uuid4().hex}.parquet"
        with atomic_path(final, suffix=".parquet") as tmp:
            pq.write_table(table, tmp)
        if len(self.parts()) > COMPACT_AT:
            self.compact()
        return final

    def compact(self) -> Path | None:
        """Fold every committed part into one (each text once); returns the new part, None if there was <= 1."""
        parts = self.parts()
        if len(parts) <= 1:
            return None
        try:
            table = ds.dataset(parts, format="parquet").to_table()
        except FileNotFoundError:  # another process is compacting the same parts: leave it to that one
            return None
        keep = ~table.column("text_digest").to_pandas().duplicated().to_numpy()
        table = table.filter(pa.array(keep))
        final = self.dir / f"part-{uuid.uuid4().hex}.parquet"
        with atomic_path(final, suffix=".parquet") as tmp:
            pq.write_table(table, tmp)
        for part in parts:  # only the parts folded in: a part added meanwhile by another encode stays
            part.unlink(missing_ok=True)
        return final

    def vectors(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray],
                dim: int | None = None) -> tuple[np.ndarray, dict[str, int]]:
        """The (len(texts), d) float32 vectors of `texts` in their order: cached ones read, the missing distinct
        texts run through `encode` once each and added to the cache. `dim` shapes the result when there are no
        texts at all. Counts: texts (rows), distinct, encoded and cached (distinct texts, encoded + cached =
        distinct)."""
        keys = pd.Series([text_key(t) for t in texts], dtype=object)
        # codes: row -> distinct text, numbered in order of first appearance, so first_row[c] is where c is first.
        codes, distinct = pd.factorize(keys.to_numpy())
        first_row = np.flatnonzero(~keys.duplicated().to_numpy())
        found, cached = self.lookup(distinct)
        width = cached.shape[1] if len(found) else dim
        at = pd.Index(found, dtype=object).get_indexer(distinct)
        missing = np.flatnonzero(at < 0)
        if len(missing):
            fresh = np.asarray(encode([texts[i] for i in first_row[missing]]), dtype=np.float32)
            width = fresh.shape[1]
        out = np.zeros((len(distinct), width or 0), dtype=np.float32)
        if len(found):
            out[at >= 0] = cached[at[at >= 0]]
        if len(missing):
            out[missing] = fresh
            self.add(list(distinct[missing]), fresh)
        counts = {"texts": len(keys), "distinct": len(distinct), "encoded": len(missing),
                  "cached": len(distinct) - len(missing)}
        return out[codes], counts


__all__ = ["EncodeCache", "settings_digest", "text_key", "VECTOR_SETTINGS"]
