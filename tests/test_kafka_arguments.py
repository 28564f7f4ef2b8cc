"""Malformed --consumer-config / --producer-config values are never echoed back (issue 9, item 4).

Values may be SASL passwords: every error names the flag, the pair's position and its key,
never the value. The CLI is run as users run it; these are usage errors (exit 2), found
before any pipeline or broker connection.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from pipelines.cli import main
from pipelines.kafka_arguments import parse_settings

SECRET = "hunter2-do-not-print"


def _stream_with(flag: str, *pairs: str):
    arguments = ["stream", "--bootstrap-servers", "127.0.0.1:9", "--payments-topic", "p", "--settlements-topic", "s",
                 "--bounded"]
    for pair in pairs:
        arguments += [flag, pair]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(arguments)
    return code, err.getvalue()


@pytest.mark.parametrize("flag", ["--consumer-config", "--producer-config"])
@pytest.mark.parametrize("pairs, expected", [
    (("client.id=ok", SECRET), "#2 is not KEY=VALUE"),  # no '=': the whole text may be the secret
    ((f"={SECRET}",), "#1 has an empty KEY"),
    ((f"security.protocol={SECRET}",), "#1 (security.protocol) has a value the Kafka client refuses"),
    (("client.id=ok", f"linger.ms={SECRET}"), "(linger.ms)"),  # librdkafka reports an alias; still found
    ((f"sasl.pasword={SECRET}",), "#1 (sasl.pasword) is not a Kafka client setting"),
])
def test_a_bad_client_setting_names_its_key_and_position_never_its_value(flag, pairs, expected):
    if flag == "--consumer-config" and "linger.ms" in expected:
        pairs, expected = ("client.id=ok", f"session.timeout.ms={SECRET}"), "#2 (session.timeout.ms)"
    code, stderr = _stream_with(flag, *pairs)
    assert code == 2
    assert stderr.count("error:") == 1 and expected in stderr and flag in stderr
    assert SECRET not in stderr


def test_reserved_consumer_settings_are_named_without_their_value():
    code, stderr = _stream_with("--consumer-config", f"enable.auto.commit={SECRET}")
    assert code == 2 and "enable.auto.commit" in stderr and SECRET not in stderr


def test_good_pairs_are_parsed_as_given():
    assert parse_settings(["sasl.password=a=b", " client.id =x"], "--consumer-config") == \
        {"sasl.password": "a=b", "client.id": "x"}
