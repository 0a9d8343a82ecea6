"""KAR prompts as chat messages: item factual knowledge and user preference reasoning, from versioned templates.

Template files (``augment/templates/<name>.txt``) are plain text:

    # template: <name> version: <version>     <- line 1, required; <name> must match the file name
    # any further lines starting with "#"     <- comments, until the first section
    [system]                                  <- the system message follows
    ...
    [user]                                    <- the user message follows
    ... $placeholder ...                      <- string.Template: $name or ${name}; "$$" is a literal "$"

The fixed instruction comes first in the user message and the data last, inside a tag fence (<movie>...</movie>,
<user>...</user>), so all prompts share a long prefix (vLLM's prefix cache) and untrusted text (titles, histories)
cannot pose as instructions: data is stripped of control characters and newlines, angle brackets become ‹ ›
(no fake closing tag), titles are capped at 200 characters, and a user prompt only sees that user's history rows.

Item templates may also use the items table's text columns (data.item_text_columns, e.g. $description): fenced
and cleaned like titles, capped at 1,000 characters each and, given a token counter, cut so that the item's data
fits prompts.max_data_tokens (the title and genres are counted first; the text columns share what is left).
A placeholder that is neither title/year/genres nor a text column of the items table is an error naming it.

User templates use $profile (one sentence from the user's attributes), $history (the history's titles and
ratings, in time order) and, optionally, $genres (the history's liked / less liked genres with counts: facts a small
model can reason from instead of recalling what the titles are).

    python -m augment.text.prompts            # print one item and one user prompt for ML-100K (cached wheel in var/cache)
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from augment.data.raw_columns import clean_text

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates"  # augment/templates: the package data
TITLE_MAX = 200
TEXT_MAX = 1000  # per item text column (a description), before the token cap
ITEM_FIELDS = ("title", "year", "genres")
FIELD_MAX = 60
GENRES_TOP = 5  # genres named per side (liked / disliked) in a user prompt's $genres
_HEADER = re.compile(r"^# template: (?P<name>[\w.-]+) version: (?P<version>[\w.-]+)\s*$")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    system: str
    user: str
    sha256: str  # of the template file's bytes

    def render(self, **values: str) -> str:
        """The messages as a JSON string (system, user), with ``values`` substituted into both."""
        try:
            messages = [{"role": "system", "content": string.Template(self.system).substitute(values)},
                        {"role": "user", "content": string.Template(self.user).substitute(values)}]
        except (KeyError, ValueError) as err:
            raise ValueError(f"template {self.name} v{self.version}: bad or missing placeholder {err}") from None
        return json.dumps(messages, ensure_ascii=False)

    def placeholders(self) -> list[str]:
        """The $names the template substitutes, in order of first use."""
        return list(dict.fromkeys(string.Template(self.system).get_identifiers()
                                  + string.Template(self.user).get_identifiers()))

    def prompt_hash(self, messages: str) -> str:
        return hashlib.sha256(f"{self.name}\n{self.version}\n{messages}".encode()).hexdigest()


def load_template(name: str) -> PromptTemplate:
    """``name`` is a file stem in augment/templates (e.g. "item_knowledge_v1") or a path to a template file."""
    path = Path(name) if name.endswith(".txt") or "/" in name else TEMPLATE_DIR / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {name!r} not found at {path}")
    raw = path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    head = _HEADER.match(lines[0]) if lines else None
    if head is None:
        raise ValueError(f"{path}: line 1 must be '# template: <name> version: <version>'")
    if head["name"] != path.stem:
        raise ValueError(f"{path}: header names template {head['name']!r}, file is {path.stem!r}")
    sections: dict[str, list[str]] = {}
    current = None
    for no, line in enumerate(lines[1:], start=2):
        if line.strip() in ("[system]", "[user]"):
            current = line.strip()[1:-1]
            if current in sections:
                raise ValueError(f"{path}: line {no}: section [{current}] appears twice")
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"{path}: line {no}: text before the [system] section")
    if list(sections) != ["system", "user"]:
        raise ValueError(f"{path}: needs a [system] then a [user] section, found {list(sections)}")
    system, user = ("\n".join(sections[s]).strip() for s in ("system", "user"))
    return PromptTemplate(head["name"], head["version"], system, user, hashlib.sha256(raw).hexdigest())


def fence_safe(value: object, max_len: int) -> str:
    """One line of untrusted text that cannot leave its fence: clean, no angle brackets, capped."""
    text = clean_text(value) or ""
    text = text.replace("<", "‹").replace(">", "›")
    return clean_text(text, max_len) or ""


def _frame(rows: list[dict], key: str, template: PromptTemplate) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=[key, "messages"])
    out[key] = out[key].astype("int64")
    out["messages"] = out["messages"].astype("str")
    out["template_name"] = pd.Series([template.name] * len(out), dtype="str")
    out["template_version"] = pd.Series([template.version] * len(out), dtype="str")
    out["prompt_hash"] = out["messages"].map(template.prompt_hash).astype("str")
    return out


def item_text_placeholders(columns: Sequence[str], template: PromptTemplate) -> list[str]:
    """The item text columns ``template`` uses, given the items table's ``columns``; a placeholder that is no item
    field is a one-line ValueError."""
    text_columns = [c for c in columns if c not in ("item_id", *ITEM_FIELDS)]
    unknown = [p for p in template.placeholders() if p not in ITEM_FIELDS and p not in text_columns]
    if unknown:
        raise ValueError(f"template {template.name} v{template.version}: placeholder ${unknown[0]} is not an item "
                         f"column; the items table has {[*ITEM_FIELDS, *text_columns]} (item text columns come "
                         "from data.item_text_columns)")
    return [p for p in template.placeholders() if p in text_columns]


def fit_tokens(texts: dict[str, str], budget: int, count_tokens: Callable[[str], int]) -> dict[str, str]:
    """Cut ``texts`` so their token counts sum to at most ``budget``: short texts stay whole, the long ones share
    what is left equally (water-filling), each cut at a character boundary found by bisection."""
    costs = {k: count_tokens(v) for k, v in texts.items()}
    if sum(costs.values()) <= budget:
        return texts
    out, remaining = dict(texts), max(budget, 0)
    order = sorted(texts, key=costs.get)
    for i, key in enumerate(order):
        share = remaining // (len(order) - i)
        if costs[key] > share:
            lo, hi = 0, len(texts[key])  # longest prefix whose capped form fits in `share`
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if count_tokens(fence_safe(texts[key][:mid], TEXT_MAX)) <= share:
                    lo = mid
                else:
                    hi = mid - 1
            out[key] = fence_safe(texts[key][:lo], TEXT_MAX) if lo else ""
            costs[key] = count_tokens(out[key]) if lo else 0
        remaining -= costs[key]
    return out


def build_item_prompts(items: pd.DataFrame, template: PromptTemplate,
                       count_tokens: Callable[[str], int] | None = None, max_data_tokens: int = 768) -> pd.DataFrame:
    """One prompt per item: item_id, messages (JSON), template_name, template_version, prompt_hash.

    Text columns the template uses are fenced and capped at TEXT_MAX characters; with ``count_tokens`` they are
    also cut to fit ``max_data_tokens`` together with the title and genres. A blank text reads "unknown"."""
    text_columns = item_text_placeholders(list(items.columns), template)
    rows = []
    for item in items.sort_values("item_id").to_dict("records"):
        genres = ", ".join(fence_safe(g, FIELD_MAX) for g in item["genres"]) or "unknown"
        year = "unknown" if pd.isna(item["year"]) else str(int(item["year"]))
        values = {"title": fence_safe(item["title"], TITLE_MAX), "year": year,
                  "genres": fence_safe(genres, 4 * FIELD_MAX)}
        texts = {c: fence_safe(item[c], TEXT_MAX) for c in text_columns}
        if count_tokens is not None and texts:
            fixed = sum(count_tokens(values[k]) for k in ITEM_FIELDS)
            texts = fit_tokens(texts, max_data_tokens - fixed, count_tokens)
        values.update({c: t or "unknown" for c, t in texts.items()})
        rows.append({"item_id": item["item_id"], "messages": template.render(**values)})
    return _frame(rows, "item_id", template)


# ------------------------------------------------------------------------------------------------------------------
# The user profile sentence.

AGE_BUCKETS = ((18, "is under 18"), (25, "is aged 18-24"), (35, "is aged 25-34"), (45, "is aged 35-44"),
               (55, "is aged 45-54"), (65, "is aged 55-64"))
GENDERS = {"m": "male", "male": "male", "man": "male", "f": "female", "female": "female", "woman": "female"}
# Occupations that read badly as "works as a ..." or carry no information.
OCCUPATION_PHRASES = {"retired": "is retired", "student": "is a student", "homemaker": "is a homemaker",
                      "entertainment": "works in entertainment", "marketing": "works in marketing",
                      "healthcare": "works in healthcare", "other": None, "none": None, "unknown": None}


def age_phrase(age: object) -> str | None:
    if age is None or pd.isna(age):
        return None
    for upper, phrase in AGE_BUCKETS:
        if int(age) < upper:
            return phrase
    return "is 65 or older"


def profile_sentence(gender: object = None, age: object = None, occupation: object = None) -> str:
    """KAR's profile sentence; with nothing known it is neutral: "Given a user, this user's ..."."""
    sex = GENDERS.get((clean_text(gender) or "").lower())
    clauses = [age_phrase(age)]
    occ = fence_safe(occupation, FIELD_MAX).lower()
    if occ:
        phrase = OCCUPATION_PHRASES.get(occ, f"works as {'an' if occ[0] in 'aeiou' else 'a'} {occ}")
        clauses.append(phrase)
    clauses = [c for c in clauses if c]
    who = f"a {sex} user" if sex else "a user"
    if clauses:
        who += " who " + " and ".join(clauses)
    return f"Given {who}, this user's movie viewing history over time is listed below."


