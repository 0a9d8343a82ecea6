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
