"""List settings read from the environment take the ordinary `a,b` form as well as JSON."""

import pytest

from app.settings import Settings


def test_a_single_operator_address_is_a_list_of_one(monkeypatch):
    monkeypatch.setenv("BERTH_OPERATOR_EMAILS", "ops@example.com")
    assert Settings().operator_emails == ["ops@example.com"]


def test_comma_separated_values_are_split_and_trimmed(monkeypatch):
    monkeypatch.setenv("BERTH_OPERATOR_EMAILS", "ops@example.com, lead@example.com,")
    monkeypatch.setenv("BERTH_COMMAND_ALLOWLIST", "node,npx")
    settings = Settings()
    assert settings.operator_emails == ["ops@example.com", "lead@example.com"]
    assert settings.command_allowlist == ["node", "npx"]


def test_a_json_array_still_works_and_may_hold_commas(monkeypatch):
    monkeypatch.setenv("BERTH_COMMAND_DENYLIST", '["sudo", "rm -rf /, now"]')
    assert Settings().command_denylist == ["sudo", "rm -rf /, now"]


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_value_is_an_empty_list(monkeypatch, empty):
    monkeypatch.setenv("BERTH_OPERATOR_EMAILS", empty)
    assert Settings().operator_emails == []
