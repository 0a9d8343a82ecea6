"""Bring your own text: `import-text` and generation.external publish a file as item/user text, validated and
checked against the pinned tables like generated text, with the file's sha256 in the manifest."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from augment import stages
from augment.data.errors import DataError
from augment.publishing import STATIC_TIME
from configs import REPO_ROOT, load_config

TEXT_OK = "Tagged by users as: heist, slow burn, great score — «noir» 🎬"


def ITEM_PINS(v: dict) -> dict:  # what import-text --kind item pins: the items table and the item id map
    return {t: v[t] for t in ("items", "item_id_map")}


def _csv(path, body: str):
    path.write_bytes(b"\xef\xbb\xbf" + body.replace("\n", "\r\n").encode())  # BOM + CRLF
    return path


def test_import_item_text_happy_path(tiny, tmp_path):
    cfg, v = tiny
    f = _csv(tmp_path / "tags.csv", f'item_id,text,event_timestamp\n3,"{TEXT_OK}",\n'
                                     '1,"Tagged by users as: pixar, toys, friendship",2001-02-03T00:00:00Z\n')
    out = stages.import_text(cfg, "item", f, ITEM_PINS(v), source="ml-tags")
    store = stages.store_for(cfg)
    t = store.read_pandas("item_knowledge_text", out["item_knowledge_text"])
    assert t["item_id"].tolist() == [1, 3] and t["text"].iloc[1] == TEXT_OK
    assert set(t["model"]) == {"external:ml-tags"} and set(t["flag"]) == {"ok"}
    assert set(t["finish_reason"]) == {"external"} and set(t["template_name"]) == {""}
    assert t["prompt_tokens"].sum() == 0 and t["output_tokens"].sum() == 0
    assert t["event_timestamp"].tolist() == [pd.Timestamp("2001-02-03", tz="UTC"), STATIC_TIME]
    recipe = store.manifest("item_knowledge_text", out["item_knowledge_text"])["recipe"]
    assert recipe["external"] == {"file": "tags.csv", "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
                                  "source": "ml-tags"}
    assert recipe["items"] == v["items"]
    assert stages.import_text(cfg, "item", f, ITEM_PINS(v), source="ml-tags") == out  # reused


def test_unknown_id_exits_2_one_line_and_publishes_nothing(tiny, tmp_path):
    cfg, v = tiny
    f = _csv(tmp_path / "tags.csv", "item_id,text\n1,Tagged by users as: pixar and toys\n999,Tagged by nobody at all\n")
    config = tmp_path / "run.yaml"
    out = subprocess.run([sys.executable, "-m", "augment", "import-text", "--config", str(config), "--kind", "item",
                          "--file", str(f), "--input", f"items={v['items']}",
                          "--input", f"item_id_map={v['item_id_map']}"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "tags.csv: line 3: column 'item_id': item_id '999' not found in item_id_map@" in err[0], err
    assert not (cfg.workdir_path / "feature_store" / "item_knowledge_text").exists()


@pytest.mark.parametrize("body, match", [
    ("item_id,text\n1,Tagged by users as: pixar and toys\n2,Tagged by users as: bond\n1,Tagged again by someone\n",
     r"tags.csv: column 'item_id': duplicate item_id 1 at line 2 and line 4"),
    ("item_id,text\n1,Tagged by users as: pixar and toys\n2.5,Tagged by users as: bond\n",
     r"tags.csv: line 3: column 'item_id': item_id '2.5' not found in item_id_map@"),
    ("movie,text\n1,Tagged by users as: pixar and toys\n", r"tags.csv: column 'item_id': missing column"),
    ("item_id,text,event_timestamp\n1,Tagged by users as: pixar and toys,yesterday\n",
     r"tags.csv: line 2: column 'event_timestamp': not a timestamp"),
])
def test_bad_files_are_one_line_data_errors(tiny, tmp_path, body, match):
    cfg, v = tiny
    with pytest.raises(DataError, match=match) as err:
        stages.import_text(cfg, "item", _csv(tmp_path / "tags.csv", body), ITEM_PINS(v))
    assert "\n" not in str(err.value)


def test_blank_text_is_published_rejected(tiny, tmp_path):
    cfg, v = tiny
    f = _csv(tmp_path / "tags.csv", "item_id,text\n 2 ,   \n1,Tagged by users as: pixar and toys\n")
    out = stages.import_text(cfg, "item", f, ITEM_PINS(v))
    t = stages.store_for(cfg).read_pandas("item_knowledge_text", out["item_knowledge_text"]).set_index("item_id")
    assert t.loc[2, "flag"] == "empty" and t.loc[2, "text"] == ""
    assert t.loc[1, "flag"] == "ok" and t.loc[1, "model"] == "external:tags"  # source defaults to the file stem


def test_user_text_without_timestamp_gets_the_cutoff(tiny, tmp_path):
    cfg, v = tiny
    pd.DataFrame({"user_id": [4, 7], "text": ["Likes tense action films and heist plots.",
                                              "Prefers gentle comedies and romances."],
                  "event_timestamp": [None, "2030-01-01T00:00:00Z"]}).to_parquet(tmp_path / "profiles.parquet")
    out = stages.import_text(cfg, "user", tmp_path / "profiles.parquet", {t: v[t] for t in ("user_cutoffs", "user_id_map")},
                             source="crm")
    store = stages.store_for(cfg)
    t = store.read_pandas("user_profile_text", out["user_profile_text"]).set_index("user_id")
    cutoffs = store.read_pandas("user_cutoffs", v["user_cutoffs"]).set_index("user_id")["cutoff"]
    assert t.loc[4, "event_timestamp"] == cutoffs.loc[4]
    assert t.loc[7, "event_timestamp"] == pd.Timestamp("2030-01-01", tz="UTC")
    assert store.manifest("user_profile_text", out["user_profile_text"])["recipe"]["user_cutoffs"] == \
        v["user_cutoffs"]


@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_external_config_and_item_description_through_prompts_publish_and_encode(tmp_path, make_tiny_config):
    """One config change (generation.external.item) replaces the LLM: generate skips, publish-texts imports the
    file, encode embeds it; a description column feeds the prompt template and the raw-text control."""
    tags = _csv(tmp_path / "tags.csv", "item_id,text\n" + "".join(
        f"{i},Tagged by users as: tag{i} and a second tag for item {i}\n" for i in range(1, 21)))
    path = make_tiny_config(tmp_path, **{
        "data.item_text_columns": ["description"], "prompts.item_template": "item_knowledge_desc_v1",
        "encode.raw_item_columns": ["title", "year", "description"],
        "generation.external": {"item": {"path": str(tags), "source": "tags"}}})
    raw = yaml.safe_load(path.read_text())
    raw["data"]["generic"]["items"]["columns"]["description"] = "desc"
    path.write_text(yaml.safe_dump(raw))
    movies = tmp_path / "data" / "movies.csv"
    lines = movies.read_text().splitlines()
    movies.write_text("\n".join([lines[0] + ",desc"] + [f'{ln},"A film, number {i}, about <things>."'
                                                        for i, ln in enumerate(lines[1:], 1)]) + "\n")
    cfg = load_config(path)
    out = stages.ingest(cfg)
    out.update(stages.split(cfg, out))
    out.update(stages.prompts(cfg, out))
    store = stages.store_for(cfg)
    first = json.loads(store.read_pandas("item_prompts", out["item_prompts"])["messages"].iloc[0])[1]["content"]
    assert "description: A film, number 1, about ‹things›." in first
    assert stages.generate(cfg, "item", out)[0]["skipped"].startswith("generation.external.item is set")
    out.update(stages.publish_texts(cfg, "item", out))
    text = store.read_pandas("item_knowledge_text", out["item_knowledge_text"])
    assert len(text) == 20 and set(text["model"]) == {"external:tags"}
    recipe = store.manifest("item_knowledge_text", out["item_knowledge_text"])["recipe"]
    assert recipe["items"] == out["items"] and recipe["external"]["file"] == "tags.csv"
    out.update(stages.encode(cfg, "item", out))
    out.update(stages.encode(cfg, "item_raw", out))
    emb = store.read_pandas("item_knowledge_emb", out["item_knowledge_emb"])
    assert len(emb) == 20 and len(emb["emb"].iloc[0]) == 384
    raw_recipe = store.manifest("item_raw_emb", out["item_raw_emb"])["recipe"]
    assert raw_recipe["encode"]["raw_item_columns"] == ["title", "year", "description"]


def test_ml_latest_tags_script_makes_one_text_per_movie(tmp_path):
    from augment.data.ml_latest_tags_text import main, tags_to_text

    tags = pd.DataFrame({"userId": [1, 2, 3, 1], "movieId": [10, 10, 10, 20],
                         "tag": ["Funny", "heist", "funny ", "  "], "timestamp": [5, 9, 7, 3]})
    out = tags_to_text(tags)
    assert out.to_dict("records") == [{"item_id": 10, "text": "Tagged by users as: Funny, heist.",
                                       "event_timestamp": 9}]
    tags.to_csv(tmp_path / "tags.csv", index=False)
    assert main([str(tmp_path / "tags.csv"), str(tmp_path / "out" / "texts.csv"), "--time", "none"]) == 0
    assert pd.read_csv(tmp_path / "out" / "texts.csv", keep_default_na=False).to_dict("records") == [
        {"item_id": 10, "text": "Tagged by users as: Funny, heist.", "event_timestamp": ""}]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["texts.csv"]  # no temp file left beside it


@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_encode_of_nothing_new_loads_no_encoder(tiny, tmp_path, monkeypatch):
    """A second encode of the same text table reuses its version without loading the encoder at all."""
    from augment.encode import text_encoder as encode_module
    cfg, v = tiny
    f = _csv(tmp_path / "tags.csv", "item_id,text\n1,Tagged by users as: pixar and toys\n2,Tagged by users as: bond\n")
    v.update(stages.import_text(cfg, "item", f, ITEM_PINS(v)))
    first = stages.encode(cfg, "item", v)

    def no_encoder(*args, **kw):
        raise AssertionError("the encoder was loaded for a table that already exists")

    monkeypatch.setattr(encode_module, "dimension", no_encoder)
    monkeypatch.setattr(encode_module, "encode_texts", no_encoder)
    assert stages.encode(cfg, "item", v) == first
    assert stages.store_for(cfg).resolve("item_knowledge_emb") == first["item_knowledge_emb"]  # made latest


def test_a_daily_run_reads_the_user_text_that_landed_before_its_interval_end(tmp_path, make_tiny_stream_config):
    """Stream mode: a user may have one text per time; rows dated at or after the run's end are not read, so the
    file can keep growing and a re-run of the interval names the same version."""
    cfg = load_config(make_tiny_stream_config(tmp_path))
    cfg = cfg.with_stream_end(cfg.stream.start + pd.Timedelta(days=1))  # the run ending 1970-01-31
    v = stages.ingest(cfg)
    v.update(stages.split(cfg, v))
    pins = {t: v[t] for t in ("user_cutoffs", "user_id_map")}
    rows = "user_id,text,event_timestamp\n" \
           "4,Likes tense action films and heist plots.,1970-01-25T00:00:00Z\n" \
           "4,Now into slow character dramas and heists.,1970-01-30T12:00:00Z\n" \
           "7,Prefers gentle comedies and romances.,1970-01-29T00:00:00Z\n"
    path = _csv(tmp_path / "profiles.csv", rows + "7,Written tomorrow: not landed yet.,1970-02-05T00:00:00Z\n")
    out = stages.import_text(cfg, "user", path, pins, source="crm")
    store = stages.store_for(cfg)
    t = store.read_pandas("user_profile_text", out["user_profile_text"])
    assert list(zip(t["user_id"], t["event_timestamp"].dt.strftime("%m-%d %H"))) == [
        (4, "01-25 00"), (4, "01-30 12"), (7, "01-29 00")]
    # the file grows after the interval: the same landed rows, the same version
    _csv(path, rows + "7,Written tomorrow: not landed yet.,1970-02-05T00:00:00Z\n9,Later still.,1970-02-09T00:00:00Z\n")
    assert stages.import_text(cfg, "user", path, pins, source="crm") == out
    with pytest.raises(DataError, match=r"profiles\.csv.*line 3.*event_timestamp"):
        stages.import_text(cfg, "user", _csv(path, "user_id,text,event_timestamp\n4,A fine long profile text.,"
                                                   "1970-01-25T00:00:00Z\n7,No time on this one at all.,\n"), pins)
    with pytest.raises(DataError, match="duplicate user_id 4 and event_timestamp"):
        stages.import_text(cfg, "user", _csv(path, rows + "4,The same user at the same time again.,"
                                                          "1970-01-25T00:00:00Z\n"), pins)
