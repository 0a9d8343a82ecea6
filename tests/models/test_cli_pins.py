"""`python -m models` pins table versions with `--input TABLE=VERSION`, as `python -m augment` does; `--version`
is its deprecated name: it still pins, and says so on stderr."""
from __future__ import annotations

import pytest

from models import __main__ as cli


@pytest.mark.parametrize("command", ["retrain", "promote"])
def test_input_pins_and_version_is_a_deprecated_alias(command, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(cli, "_retrain", lambda args: seen.setdefault("pins", cli._pins(args.input)) and 0)
    monkeypatch.setattr(cli, "_promote", lambda args: seen.setdefault("pins", cli._pins(args.input)) and 0)
    extra = ["--model-dir", "m"] if command == "promote" else []
    cli.main([command, "--config", "c.yaml", *extra, "--input", "items=abc", "--input", "users=def"])
    assert seen.pop("pins") == {"items": "abc", "users": "def"}
    assert "deprecated" not in capsys.readouterr().err
    cli.main([command, "--config", "c.yaml", *extra, "--version", "items=abc", "--input", "users=def"])
    assert seen.pop("pins") == {"items": "abc", "users": "def"}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m models " + command + ": --version is deprecated, use --input TABLE=VERSION "
                   "(same meaning)"]
    with pytest.raises(SystemExit, match="--input expects TABLE=VERSION"):
        cli._pins(["items"])


def test_a_table_no_stage_wrote_is_a_one_line_error(tmp_path, capsys):
    """A variant whose table is missing (user text never generated, say) is one line naming the table, the
    variants that read it and how to make it; exit 2, not a traceback."""
    config = tmp_path / "run.yaml"
    config.write_text(f"workdir: {tmp_path / 'work'}\n")
    assert cli.main(["retrain", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: table 'interaction_splits' has no version in "), err
    assert "'user_profile_emb' has no version in" in err[0] and "(read by variant(s) llm, llm_kar)" in err[0]
    assert "python -m augment all" in err[0]
    # a twin the run added is named as such: leaving it out of train.variants would not drop it
    assert "(read by variant(s) raw_text, raw_kar (the no-LLM twin of llm_kar, trained with it))" in err[0], err[0]
