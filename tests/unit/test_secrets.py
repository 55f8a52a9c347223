"""Secrets: resolved from references, masked wherever they could be shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.secrets.redaction import redact, redact_diff
from provisioner.secrets.values import MASK, Secret, SecretNotAvailable, resolve_reference


def test_secret_prints_as_the_mask() -> None:
    secret = Secret("hunter2", "env:DB_PASSWORD")

    assert (str(secret), f"{secret}", MASK) == ("***", "***", "***")


def test_secret_repr_shows_the_reference_not_the_value() -> None:
    assert repr(Secret("hunter2", "env:DB_PASSWORD")) == "Secret(env:DB_PASSWORD)"


def test_secret_repr_without_reference_is_masked() -> None:
    assert repr(Secret("hunter2")) == "Secret(***)"


def test_secret_reveals_its_value_on_request() -> None:
    assert Secret("hunter2").reveal() == "hunter2"


def test_secrets_compare_by_value() -> None:
    assert (Secret("a", "env:X") == Secret("a", "env:Y"), Secret("a") == "a") == (True, False)


def test_env_reference_resolves_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_TEST_SECRET", "from-env")

    secret = resolve_reference("env:PROVISIONER_TEST_SECRET", Path("/nowhere"))

    assert (secret.reveal(), secret.reference) == ("from-env", "env:PROVISIONER_TEST_SECRET")


def test_env_reference_to_an_unset_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONER_TEST_UNSET", raising=False)

    with pytest.raises(ValueError, match="environment variable 'PROVISIONER_TEST_UNSET' is not"):
        resolve_reference("env:PROVISIONER_TEST_UNSET", Path("/nowhere"))


def test_file_reference_is_read_relative_to_the_base_without_final_newline(
        tmp_path: Path) -> None:
    (tmp_path / "db").write_text("from-file\n")

    assert resolve_reference("file:db", tmp_path).reveal() == "from-file"


def test_file_reference_to_a_missing_file_names_its_resolved_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"secret file {tmp_path / 'missing'} does not exist"):
        resolve_reference("file:missing", tmp_path)


@pytest.mark.parametrize("reference", ["vault:db", "DB_PASSWORD", ""])
def test_unknown_reference_kind_is_refused(reference: str) -> None:
    with pytest.raises(ValueError, match="use env:NAME, file:PATH or host:NAME"):
        resolve_reference(reference, Path("/nowhere"))


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("password=hunter2\n", [Secret("hunter2")], "password=***\n"),
        ("a=hunter2 b=hunter2", [Secret("hunter2")], "a=*** b=***"),
        ("a=one b=two", [Secret("one"), Secret("two")], "a=*** b=***"),
        ("nothing to hide", [Secret("hunter2")], "nothing to hide"),
        ("empty secret stays", [Secret("")], "empty secret stays"),
    ],
    ids=["once", "every-occurrence", "several-secrets", "absent", "empty-value"],
)
def test_redact(text: str, secrets: list[Secret], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_redact_hides_all_of_a_secret_that_contains_another() -> None:
    assert redact("pw=hunter2extra", [Secret("hunter2"), Secret("hunter2extra")]) == "pw=***"


def test_a_secret_trimmed_by_a_template_is_masked_too() -> None:
    assert redact("key=Tab\tSecret77 end", [Secret("  Tab\tSecret77\t \n")]) == "key=*** end"


def test_a_value_given_where_a_reference_belongs_is_never_repeated() -> None:
    with pytest.raises(ValueError) as raised:
        resolve_reference("hunter2secret", Path("."))
    assert "hunter2secret" not in str(raised.value)
    assert "env:NAME, file:PATH or host:NAME" in str(raised.value)


def test_a_diff_that_held_a_secret_masks_its_removed_lines_too() -> None:
    diff = "--- a\n+++ b\n@@ -1,2 +1,2 @@\n keep\n-URIs: http://u:old-pw@m/\n+URIs: http://u:new-pw@m/\n"
    masked = redact_diff(diff, [Secret("http://u:new-pw@m/")])
    assert "old-pw" not in masked and "new-pw" not in masked
    assert "--- a\n" in masked and " keep\n" in masked and "-***\n" in masked


def test_a_diff_without_a_secret_is_left_whole() -> None:
    diff = "--- a\n+++ b\n-old\n+new\n"
    assert redact_diff(diff, [Secret("elsewhere")]) == diff


def test_a_secret_as_a_traceback_or_json_escapes_it_is_masked_too() -> None:
    secret = Secret("Pa\\ss'w\"rd9")
    shown = f"ValueError: {secret.reveal()!r}; json {json.dumps(secret.reveal())}"
    assert redact(shown, [secret]) == "ValueError: '***'; json \"***\""


def test_an_empty_secret_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("\n")

    with pytest.raises(SecretNotAvailable, match=r"secret file .*/db is empty; put the secret"):
        resolve_reference("file:db", tmp_path)


