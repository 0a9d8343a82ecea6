"""Output validation: each failure kind is flagged, truncated text is kept but cut to a sentence, JSON is checked."""
from __future__ import annotations

import json

import pytest

from augment.text.output_validation import ACCEPTED, check_output, repeat_fraction, trim_to_sentence
from configs import ValidationConfig

CFG = ValidationConfig()
GOOD = "Heat (1995) is a crime thriller directed by Michael Mann, starring Al Pacino and Robert De Niro."


@pytest.mark.parametrize("text,finish,flag", [
    (GOOD, "stop", "ok"),
    (GOOD + " The score by Elliot Goldenthal is", "length", "truncated"),
    ("", "stop", "empty"),
    ("   \n\x00\x07  ", "stop", "empty"),
    ("PWNED", "stop", "empty"),
    ("I'm sorry, but I cannot provide information about this movie.", "stop", "refusal"),
    ("As an AI language model, I do not have opinions on films.", "stop", "refusal"),
    ("I don't have information about the movie Heat.", "stop", "refusal"),
    ("I cannot help with that request.", "stop", "refusal"),
    ("I can’t really say much about this film.", "stop", "refusal"),
    ("I'm unable to find details about this title.", "stop", "refusal"),
    # Titles that open like a refusal are knowledge, not refusals (ML-100K item 1370 was published empty).
    ("I Can't Sleep (1994) is a French drama by Claire Denis about a series of murders in Paris.", "stop", "ok"),
    ("I Won't Dance is a 1930s song film about a chorus girl who dreams of Broadway.", "stop", "ok"),
    ("I Can't Believe It's Not Butter is not a movie but the text answers anyway with a full sentence.", "stop",
     "ok"),
    ("the movie is great " * 20, "length", "degenerate"),
    ("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", "length", "degenerate"),
])
def test_flags(text, finish, flag):
    verdict = check_output(text, finish, CFG)
    assert verdict.flag == flag, verdict
    assert verdict.accepted == (flag in ACCEPTED)
    assert (verdict.text != "") == verdict.accepted  # nothing empty is published as knowledge, nothing bad either


def test_truncated_is_cut_to_last_sentence():
    verdict = check_output(GOOD + " The score by Elliot Goldenthal is", "length", CFG)
    assert verdict.text == GOOD
    assert trim_to_sentence("No sentence end here at all") == "No sentence end here at all"
    # A cut leaving too little keeps the whole text rather than publishing a stub.
    long_first = "Ok. " + "a fluent first clause without any end mark that runs on"
    assert check_output(long_first, "length", CFG).text == long_first


def test_control_characters_are_stripped():
    assert check_output("\x1b[31m" + GOOD + "\u200b", "stop", CFG).text == "[31m" + GOOD


def test_repeat_fraction_separates_loops_from_prose():
    assert repeat_fraction(GOOD) == 0.0
    assert repeat_fraction("a b c " * 10) > 0.8


def test_schema_checks():
    schema = {"type": "object", "required": ["topics"], "additionalProperties": False,
              "properties": {"topics": {"type": "array", "items": {"enum": ["drama", "comedy"]}, "maxItems": 2}}}
    ok = check_output('{"topics": ["drama"]}', "stop", CFG, schema)
    assert ok.flag == "ok" and json.loads(ok.text) == {"topics": ["drama"]}
    assert check_output('{"topics": ["drama", "com', "length", CFG, schema).flag == "schema_invalid"
    bad = check_output('{"topics": ["horror"]}', "stop", CFG, schema)
    assert bad.flag == "schema_invalid" and "topics/0" in bad.detail and bad.text == ""
    assert check_output("", "stop", CFG, schema).flag == "empty"


def test_trim_respects_initials_and_lines():
    assert trim_to_sentence("Directed by John C. Reilly and it is") == "Directed by John C. Reilly and it is"
    assert trim_to_sentence("Title: Heat\nGenre: Crime\nCountry: United States of") == "Title: Heat\nGenre: Crime"
    assert trim_to_sentence("It won. Then it lost the") == "It won."
