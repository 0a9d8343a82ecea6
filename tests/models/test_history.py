"""DIN's history: the user's items strictly before the sample's time, oldest first, most recent kept, 0-padded."""
import numpy as np
import pandas as pd
import pytest

from models.history import recent_items


def test_hand_example_ties_and_truncation():
    ev_u = [1, 1, 1, 1, 2, 1]
    ev_i = [10, 11, 12, 13, 20, 14]
    ev_t = [1, 2, 3, 3, 1, 5]
    q_u, q_t = [1, 1, 1, 2, 3], [3, 4, 6, 1, 9]
    hist, lens = recent_items(ev_u, ev_i, ev_t, q_u, q_t, max_len=3)
    # t=3: items at t=3 (the sample itself and a tie) are excluded
    assert hist[0].tolist() == [10, 11, 0] and lens[0] == 2
    # t=4: both t=3 items count now; the last 3 in time order
    assert lens[1] == 3 and hist[1, 0] == 11 and sorted(hist[1, 1:].tolist()) == [12, 13]
    assert hist[2, 2] == 14 and lens[2] == 3  # the most recent is last
    assert lens[3] == 0 and not hist[3].any()  # user 2's only event is at the same second
    assert lens[4] == 0  # unknown user


def test_never_the_sample_or_later_vs_brute_force():
    rng = np.random.default_rng(0)
    n = 600
    users, items, times = rng.integers(0, 15, n), rng.integers(1, 400, n), rng.integers(0, 50, n)
    ts = pd.Timestamp("1998-01-01", tz="UTC") + pd.to_timedelta(times, unit="s")
    hist, lens = recent_items(users, items, ts.to_numpy(), users, ts.to_numpy(), max_len=5)
    for r in range(n):
        m = (users == users[r]) & (times < times[r])
        before_t = np.sort(times[m])
        assert lens[r] == min(5, m.sum())
        # every history item is an earlier event of the same user; times never reach the sample's
        for k in range(lens[r]):
            cand = (users == users[r]) & (items == hist[r, k]) & (times < times[r])
            assert cand.any()
        assert not hist[r, lens[r]:].any()
        if lens[r]:
            # the window is the most recent one: its oldest element is not older than the 5th-newest event
            oldest_allowed = before_t[-lens[r]]
            cand = (users == users[r]) & (items == hist[r, 0]) & (times >= oldest_allowed) & (times < times[r])
            assert cand.any()


def test_bad_max_len():
    with pytest.raises(ValueError, match="max_len"):
        recent_items([1], [1], [1], [1], [2], max_len=0)


def test_ctr_dataset_history_precedes_each_sample(planted_workdir):
    from configs import TrainConfig
    from feature_store import FeatureStore
    from models.dataset_builder import build_ctr_dataset
    from models.feature_spec import tables_needed

    store = FeatureStore(planted_workdir / "feature_store")
    versions = {t: store.resolve(t) for t in tables_needed(TrainConfig())}
    built = build_ctr_dataset(store, versions, history_len=8)
    events = store.read_pandas("interaction_splits", built.versions["interaction_splits"])
    when = {(u, i): t for u, i, t in zip(events.user_id, events.item_id, events.timestamp)}
    for split in built.data.splits().values():
        assert split.history.shape == (len(split), 8)
        f = split.frame
        for r in range(0, len(f), 37):
            for k in range(int(split.history_len[r])):
                assert when[(f.user_id[r], split.history[r, k])] < f.timestamp[r]
    assert built.data.train.history_len.mean() > 5  # prompt history (10 per user) feeds it
