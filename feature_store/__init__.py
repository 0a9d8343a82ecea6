"""Versioned Parquet feature tables with Feast's vocabulary: specs, atomic publish, point-in-time join, online lookup.

Imports only pyarrow, numpy, pandas (lazily) and DuckDB: safe to import from DAG files and serving processes.

    from feature_store import FeatureStore, TableSpec, Feature, point_in_time_join, vector_matrix
    store = FeatureStore("var/feature_store")
    ref = store.publish(spec, df, recipe={...}, config={...})
    joined = point_in_time_join(labels, store, {spec.name: ref.version}, prefix_features=True)
"""
from feature_store.online import OnlineStore, OnlineTable
from feature_store.point_in_time import feature_column_name, point_in_time_join
from feature_store.store import FeatureStore, NotFound, TableRef, canonical_json, vector_matrix, version_id
from feature_store.table_spec import Feature, SchemaError, TableSpec, conform

__all__ = [
    "Feature", "FeatureStore", "NotFound", "OnlineStore", "OnlineTable", "SchemaError", "TableRef", "TableSpec",
    "canonical_json", "conform", "feature_column_name", "point_in_time_join", "vector_matrix", "version_id",
]
