"""Imported by remote SDK workers at start-up (`--beam_plugins=schemas.worker_plugin`, set by
runners/options.py): registers every record class's stable schema id (schemas/stable_schema.py)
before the worker decodes its first row."""
import pipelines.io.kafka_commit  # noqa: F401
import pipelines.io.kafka_config  # noqa: F401
import pipelines.io.open_items  # noqa: F401
import schemas.records  # noqa: F401
import transforms.daily_totals  # noqa: F401
import transforms.matching  # noqa: F401
import transforms.validate  # noqa: F401
