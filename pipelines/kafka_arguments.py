"""`--consumer-config` / `--producer-config KEY=VALUE` pairs, checked without ever echoing a value.

Values may be SASL passwords or key material, so an error names the flag, the position of
the pair and (when there is one) its key, never the value. `parse_settings` checks the
syntax when the arguments are read; `check_client_settings` shows the pairs to the Kafka
client just before the run (values may be templates until then, e.g. Kubernetes `$(VAR)`),
rewording librdkafka's messages, which quote the bad value, so a bad setting is a usage
error rather than a failure inside a worker.
"""
from __future__ import annotations

import re
from typing import Dict, Optional, Sequence

from pipelines.arguments import UsageError

_PROPERTY = re.compile(r'configuration property:? "([^"]+)"')
# A client that never connects: only its configuration is checked (then it is closed).
_CHECK_SETTINGS = {"bootstrap.servers": "127.0.0.1:9", "log_level": 0, "group.id": "paybeam-settings-check"}


def parse_settings(pairs: Sequence[str], flag: str) -> Dict[str, str]:
    """KEY=VALUE pairs as a dict; a malformed pair is a UsageError naming its position, not its text."""
    settings: Dict[str, str] = {}
    for position, pair in enumerate(pairs, start=1):
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"{flag} #{position} is not KEY=VALUE (no '='; the text is not shown, "
                             "it may hold a secret)")
        if not key.strip():
            raise UsageError(f"{flag} #{position} has an empty KEY (KEY=VALUE; the value is not shown)")
        settings[key.strip()] = value
    return settings


def _refusal(kind: str, settings: Dict[str, str]) -> Optional[str]:
    """None if the client accepts the settings, else librdkafka's message (may quote a value: never show it)."""
    from confluent_kafka import KafkaException

    from pipelines.io.kafka import new_consumer, new_producer

    new_client = new_consumer if kind == "consumer" else new_producer
    try:
        client = new_client({**settings, **_CHECK_SETTINGS})
    except (KafkaException, ValueError, TypeError) as error:
        # Only a refused key or value counts here; anything else (a certificate file that exists
        # on the workers but not where the job is launched) is left to the run itself.
        return str(error) if _PROPERTY.search(str(error)) else None
    if kind == "consumer":
        client.close()
    return None


def check_client_settings(settings: Dict[str, str], flag: str, kind: str) -> None:
    """Raises UsageError naming the first setting the Kafka client refuses (`kind`: consumer|producer)."""
    refusal = _refusal(kind, settings)
    if refusal is None:
        return
    keys = list(settings)
    named = _PROPERTY.search(refusal)
    suspects = [named.group(1)] if named and named.group(1) in settings else []
    # librdkafka may name an alias (linger.ms is reported as queue.buffering.max.ms): try each alone.
    suspects += [key for key in keys if key not in suspects and _refusal(kind, {key: settings[key]}) is not None]
    if not suspects:
        raise UsageError(f"the Kafka {kind} refuses the {flag} settings together (keys: {', '.join(keys)}; "
                         "values are not shown)")
    key = suspects[0]
    reason = "is not a Kafka client setting" if "No such configuration property" in refusal and key in refusal \
        else "has a value the Kafka client refuses (not shown: it may hold a secret)"
    raise UsageError(f"{flag} #{keys.index(key) + 1} ({key}) {reason}")
