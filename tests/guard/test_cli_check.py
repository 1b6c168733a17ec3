"""``keyguard guard check``: exit codes, formats, config rules, and never the value."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from keyguard.cli.guard import guard_group
from keyguard.cli.main import cli
from keyguard.scan import testkeys


def run(*args: str, stdin: str | bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(guard_group, ["check", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run(str(tmp_path / "missing.txt"))[0] == 2
    code, _, err = run("-", "--json", stdin="[1, 2")
    assert code == 2 and "not a JSON object" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("guardrails:\n  patterns:\n    - {name: p, pattern: '(?<=a)b'}\n")
    code, _, err = run("-", "-c", str(bad), stdin="x")
    assert code == 2 and "look-around" in err and "Traceback" not in err


def test_invalid_utf8_and_lone_surrogate_escapes_are_read() -> None:
    key = testkeys.keyguard_key()
    code, out, _ = run("-", stdin=b"\xff\xfe " + key.encode() + b" \xc3")
    assert code == 1 and "keyguard_key" in out
    body = json.dumps({"messages": [{"role": "user", "content": "\ud800 " + key}]})
    assert run("-", stdin=body)[0] == 1


def test_a_secret_blocks_and_the_value_is_never_printed(tmp_path: Path) -> None:
    key = testkeys.azure_key()
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(f"line one\nuse {key} please, mail ann@contoso.com\n")
    code, out, err = run(str(prompt))
    assert code == 1
    assert key not in out + err and "ann@contoso.com" not in out + err
    lines = out.splitlines()
    assert lines[0].startswith("text:2:5: block secret/azure_openai_key")
    assert lines[1].startswith("text:2:") and "alert personal/email" in lines[1]


def test_personal_data_alone_alerts_and_exits_0() -> None:
    code, out, _ = run("-", stdin="call me on +44 7911 123456")
    assert code == 0 and "alert personal/phone" in out


def test_json_body_and_json_format() -> None:
    key = testkeys.openai_key()
    body = {
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "tool", "content": f'{{"token": "{key}"}}'},
        ]
    }
    code, out, _ = run("-", "--format", "json", stdin=json.dumps(body))
    data = json.loads(out)
    assert code == 1 and data["blocked"] is True
    (finding,) = data["findings"]
    assert finding["path"] == ["messages", 1, "content"] and finding["role"] == "tool"
    assert finding["category"] == "openai_key" and finding["action"] == "block"
    assert key not in out


def test_config_rules_apply(tmp_path: Path) -> None:
    config = tmp_path / "keyguard.yaml"
    config.write_text(
        "guardrails:\n  blocklists:\n    - name: codenames\n      terms: [Project Falcon]\n"
    )
    code, out, _ = run("-", "-c", str(config), "--text", stdin='{"a": "project falcon"}')
    assert code == 1 and "block custom/codenames (blocklist:codenames)" in out


def test_the_command_is_listed_in_the_cli() -> None:
    result = CliRunner().invoke(cli, ["guard", "check", "--help"])
    assert result.exit_code == 0 and "keyguard guard check" in result.stdout