def history_line(title: str, rating: float, label: int = 1) -> str:
    """One history row: the rating when the log has one, else whether the event was a positive (implicit logs)."""
    # Double quotes delimit the title, so a title's own double quotes become single ones.
    quoted = f"\"{fence_safe(title, TITLE_MAX).replace(chr(34), chr(39))}\""
    if rating is None or rating != rating:  # NaN: data.feedback is label/event/positive_only
        return f"{quoted}, {'engaged' if label else 'not engaged'};"
    stars = f"{float(rating):g}"
    return f"{quoted}, {stars} star{'' if stars == '1' else 's'};"


def _history_by_user(user_ids: np.ndarray, item_ids: np.ndarray, ratings: np.ndarray, labels: np.ndarray,
                     titles: pd.Series) -> dict:
    """user_id -> the user's ``history_line`` rows joined by newlines (rows already in history order).

    The same text as joining ``history_line(title, rating, label)`` row by row, built from one quoted title per
    distinct item and one suffix per distinct (rating, label-if-no-rating), concatenated and joined per user in
    Arrow (no per-row Python)."""
    if not len(user_ids):
        return {}
    items, item_inv = np.unique(item_ids, return_inverse=True)
    quoted = pa.array(['"' + fence_safe(t, TITLE_MAX).replace(chr(34), chr(39)) for t in titles.reindex(items)],
                      pa.string())
    r = np.asarray(ratings, dtype=np.float64)
    no_rating = np.isnan(r)
    # (rating, 0) when there is a rating; (0, 1 + label truthiness) when there is none (implicit feedback)
    kind = np.where(no_rating, 1 + (np.asarray(labels) != 0), 0)
    pairs, pair_inv = np.unique(np.stack([np.where(no_rating, 0.0, r), kind], axis=1), axis=0, return_inverse=True)
    suffix = []
    for value, k in pairs:
        if k:
            suffix.append(f"\", {'engaged' if k == 2 else 'not engaged'};")
        else:
            text = f"{float(value):g}"
            suffix.append(f"\", {text} star{'' if text == '1' else 's'};")
    line = pc.binary_join_element_wise(quoted.take(pa.array(item_inv.reshape(-1))),
                                       pa.array(suffix, pa.string()).take(pa.array(pair_inv.reshape(-1))), "")
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
    offsets = pa.array(np.r_[starts, len(user_ids)].astype(np.int64))
    joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, line), "\n")
    return dict(zip(user_ids[starts].tolist(), joined.to_pylist()))


