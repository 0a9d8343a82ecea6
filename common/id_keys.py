"""Original user/item ids (int or string, as in the source files) -> the int64 keys every table joins on.

Integer ids keep their value as the key, so integer datasets (MovieLens) read the same everywhere. String ids
(hashes, ASINs, UUIDs, SKUs) get a stable key: the first 62 bits of blake2b(id). Stable matters more than dense:
a key never changes when tomorrow's log adds ids, so yesterday's feature tables still join, and the serving side
turns a requested id into its key without a lookup table. Collisions are checked at ingest (an error naming both
ids; at 10M ids the chance is about 1e-5). The `<entity>_id_map` tables keep key -> original id for everything a
person reads.

An id's type is the dataset's, per entity: declared (`data.id_types`) or inferred. Inferred is "int" only when
every id of that entity in every file is a canonical integer ("7", not "007", "+7" or "7.0"), so "007" in one file
and "7" in another are two different string ids, never silently merged.

    python -m common.id_keys B00004TKSE 9d95d0956601ed05785c48fdada5f8af 42
"""
from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

IdType = Literal["int", "string"]
KEY_MASK = (1 << 62) - 1
_CANONICAL_INT = r"^-?(0|[1-9][0-9]{0,17})$"  # at most 18 digits: always fits int64


def is_canonical_int(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Per value: is this string exactly the decimal form of an integer (no sign '+', no leading zeros)?"""
    return pc.match_substring_regex(values, _CANONICAL_INT)


def infer_id_type(*columns: pa.Array | pa.ChunkedArray) -> IdType:
    """"int" if every value of every column (strings) is a canonical integer, else "string"."""
    for col in columns:
        if len(col) and not pc.all(is_canonical_int(col)).as_py():
            return "string"
    return "int"


def _hash(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big") & KEY_MASK


def string_keys(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """int64 key of each string id; hashes each distinct id once (10M rows with 1M distinct ids: about a second)."""
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks() if encoded.num_chunks else pa.array(
            [], pa.dictionary(pa.int32(), pa.string()))
    uniq = encoded.dictionary.to_pylist()
    table = np.fromiter((_hash(v) for v in uniq), dtype=np.int64, count=len(uniq))
    return table[encoded.indices.to_numpy(zero_copy_only=False)]


def keys_for(values: pa.Array | pa.ChunkedArray, id_type: IdType) -> np.ndarray:
    """int64 keys of string-typed id values under `id_type` (values already checked for that type)."""
    if id_type == "int":
        return pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return string_keys(values)


def key_of(value: object, id_type: IdType) -> int | None:
    """The key of one requested id (serving), or None if the id cannot be of this type."""
    if id_type == "int":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return None
        return int(value)
    if not isinstance(value, str):
        return None
    return _hash(value)


def show_id(value: object, id_type: IdType) -> str:
    """An id as error messages quote it: 42 for an int id, 'B00004TKSE' for a string id."""
    return str(value) if id_type == "int" else repr(str(value))


if __name__ == "__main__":
    import sys

    ids = pa.array(sys.argv[1:] or ["B00004TKSE", "42"])
    kind = infer_id_type(ids)
    print(f"id type: {kind}")
    for v, k in zip(ids.to_pylist(), keys_for(ids, kind)):
        print(f"{v}\t{k}")
