"""The private-address guard: checked on create for literals and at connect time for names."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from flask import Flask

from app.transport import Transport, is_forbidden, literal_address
from tests.conftest import Api
from tests.receiver import Receiver

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",  # decimal
        "017700000001",  # octal
        "0x7f000001",  # hex
        "0x7f.1",
        "127.1",  # short form
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # CGNAT
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "0.0.0.0",
        "::1",
        "::",
        "fd00::1",  # unique local
        "fe80::1",  # link-local
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "127.0.0.1.",  # the DNS root's trailing dot
        "2130706433.",
        "0177.0.0.1",
        "127.000.000.001",
        "0",
        "\uff11\uff12\uff17.0.0.1",  # full-width digits, as IDNA reads them
        "127\u30020\u30020\u30021",  # ideographic full stops
        "0:0:0:0:0:ffff:127.0.0.1",
        "::ffff:a9fe:a9fe",  # mapped metadata address in hex
        "fe80::1%eth0",  # with a zone
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "192.168.0.1",
        "198.18.0.1",  # benchmarking
        "255.255.255.255",
    ],
)
def test_it_refuses_private_addresses_in_every_spelling(host: str) -> None:
    address = literal_address(host)
    assert address is not None
    assert is_forbidden(address)


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_it_allows_public_addresses(host: str) -> None:
    address = literal_address(host)
    assert address is not None
    assert not is_forbidden(address)


def test_it_opens_only_the_allowed_networks() -> None:
    assert not is_forbidden(ipaddress.ip_address("127.0.0.5"), LOOPBACK)
    assert not is_forbidden(ipaddress.ip_address("::ffff:127.0.0.5"), LOOPBACK)
    assert is_forbidden(ipaddress.ip_address("10.0.0.1"), LOOPBACK)


def test_it_does_not_take_names_for_literals() -> None:
    assert literal_address("example.com") is None
    assert literal_address("cafe.example") is None


@pytest.mark.parametrize(
    "url",
    ["http://localhost:9/", "http://2130706433:9/", "http://[::ffff:127.0.0.1]:9/"],
)
def test_it_refuses_at_connect_time_without_an_allow_list(url: str) -> None:
    outcome = Transport(2).post(url, b"{}", {})
    assert (outcome.http_status, outcome.error) == (None, "refused: private address")


def test_it_connects_where_the_allow_list_opens() -> None:
    outcome = Transport(2, allow=LOOPBACK).post("http://127.0.0.1:9/", b"{}", {})
    assert outcome.error == "connection refused"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest",
        "http://[fd00::1]/",
        "http://0x0a.1/",
    ],
)
def test_it_rejects_a_private_literal_when_a_webhook_is_created(api: Api, url: str) -> None:
    r = api.post("/v1/webhooks", {"url": url, "events": ["*"]})
    assert r.status_code == 422
    assert r.get_json()["error"]["fields"]["url"].startswith("refused: private address")


def test_it_rejects_a_private_literal_when_a_webhook_is_changed(api: Api) -> None:
    hook = api.webhook("https://example.com/hook")
    r = api.patch(f"/v1/webhooks/{hook['id']}", {"url": "http://192.168.0.10/"})
    assert r.status_code == 422
    assert "url" in r.get_json()["error"]["fields"]
    assert api.get(f"/v1/webhooks/{hook['id']}").get_json()["url"] == "https://example.com/hook"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1.",
        "0177.0.0.1",
        "0",
        "0x7F000001",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::ffff:a9fe:a9fe]",
        "[64:ff9b::7f00:1]",
        "[::]",
        "localhost",
        "LOCALHOST.",
    ],
)
def test_it_never_connects_to_an_odd_spelling_of_a_private_address(host: str) -> None:
    outcome = Transport(1).post(f"http://{host}:9/", b"{}", {})
    assert outcome.http_status is None
    assert outcome.error in {"refused: private address", "DNS lookup failed"}


def _resolver(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Replace DNS for the given names (one answer per lookup, the last one repeating).

    The only fake in these tests: a real rebinding DNS server cannot be had here.
    """
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        script = answers[host]
        addresses = script.pop(0) if len(script) > 1 else script[0]
        return [info for a in addresses for info in real(a, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_it_refuses_a_name_with_any_private_address(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolver(monkeypatch, {"mixed.test": [["93.184.216.34", "10.0.0.1"]]})
    outcome = Transport(1).post("http://mixed.test/", b"{}", {})
    assert (outcome.http_status, outcome.error) == (None, "refused: private address")


def test_it_refuses_a_name_that_resolves_to_the_metadata_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _resolver(monkeypatch, {"metadata.test": [["169.254.169.254"]]})
    outcome = Transport(1, allow=LOOPBACK).post("http://metadata.test/latest", b"{}", {})
    assert outcome.error == "refused: private address"


def test_it_connects_to_the_address_it_checked_despite_rebinding(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    # First answer allowed (the test opens loopback), every later one private: a rebinding
    # attack would need Herald to look the name up a second time to connect.
    lookups = _resolver(monkeypatch, {"rebind.test": [["127.0.0.1"], ["10.0.0.1"]]})
    outcome = Transport(2, allow=LOOPBACK).post(f"http://rebind.test:{receiver.port}/r", b"{}", {})
    assert outcome.http_status == 200
    assert lookups == ["rebind.test"]
    assert receiver.requests_for("/r")


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1./", "http://167772161./", "http://\uff11\uff10.0.0.1/", "http://0/"],
)
def test_it_rejects_odd_private_literals_when_a_webhook_is_created(api: Api, url: str) -> None:
    r = api.post("/v1/webhooks", {"url": url, "events": ["*"]})
    assert r.status_code == 422
    assert r.get_json()["error"]["fields"]["url"].startswith("refused: private address")


def test_it_logs_a_refused_attempt_when_a_name_resolves_privately_at_send_time(
    app: Flask, env: dict[str, str], api: Api, deliver: Any
) -> None:
    from tests.conftest import make_app

    api.event_type("user.created")
    hook = api.webhook("http://localhost:9/hook")  # a name: accepted, checked at send time
    strict = make_app(env, HERALD_ALLOW_NETWORKS="")
    with strict.app_context():
        api.publish("user.created")
        from app.deliveries.jobs import drain

        assert drain(budget=3, idle=0.2) >= 1
    attempts = api.get(f"/v1/webhooks/{hook['id']}/attempts").get_json()["data"]
    assert attempts
    for attempt in attempts:
        assert (attempt["status"], attempt["http_status"]) == ("failure", None)
        assert attempt["error"] == "refused: private address"