def genre_counts(owners: np.ndarray, item_ids: np.ndarray, labels: np.ndarray, items: pd.DataFrame,
                 top: int = GENRES_TOP) -> dict:
    """owner -> "Liked genres: Drama 12, Comedy 8. Less liked genres: Horror 3." from the owner's history rows (the
    $genres placeholder of user templates: facts for a small model to reason from, not to recall). Each history
    row counts once for every genre of its item; liked = label 1, less liked = label 0; the `top` most frequent
    each (ties by name); a side with no rows is left out, and an owner with neither reads "Genres: unknown."."""
    if not len(owners):
        return {}
    genres = items.set_index("item_id")["genres"]
    frame = pd.DataFrame({"owner": owners, "genres": genres.reindex(item_ids).to_numpy(),
                          "liked": np.asarray(labels) != 0}).explode("genres").dropna(subset=["genres"])
    frame["genres"] = [fence_safe(g, FIELD_MAX) for g in frame["genres"]]
    counts = frame.groupby(["owner", "liked", "genres"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["owner", "liked", "n", "genres"], ascending=[True, False, False, True])
    counts = counts.groupby(["owner", "liked"], sort=False).head(top)
    counts["part"] = counts["genres"] + " " + counts["n"].astype(str)
    sides = counts.groupby(["owner", "liked"], sort=False)["part"].agg(", ".join).unstack("liked")
    out = {}
    for owner, row in sides.iterrows():
        parts = [f"{name} genres: {row[flag]}." for flag, name in ((True, "Liked"), (False, "Less liked"))
                 if flag in row and isinstance(row[flag], str)]
        out[owner] = " ".join(parts)
    return out


def _user_messages(user_ids: Sequence, histories: Sequence[str], users: pd.DataFrame,
                   template: PromptTemplate, genres: Sequence[str] | None = None) -> list[dict]:
    """One rendered prompt per (user, history text): KAR's profile sentence from the user's attributes, and the
    history's genre counts where the template asks for $genres."""
    cols = [c for c in ("gender", "age", "occupation") if c in users]
    attributes = users.set_index("user_id")[cols].to_dict("index")
    sentence = functools.lru_cache(maxsize=4096)(profile_sentence)  # few distinct profiles, many users
    rows = []
    for k, (uid, history) in enumerate(zip(user_ids, histories)):
        p = attributes.get(uid, {})
        try:
            profile = sentence(**p)
        except TypeError:  # an unhashable attribute value: no caching
            profile = profile_sentence(**p)
        extra = {"genres": (genres[k] or "Genres: unknown.")} if genres is not None else {}
        rows.append({"user_id": uid, "messages": template.render(profile=profile, history=history, **extra)})
    return rows


def _wants_genres(template: PromptTemplate) -> bool:
    return "genres" in template.placeholders()


def build_user_prompts(history: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, cutoffs: pd.DataFrame,
                       template: PromptTemplate) -> pd.DataFrame:
    """One prompt per user in ``cutoffs``: user_id, messages, template_name, template_version, prompt_hash, cutoff.

    ``history`` may be the whole split frame: only rows with role == "history" are used, and a history row later
    than its user's cutoff is an error (it would leak a CTR sample into the prompt).
    """
    hist = history[history["role"] == "history"] if "role" in history else history
    hist = hist.merge(cutoffs[["user_id", "cutoff"]], on="user_id", how="inner", validate="many_to_one")
    late = hist["timestamp"] > hist["cutoff"]
    if late.any():
        bad = hist[late].iloc[0]
        raise ValueError(f"history row after the cutoff for user_id {bad.user_id} (item_id {bad.item_id}): leakage")
    titles = items.set_index("item_id")["title"]
    missing = ~hist["item_id"].isin(titles.index)
    if missing.any():
        raise ValueError(f"history item_id {hist.loc[missing, 'item_id'].iloc[0]} not in items")
    hist = hist.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    labels = hist["label"].to_numpy() if "label" in hist else np.ones(len(hist), np.int8)
    lines = _history_by_user(hist["user_id"].to_numpy(), hist["item_id"].to_numpy(), hist["rating"].to_numpy(),
                             labels, titles)
    uids = cutoffs["user_id"].sort_values().tolist()
    genres = None
    if _wants_genres(template):
        counts = genre_counts(hist["user_id"].to_numpy(), hist["item_id"].to_numpy(), labels, items)
        genres = [counts.get(u, "") for u in uids]
    out = _frame(_user_messages(uids, [lines.get(u, "") for u in uids], users, template, genres), "user_id",
                 template)
    out["cutoff"] = cutoffs.set_index("user_id")["cutoff"].reindex(out["user_id"]).to_numpy()
    out["cutoff"] = out["cutoff"].astype(cutoffs["cutoff"].dtype)
    return out


def build_profile_prompts(rows: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, cutoffs: pd.DataFrame,
                          template: PromptTemplate, history_max: int) -> pd.DataFrame:
    """One prompt per (user_id, cutoff) row of a daily run's ``cutoffs`` (augment/data/stream_split.py): the user's last
    ``history_max`` interactions strictly before that cutoff, whatever their role. Same columns as
    ``build_user_prompts``; rows sorted by user_id, cutoff.

    ``rows`` is the run's split frame (every interaction before the interval end), sorted by user, time, item."""
    from augment.data.stream_split import rows_before, time_us

    events = rows[~rows["sampled"]] if "sampled" in rows else rows  # sampled negatives are not behaviour
    user_ids = events["user_id"].to_numpy()
    ts = time_us(events["timestamp"])
    cut = cutoffs.sort_values(["user_id", "cutoff"], kind="stable").reset_index(drop=True)
    if not len(cut):
        return _frame([], "user_id", template).assign(cutoff=cutoffs["cutoff"].iloc[:0].to_numpy())
    # each profile's window [lo, hi): the user's last history_max rows strictly before its cutoff
    first, hi = rows_before(user_ids, ts, cut["user_id"].to_numpy(), time_us(cut["cutoff"]))
    lo = np.maximum(first, hi - history_max)
    lengths = hi - lo
    take = np.repeat(lo - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(int(lengths.sum()))
    profile = np.repeat(np.arange(len(cut), dtype=np.int64), lengths)
    titles = items.set_index("item_id")["title"]
    item_ids = events["item_id"].to_numpy()[take]
    missing = ~np.isin(item_ids, titles.index.to_numpy())
    if missing.any():
        raise ValueError(f"history item_id {item_ids[missing][0]} not in items")
    labels = events["label"].to_numpy()[take] if "label" in events else np.ones(len(take), np.int8)
    lines = _history_by_user(profile, item_ids, events["rating"].to_numpy()[take], labels, titles)
    histories = [lines.get(i, "") for i in range(len(cut))]
    genres = None
    if _wants_genres(template):
        counts = genre_counts(profile, item_ids, labels, items)
        genres = [counts.get(i, "") for i in range(len(cut))]
    out = _frame(_user_messages(cut["user_id"].tolist(), histories, users, template, genres), "user_id", template)
    out["cutoff"] = cut["cutoff"].to_numpy()
    out["cutoff"] = out["cutoff"].astype(cutoffs["cutoff"].dtype)
    return out


if __name__ == "__main__":
    from augment.data.ingest import load_movielens100k
    from augment.data.split import split_interactions
    from configs import DataConfig, SplitConfig

    canon = load_movielens100k(DataConfig(), Path("var/cache"))
    rows, cut = split_interactions(canon.interactions, SplitConfig())
    item_p = build_item_prompts(canon.items.head(1), load_template("item_knowledge_v1"))
    user_p = build_user_prompts(rows, canon.users, canon.items, cut.head(1), load_template("user_preference_v1"))
    for frame in (item_p, user_p):
        for msg in json.loads(frame["messages"].iloc[0]):
            print(f"--- {msg['role']}\n{msg['content']}")
        print(frame.drop(columns="messages").iloc[0].to_dict())
