"""The commands HQ sends the broker's dynamic-security plugin for a revocation, and how it reads the answers."""

from __future__ import annotations

import pytest

from hq.broker_control import REVOKED_ROLE, BrokerControlError, check_responses, deny_commands, role_commands


def test_a_revoked_gateway_becomes_a_client_whose_only_role_denies_everything() -> None:
    (role,) = role_commands()
    assert role["command"] == "createRole" and role["rolename"] == REVOKED_ROLE
    assert {(a["acltype"], a["topic"], a["allow"]) for a in role["acls"]} == {
        ("publishClientSend", "#", False), ("publishClientReceive", "#", False), ("subscribePattern", "#", False)}
    commands = deny_commands("gw-7")
    assert [c["command"] for c in commands] == ["deleteClient", "createClient", "disableClient"]
    assert commands[1]["roles"] == [{"rolename": REVOKED_ROLE}] and {c["username"] for c in commands} == {"gw-7"}


def test_repeating_a_revocation_is_harmless_but_a_real_refusal_is_an_error() -> None:
    commands = role_commands() + deny_commands("gw-7")
    again = [{"command": "createRole", "error": "Role already exists"},
             {"command": "deleteClient", "error": "Client not found"}, {"command": "createClient"},
             {"command": "disableClient"}]
    check_responses(commands, again)
    refused = [*again[:2], {"command": "createClient", "error": "Permission denied"}, again[3]]
    with pytest.raises(BrokerControlError, match="refused createClient gw-7: Permission denied"):
        check_responses(commands, refused)
    with pytest.raises(BrokerControlError, match="answered 1 of 4"):
        check_responses(commands, again[:1])
