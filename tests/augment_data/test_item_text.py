"""Item text columns (data.item_text_columns): ingest, prompt placeholders, token cap, the raw-text control."""
from __future__ import annotations

import json

import pytest

from augment.data.canonical_checks import validate
from augment.data.errors import DataError
from augment.data.ingest import load_generic
from augment.data.sources import source_names
from augment.encode.text_encoder import raw_item_text, raw_item_texts
from augment.text.prompts import build_item_prompts, fit_tokens, load_template
from configs import RunConfig

MOVIES = ('id,name,genre,desc\n10,Alpha (1999),Drama|Comedy,"A quiet\r\ndrama  about <b>two</b> sisters"\n'
          '20,"Beta, The (2001)",Action,\n30,Gamma,(no genres listed),Ein Café in Köln ✓\n')


def _cfg(make_dataset, movies=MOVIES, columns=("description",)):
    cfg = make_dataset(movies=movies)
    items = cfg.generic.items.model_copy(update={"columns": {**cfg.generic.items.columns, "description": "desc"}})
    return cfg.model_copy(update={"generic": cfg.generic.model_copy(update={"items": items}),
                                  "item_text_columns": list(columns)})


def test_text_column_is_read_cleaned_and_nullable(make_dataset):
    cfg = _cfg(make_dataset)
    c = load_generic(cfg)
    validate(c, source_names(cfg), cfg.item_text_columns)
    assert list(c.items.columns) == ["item_id", "title", "year", "genres", "description"]
    assert c.items["description"].tolist() == ["A quiet drama about <b>two</b> sisters", None,
                                               "Ein Café in Köln ✓"]
    with pytest.raises(DataError, match=r"item text columns \['description'\], expected \[\]"):
        validate(c, source_names(cfg))


def test_configured_text_column_missing_from_file_is_an_error(make_dataset):
    cfg = _cfg(make_dataset, movies="id,name,genre\n10,Alpha,Drama\n20,Beta,Action\n30,Gamma,\n")
    with pytest.raises(DataError, match=r"movies.csv: column 'desc': missing column \(mapped from 'description'\)"):
        load_generic(cfg)


def test_config_validates_text_and_raw_column_names():
    with pytest.raises(ValueError, match="needs data.source=generic"):
        RunConfig.model_validate({"data": {"item_text_columns": ["description"]}})
    generic = {"interactions": {"path": "r.csv"}, "items": {"path": "m.csv"}}
    with pytest.raises(ValueError, match="lower-case identifier"):
        RunConfig.model_validate({"data": {"source": "generic", "generic": generic, "item_text_columns": ["title"]}})
    with pytest.raises(ValueError, match=r"encode.raw_item_columns \['title', 'description'\]"):
        RunConfig.model_validate({"encode": {"raw_item_columns": ["title", "description"]}})
    ok = RunConfig.model_validate({"data": {"source": "generic", "generic": generic,
                                            "item_text_columns": ["description"]},
                                   "encode": {"raw_item_columns": ["title", "description"]}})
    assert ok.encode.raw_item_columns == ["title", "description"]


def test_description_placeholder_is_fenced_capped_and_token_cut(make_dataset):
    c = load_generic(_cfg(make_dataset))
    template = load_template("item_knowledge_desc_v1")
    prompts = build_item_prompts(c.items, template).set_index("item_id")
    user = {i: json.loads(m)[1]["content"] for i, m in prompts["messages"].items()}
    assert "description: A quiet drama about ‹b›two‹/b› sisters\n</movie>" in user[10]
    assert "description: unknown\n" in user[20] and "description: Ein Café in Köln ✓" in user[30]
    long = c.items.assign(description=["word " * 600, None, None])
    capped = json.loads(build_item_prompts(long, template)["messages"].iloc[0])[1]["content"]
    assert len(capped.split("description: ")[1].split("\n")[0]) <= 1000
    words = len  # a stand-in tokenizer: one token per character
    cut = json.loads(build_item_prompts(long, template, words, max_data_tokens=100)["messages"].iloc[0])[1]["content"]
    fixed = len("Alpha") + len("1999") + len("Drama, Comedy")
    assert len(cut.split("description: ")[1].split("\n")[0]) <= 100 - fixed


def test_unknown_placeholder_is_a_clear_error(make_dataset):
    c = load_generic(make_dataset())  # no description column configured
    with pytest.raises(ValueError, match=r"placeholder \$description is not an item column.*data.item_text_columns"):
        build_item_prompts(c.items, load_template("item_knowledge_desc_v1"))


def test_fit_tokens_keeps_short_texts_and_shares_the_rest():
    out = fit_tokens({"a": "x" * 10, "b": "y" * 100, "c": "z" * 100}, 70, len)
    assert out["a"] == "x" * 10 and len(out["b"]) + len(out["c"]) <= 60 and len(out["b"]) >= 25


def test_raw_text_from_configured_columns(make_dataset):
    items = load_generic(_cfg(make_dataset)).items
    default = raw_item_texts(items, ["title", "year", "genres"])
    assert default == [raw_item_text(t, y, g) for t, y, g in zip(items["title"], items["year"], items["genres"])]
    assert raw_item_texts(items, ["title", "description"]) == [
        "Alpha A quiet drama about <b>two</b> sisters", "Beta, The", "Gamma Ein Café in Köln ✓"]
    with pytest.raises(ValueError, match="'tagline' is not a column of the items table"):
        raw_item_texts(items, ["title", "tagline"])


def test_grounded_template_reads_the_overview(make_dataset):
    """item_grounded_v1 (configs/ml-latest-small-overviews.yaml): the item's own text, fenced, in every prompt."""
    c = load_generic(_cfg(make_dataset))
    items = c.items.rename(columns={"description": "overview"})
    prompts = build_item_prompts(items, load_template("item_grounded_v1")).set_index("item_id")
    user = {i: json.loads(m)[1]["content"] for i, m in prompts["messages"].items()}
    assert "overview: A quiet drama about ‹b›two‹/b› sisters\n</movie>" in user[10]
    assert "at most 40 words" in user[10] and "Do not retell the plot" in user[10]
