"""RabbitMQ sink: records -> persistent messages on an exchange, every one confirmed (docs/DESIGN.md 5.2).

Each DoFn instance owns one `ConfirmingPublisher`. `finish_bundle` waits until the broker has
confirmed every message of the bundle; a refused, unroutable or unconfirmed message (or a lost
connection) fails the bundle, so the runner retries it and nothing upstream is acked or finalized
(at-least-once: a retried bundle may publish again what got through; every message carries its row
key in the `paybeam-key` header, and consumers keep the highest revision per key).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.io.kafka import reconciliation_message_key
from pipelines.io.rabbitmq._config import RabbitWriteConfig
from pipelines.io.rabbitmq._publisher import ConfirmingPublisher, PublishFailed
from schemas.kafka_values import encode_value, sink_messages

_LOG = logging.getLogger(__name__)
KEY_HEADER = "paybeam-key"


class _PublishFn(beam.DoFn):
    def __init__(self, config: RabbitWriteConfig, key_fn: Callable[[Any], Optional[bytes]]):
        super().__init__()
        self._config = config
        self._key_fn = key_fn
        self._publisher: Optional[ConfirmingPublisher] = None
        self._per_window: Dict[Any, int] = {}

    def start_bundle(self) -> None:
        config = self._config
        if self._publisher is None or not self._publisher.is_open:
            self._close()
            _LOG.info("RabbitMQ sink: %s", config.describe())
            self._publisher = ConfirmingPublisher(config.endpoint, config.broker_timeout_seconds)
            try:
                self._publisher.open()
                self._publisher.declare_output(config.exchange, config.routing_key, config.queue)
            except PublishFailed:
                self._close()
                raise
            except Exception as error:  # noqa: BLE001 — unreachable now: retried up to --broker-timeout
                try:
                    self._publisher.recover(error)
                    self._publisher.declare_output(config.exchange, config.routing_key, config.queue)
                except PublishFailed:
                    self._close()
                    raise
        self._per_window = {}

    def process(self, record, window=beam.DoFn.WindowParam):
        config = self._config
        for key, value in sink_messages(record, self._key_fn, lambda one: encode_value(
                one._asdict(), config.value_format, config.schema_name)):
            headers = {KEY_HEADER: key.decode("utf-8")} if key else None
            try:
                self._publisher.publish(config.exchange, config.routing_key, value, config.value_format, headers)
            except PublishFailed:  # refused, or the broker gone for --broker-timeout (a lost connection is retried)
                self._close()
                raise
            self._per_window[window] = self._per_window.get(window, 0) + 1

    def finish_bundle(self):
        if not self._per_window:
            return
        try:
            self._publisher.wait_confirmed()
        except PublishFailed:
            self._close()
            raise
        for window, count in self._per_window.items():
            yield WindowedValue(count, window.max_timestamp(), [window])

    def _close(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    def teardown(self) -> None:
        self._close()


class WriteToRabbitMQ(beam.PTransform):
    """Records -> persistent, confirmed messages on `config.exchange` under `config.routing_key`.

    Returns the number of messages confirmed per bundle and window (a completion signal to wait on)."""

    def __init__(self, config: RabbitWriteConfig,
                 key_fn: Callable[[Any], Optional[bytes]] = reconciliation_message_key):
        super().__init__()
        self._config = config
        self._key_fn = key_fn

    def expand(self, records):
        return records | "Publish" >> beam.ParDo(_PublishFn(self._config, self._key_fn)).with_output_types(int)
