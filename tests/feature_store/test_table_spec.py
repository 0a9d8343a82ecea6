"""Schema enforcement on write: every kind of bad input names table, column and first offending row."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from feature_store import Feature, SchemaError, TableSpec, conform


def test_arrow_schema_order_and_types(item_spec):
    s = item_spec.arrow_schema()
    assert s.names == ["item_id", "event_timestamp", "created_timestamp", "emb", "pop", "title"]
    assert s.field("emb").type == pa.list_(pa.float32(), 8)
    assert s.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert not s.field("item_id").nullable


def test_spec_round_trips_through_dict(item_spec):
    spec = TableSpec("t", "user", ("user_id", "day"), (Feature("v", "vector", dim=3, default=[1, 2, 3]),
                     Feature("tags", "list_string", default=["a"])), ttl=dt.timedelta(days=2),
                     key_dtypes={"day": "string"}, created_timestamp=None)
    assert TableSpec.from_dict(spec.to_dict()) == spec
    assert TableSpec.from_dict(item_spec.to_dict()) == item_spec


def test_safe_casts_accepted(item_spec, make_items):
    df = make_items()
    df["item_id"] = df["item_id"].astype("int32")
    df["pop"] = df["pop"].astype("float64")
    df["emb"] = [list(map(float, v)) for v in df["emb"]]  # python lists of doubles -> fixed_size_list<float>
    t = conform(item_spec, df)
    assert t.schema == item_spec.arrow_schema()
    assert t.num_rows == len(df)


def test_non_utc_timezone_is_converted(item_spec, make_items):
    df = make_items()
    df["event_timestamp"] = df["event_timestamp"].dt.tz_convert("Europe/Paris")
    t = conform(item_spec, df)
    assert t.column("event_timestamp").type.tz == "UTC"


def _raises(spec, df, *fragments):
    with pytest.raises(SchemaError) as e:
        conform(spec, df)
    msg = str(e.value)
    assert "\n" not in msg
    for f in ("'item_emb'", *fragments):
        assert f in msg, msg
    return msg


def test_missing_column(item_spec, make_items):
    _raises(item_spec, make_items().drop(columns=["pop"]), "'pop'", "missing")


def test_extra_column(item_spec, make_items):
    _raises(item_spec, make_items().assign(junk=1), "'junk'", "not declared")


def test_wrong_type(item_spec, make_items):
    _raises(item_spec, make_items().assign(pop="high"), "'pop'", "expected float")
    _raises(item_spec, make_items().assign(item_id=lambda d: d.item_id.astype(str)), "'item_id'")


def test_wrong_vector_length_names_first_row(item_spec, make_items):
    df = make_items()
    df.loc[5, "emb"] = np.ones(7, dtype=np.float32)
    df.loc[9, "emb"] = np.ones(3, dtype=np.float32)
    _raises(item_spec, df, "'emb'", "row 5", "length 7", "expected 8")


def test_null_vector_and_null_element(item_spec, make_items):
    df = make_items()
    df["emb"] = df["emb"].astype(object)
    df.loc[4, "emb"] = None
    _raises(item_spec, df, "'emb'", "row 4", "null")
    t = pa.Table.from_pandas(make_items(), preserve_index=False)
    vals = [list(map(float, v)) for v in t.column("emb").to_pylist()]
    vals[3][2] = None
    t = t.set_column(t.schema.get_field_index("emb"), "emb", pa.array(vals))
    _raises(item_spec, t, "'emb'", "row 3", "null vector element")


def test_null_join_key(item_spec, make_items):
    df = make_items()
    df["item_id"] = df["item_id"].astype("Int64")
    df.loc[6, "item_id"] = pd.NA
    _raises(item_spec, df, "'item_id'", "row 6", "null")


def test_duplicate_key_and_time_names_first_duplicate(item_spec, make_items):
    df = make_items()
    df.loc[7, ["item_id", "event_timestamp"]] = df.loc[2, ["item_id", "event_timestamp"]].values
    msg = _raises(item_spec, df, "row 7", "duplicates")
    assert "item_id=0" in msg


def test_naive_timestamp_rejected(item_spec, make_items):
    df = make_items()
    df["event_timestamp"] = df["event_timestamp"].dt.tz_localize(None)
    _raises(item_spec, df, "'event_timestamp'", "time zone")


def test_int_overflow_rejected():
    spec = TableSpec("small", "x", ("k",), (Feature("b", "int8"),), event_timestamp=None, created_timestamp=None)
    with pytest.raises(SchemaError, match="'b'"):
        conform(spec, pd.DataFrame({"k": [1, 2], "b": [1, 300]}))


def test_static_table_duplicate_keys():
    spec = TableSpec("static", "x", ("k",), (Feature("b", "bool"),), event_timestamp=None, created_timestamp=None)
    with pytest.raises(SchemaError, match="row 2 duplicates"):
        conform(spec, pd.DataFrame({"k": [1, 2, 1], "b": [True, False, True]}))


def test_bad_specs_rejected():
    with pytest.raises(ValueError, match="dim"):
        Feature("v", "vector")
    with pytest.raises(ValueError, match="dtype"):
        Feature("v", "float128")
    with pytest.raises(ValueError, match="twice"):
        TableSpec("t", "e", ("k",), (Feature("k", "int64"),))
    with pytest.raises(ValueError, match="length 2"):
        Feature("v", "vector", dim=3, default=[1, 2])
