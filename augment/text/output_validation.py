"""Checks one generated output before it may be published as knowledge: empty, degenerate, refusal, schema-invalid.

A verdict has a *flag* and the text to publish:

| flag              | accepted | published text                                                        |
|-------------------|----------|-----------------------------------------------------------------------|
| ok                | yes      | the output, stripped                                                  |
| truncated         | yes      | hit max_tokens but otherwise valid: cut back to its last full sentence |
| empty             | no       | "" (too short after stripping)                                         |
| degenerate        | no       | "" (one n-gram / a few characters repeated over most of the text)     |
| refusal           | no       | "" ("I'm sorry, I cannot ...", "As an AI ...")                          |
| schema_invalid    | no       | "" (structured output that is not JSON or breaks its schema)           |
| prompt_too_long   | no       | "" (never sent: the prompt does not fit max_model_len - max_tokens)    |

Why accept truncated text: small models hit max_tokens on nearly every KAR prompt; rejecting those would publish
nothing. The cut text is still model knowledge, and the flag stays in the table. Rejected outputs are retried with
a different seed (see augment/llm/generate.py); after the last attempt they are published with their flag and empty
text, which the encoder never turns into a vector (the feature join then gives the table default + missing flag).

    python -m augment.text.output_validation "I'm sorry, but I cannot help with that."
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from configs import ValidationConfig

ACCEPTED = frozenset({"ok", "truncated"})
FLAGS = ("ok", "truncated", "empty", "degenerate", "refusal", "schema_invalid", "prompt_too_long")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
# "I can't ..." is a refusal only when what follows is what a refusal declines to do: titles open with the same
# words ("I Can't Sleep (1994) is a French drama ..." was published empty as a refusal).
_DECLINED = (r"(?:provide|help|assist|answer|give|share|find|access|browse|recall|tell|determine|verify|confirm|"
             r"comply|fulfil|fulfill|generate|write|create|offer|discuss|say|know|speculate|be sure|describe|comment|"
             r"identify|retrieve|look|search|do that|see)")
_REFUSAL = re.compile(
    r"^\W*(i['’]?m sorry|i am sorry|sorry,|i apologi[sz]e|"
    r"i(?:\s+(?:cannot|can ?not|can['’]?t|won['’]?t|am unable to|am not able to)|['’]m (?:unable|not able) to)\s+"
    r"(?:\w+\s+){0,2}?" + _DECLINED + r"\b|"
    r"as an ai|as a language model|i do(?:n['’]t| not) have (?:any |enough )?"
    r"(?:information|knowledge|data|access))", re.IGNORECASE)
# A sentence end, not an initial ("John C. Reilly"); a line end also closes a unit in list-style answers.
_SENTENCE_END = re.compile(r"(?<![\s.][A-Z])[.!?][\"')\]]*(?=\s|$)|\n")


@dataclass(frozen=True)
class Verdict:
    flag: str
    text: str  # what may be published: "" unless accepted
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.flag in ACCEPTED


def clean_output(text: str) -> str:
    return _CONTROL.sub("", text or "").strip()


def repeat_fraction(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (0 = all distinct; near 1 = a loop)."""
    words = text.lower().split()
    if len(words) < n + 4:
        return 0.0
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def _is_degenerate(text: str, cfg: ValidationConfig) -> str:
    if repeat_fraction(text) > cfg.max_repeat_fraction:
        return f"{repeat_fraction(text):.2f} of word 3-grams repeat"
    squeezed = text.replace(" ", "")
    if len(squeezed) >= 20:
        top_char, top = Counter(squeezed).most_common(1)[0]
        if top / len(squeezed) > 0.5:
            return f"character {top_char!r} is {top / len(squeezed):.0%} of the text"
    return ""


def trim_to_sentence(text: str) -> str:
    """Cut after the last sentence end (or line end); the whole text when it has none."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[:ends[-1].end()].rstrip() if ends else text


def validate_json(text: str, schema: dict) -> tuple[dict | None, str]:
    """(parsed object, "") or (None, why it is invalid)."""
    import jsonschema

    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"not JSON: {err.msg} at char {err.pos}"
    try:
        jsonschema.validate(obj, schema)
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        return None, f"schema: {where}: {err.message[:120]}"
    return obj, ""


def check_output(text: str, finish_reason: str, cfg: ValidationConfig, schema: dict | None = None) -> Verdict:
    """The verdict on one output; ``schema`` given means the output must be JSON matching it."""
    body = clean_output(text)
    if len(body) < (2 if schema is not None else cfg.min_chars):
        return Verdict("empty", "", f"{len(body)} characters")
    if schema is not None:
        obj, why = validate_json(body, schema)
        if obj is None:
            return Verdict("schema_invalid", "", why)
        body = json.dumps(obj, ensure_ascii=False, sort_keys=True)
        return Verdict("truncated" if finish_reason == "length" else "ok", body)
    if _REFUSAL.search(body[:120]):
        return Verdict("refusal", "", body[:60])
    why = _is_degenerate(body, cfg)
    if why:
        return Verdict("degenerate", "", why)
    if finish_reason == "length":
        cut = trim_to_sentence(body) if cfg.trim_truncated else body
        # A cut that leaves too little keeps the whole text: a half sentence of knowledge beats none.
        return Verdict("truncated", cut if len(cut) >= cfg.min_chars else body, f"{len(body) - len(cut)} chars cut")
    return Verdict("ok", body)


if __name__ == "__main__":
    print(check_output(" ".join(sys.argv[1:]), "stop", ValidationConfig()))


def flag_counts(texts: pd.DataFrame) -> dict:
    """The validation report of a text table: rows per flag, retries, and what was published as knowledge."""
    flags = {k: int(v) for k, v in texts["flag"].value_counts().items()}
    return {"rows": len(texts), "flags": flags, "accepted": int(texts["flag"].isin(ACCEPTED).sum()),
            "rejected": int((~texts["flag"].isin(ACCEPTED)).sum()),
            "retried": int((texts["attempts"] > 1).sum()), "max_attempts": int(texts["attempts"].max() or 0)}
