"""Daily runs (config `stream`): profile cutoffs that never move, the refresh policy, the forward-in-time split,
and the promise that no training label ever sees a profile built from its own or a later interaction.

No LLM here: the profile vectors are a fake (named so below) that encodes which interactions each profile was
built from, published into a real store and joined by the real CTR dataset builder.
"""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from augment import stages
from augment.data.stream_split import stream_split, time_us
from configs import SplitConfig, StreamConfig, load_config
from configs.train_config import FeatureEntry
from feature_store import definitions as defs
from models.dataset_builder import build_ctr_dataset

DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2026-01-10", tz="UTC")


def _log(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[us, UTC]")
    frame["rating"] = np.float32(4.0)
    frame["label"] = np.int8(1)
    return frame


def _stream(end: pd.Timestamp, **refresh) -> StreamConfig:
    return StreamConfig(start=START.to_pydatetime(), end=end.to_pydatetime(), valid_intervals=1,
                        refresh={"min_new_interactions": 2, "max_age_days": 3, **refresh})


def _config(make_tiny_stream_config, tmp_path, days_after_start: int):
    base = load_config(make_tiny_stream_config(tmp_path))
    return base.with_stream_end(base.stream.start + timedelta(days=days_after_start))


@pytest.mark.timeout(60)
def test_bootstrap_cutoff_is_kar_and_later_profiles_follow_the_refresh_policy():
    log = _log([(1, i, f"2026-01-0{i} 10:00") for i in range(1, 7)]        # 6 before start: history = first 3
               + [(1, 20, "2026-01-10 09:00"), (1, 21, "2026-01-10 18:00")]  # 2 new on day 0: refresh at day 1
               + [(2, 30, "2026-01-05 12:00"), (2, 31, "2026-01-10 12:00")]  # 1 new, age rule (3 days) applies
               + [(3, 40, "2026-01-11 08:00"), (3, 41, "2026-01-11 09:00")])  # joins after start: profiled at 2 new
    rows, cut = stream_split(log, SplitConfig(history_max=30), _stream(START + 3 * DAY))
    got = {(u, c.isoformat()) for u, c in zip(cut["user_id"], cut["cutoff"])}
    assert got == {
        (1, "2026-01-04T10:00:00+00:00"),  # KAR: (6+1)//2 = 3 history rows; the cutoff is the 4th row's time
        (1, "2026-01-11T00:00:00+00:00"),  # 2 new interactions by the end of day 0
        (2, "2026-01-10T00:00:00+00:00"),  # one row before start: its history is that row, cut at the start
        (2, "2026-01-13T00:00:00+00:00"),  # 1 new row: refreshed only once the profile is 3 days old
        (3, "2026-01-12T00:00:00+00:00"),  # joined after start: first profile once 2 interactions are in
    }
    assert cut.set_index(["user_id", "cutoff"])["n_history"].to_dict()[(1, START + DAY)] == 8
    rows_u1 = rows[rows["user_id"] == 1]
    assert rows_u1["role"].tolist() == ["history"] * 3 + ["sample"] * 5  # history rows are never labels
    assert set(rows[rows["user_id"] == 3]["role"]) == {"sample"}  # joined after start: every row is a label
    # forward-in-time split relative to the end (start + 3 days): test = the newest day, valid = the day before
    assert set(rows.loc[rows["timestamp"] >= START + 2 * DAY, "split"]) <= {"test"}
    assert (rows.loc[rows["timestamp"] < START + DAY, "split"] == "train").all()


@pytest.mark.timeout(60)
def test_the_gate_window_holds_out_the_newest_test_intervals_and_valid_comes_before_it():
    log = _log([(1, 100 + d, f"2026-01-{10 + d:02d} 12:00") for d in range(-3, 7)])  # one row a day
    stream = _stream(START + 7 * DAY).model_copy(update={"test_intervals": 3, "valid_intervals": 2})
    rows, _ = stream_split(log, SplitConfig(), stream)
    by_day = dict(zip(rows["timestamp"].dt.day, rows["split"]))
    # end = 01-17: the window is [01-14, 01-17), valid [01-12, 01-14), train everything older
    assert [by_day[d] for d in range(7, 17)] == ["train"] * 5 + ["valid"] * 2 + ["test"] * 3
    assert stream.test_from == (START + 4 * DAY).to_pydatetime()
    assert stream.valid_from == (START + 2 * DAY).to_pydatetime()


@pytest.mark.timeout(60)
def test_age_rule_refreshes_a_stale_profile_with_one_new_interaction():
    log = _log([(1, i, f"2026-01-0{i} 10:00") for i in range(1, 5)] + [(1, 9, "2026-01-13 10:00")])
    _, cut = stream_split(log, SplitConfig(), _stream(START + 5 * DAY))
    assert cut["cutoff"].tolist() == [pd.Timestamp("2026-01-03 10:00", tz="UTC"),
                                      pd.Timestamp("2026-01-14", tz="UTC")]
    _, cut = stream_split(log, SplitConfig(), _stream(START + 5 * DAY, max_age_days=30))
    assert len(cut) == 1  # one new interaction and a fresh enough profile: no new LLM call


@pytest.mark.timeout(60)
def test_a_profile_once_cut_never_moves_as_the_log_grows(make_tiny_stream_config, tmp_path):
    """The fixed past: yesterday's (user, cutoff) rows and prompts are today's, byte for byte."""
    before = None
    for k in range(3):
        cfg = _config(make_tiny_stream_config, tmp_path, k)
        v = stages.ingest(cfg)
        v.update(stages.split(cfg, v))
        v.update(stages.prompts(cfg, v))
        prompts = stages.store_for(cfg).read_pandas("user_prompts", v["user_prompts"])
        now = {(u, c, h) for u, c, h in zip(prompts["user_id"], prompts["cutoff"], prompts["prompt_hash"])}
        if before is not None:
            assert before <= now and len(now) > len(before)
        before = now
    # and the item prompts (catalogue unchanged) keep their version across intervals
    item_versions = set()
    for k in range(2):
        cfg = _config(make_tiny_stream_config, tmp_path, k)
        v = stages.ingest(cfg)
        v.update(stages.split(cfg, v))
        item_versions.add(stages.prompts(cfg, v)["item_prompts"])
    assert len(item_versions) == 1


def _fake_profile_vectors(store, v: dict) -> str:
    """FAKE user_profile_emb (no LLM, no encoder): one row per profile (user, cutoff) whose vector holds, in days
    since the epoch, the newest and oldest interaction the profile was built from (what build_profile_prompts
    uses: the last history_max interactions strictly before the cutoff), computed here independently."""
    inter = store.read_pandas("interaction_splits", v["interaction_splits"])
    cut = store.read_pandas("user_cutoffs", v["user_cutoffs"])
    newest, oldest = [], []
    for uid, c in zip(cut["user_id"], cut["cutoff"]):
        seen = inter[(inter["user_id"] == uid) & (inter["timestamp"] < c)].sort_values("timestamp").tail(30)
        newest.append(time_us(seen["timestamp"]).max() / 86_400e6)
        oldest.append(time_us(seen["timestamp"]).min() / 86_400e6)
    frame = pd.DataFrame({"user_id": cut["user_id"], "event_timestamp": cut["cutoff"],
                          "created_timestamp": cut["cutoff"], "encoder": "fake", "source_hash": "fake"})
    frame["emb"] = [np.array([a, b, 1.0, 0.0], dtype=np.float32) for a, b in zip(newest, oldest)]
    return store.publish(defs.user_profile_emb(4), lambda: frame, recipe={"fake": v["user_cutoffs"]}).version


@pytest.mark.timeout(120)
def test_no_training_label_sees_a_profile_built_from_its_own_or_a_later_interaction(make_tiny_stream_config,
                                                                                      tmp_path):
    cfg = _config(make_tiny_stream_config, tmp_path, 2)
    v = stages.ingest(cfg)
    v.update(stages.split(cfg, v))
    store = stages.store_for(cfg)
    v["user_profile_emb"] = _fake_profile_vectors(store, v)
    entry = FeatureEntry(name="user_profile_emb", type="vector", source="user_profile_emb", key="user_id",
                         column="emb")
    built = build_ctr_dataset(store, v, [entry])
    cut = store.read_pandas("user_cutoffs", v["user_cutoffs"])
    checked = 0
    for part in ("train", "valid", "test"):
        split = getattr(built.data, part)
        label_days = time_us(split.frame["timestamp"]) / 86_400e6
        vec = split.vectors["user_profile_emb"]
        joined = vec[:, 2] == 1.0
        # every joined profile was built only from interactions strictly before the label
        assert (vec[joined, 0] < label_days[joined]).all()
        checked += int(joined.sum())
        # and a label without a profile had no profile cut strictly before it (none was missed)
        for uid, t in zip(split.frame["user_id"][~joined], split.frame["timestamp"][~joined]):
            assert not ((cut["user_id"] == uid) & (cut["cutoff"] < t)).any()
    assert checked > 100


@pytest.mark.timeout(60)
def test_stream_config_checks():
    with pytest.raises(ValueError, match="not on the interval grid"):
        StreamConfig(start=START.to_pydatetime(), end=(START + pd.Timedelta(hours=5)).to_pydatetime())
    from configs import RunConfig

    with pytest.raises(ValueError, match="declared id types"):
        RunConfig.model_validate({"stream": {"start": "2026-01-10T00:00:00Z"}})
    with pytest.raises(ValueError, match="stream.end is not set"):
        StreamConfig(start=START.to_pydatetime()).require_end()
