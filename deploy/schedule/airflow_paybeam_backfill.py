"""Airflow DAG: nightly `paybeam backfill` of the settlement days whose SLA has passed.

Uses the Apache Beam provider (`pip install apache-airflow-providers-apache-beam`).
`BeamRunPythonPipelineOperator` runs

    <py_interpreter> -m pipelines.backfill --runner=<runner> --from=... --to=... ...

i.e. `paybeam backfill` (pipelines/backfill.py is the same command as
`paybeam backfill`, runnable the Beam way). The provider turns
`pipeline_options` into `--key=value` flags (True -> `--key`, a list -> one
flag per item) and adds `--labels=airflow-version=...`, which Beam accepts as
a pass-through flag.

Window: for the run with logical date `ds`, dates ds-9 .. ds-3 (as_of of a
date D is the end of D plus the 3-day settlement SLA, so ds-3 is fully due
by the time this run starts after ds ends). Unchanged dates are skipped; a
date whose input files changed (late settlement reports) is re-run and
republished atomically. A failed date makes the task fail (exit status 1);
Airflow's retries re-run only the dates still failing or changed.

Deploy: put this file in the DAGs folder; the worker needs the paybeam
package on `py_interpreter`'s path (the venv below) and the input and output
directories mounted. Adjust the Variables (or the defaults) to your layout.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.models import Variable
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

PAYBEAM_HOME = Variable.get("paybeam_home", default_var="/opt/paybeam")
DATA = Variable.get("paybeam_data", default_var="/srv/paybeam/in")
OUTPUT = Variable.get("paybeam_backfill_output", default_var="/srv/paybeam/backfill")
SLA_DAYS = 3
WINDOW_DAYS = 7

default_args = {
    "owner": "payments-data",
    "retries": 2,
    "retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(hours=6),
}

with DAG(
    dag_id="paybeam_backfill",
    description="paybeam backfill: reconcile each settlement day once its SLA has passed",
    schedule="15 3 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # paybeam also refuses a second backfill on the same output directory
    default_args=default_args,
    tags=["paybeam", "beam", "reconciliation"],
) as dag:
    backfill = BeamRunPythonPipelineOperator(
        task_id="paybeam_backfill",
        # `python -m pipelines.backfill ...` is `paybeam backfill ...` (the lead wires it into pipelines.cli too)
        py_file="pipelines.backfill",
        py_options=["-m"],
        py_interpreter=f"{PAYBEAM_HOME}/.venv/bin/python",  # the venv paybeam is installed in
        # Or let the provider build a throw-away virtualenv: py_requirements=["paybeam==0.1.0"].
        py_requirements=None,
        py_system_site_packages=False,
        runner="DirectRunner",  # FlinkRunner / PortableRunner: add their flags to pipeline_options
        pipeline_options={
            # templated: rendered per run from the logical date
            "from": "{{ macros.ds_add(ds, -%d) }}" % (SLA_DAYS + WINDOW_DAYS - 1),
            "to": "{{ macros.ds_add(ds, -%d) }}" % SLA_DAYS,
            "payments": f"{DATA}/payments/{{date}}/*",        # {date} is paybeam's placeholder, not Jinja
            "settlements": f"{DATA}/settlements/{{date}}/*",
            "output": OUTPUT,
            "settlement-sla": f"{SLA_DAYS}d",
            "parallel": 2,
            "direct_num_workers": 2,                          # a Beam flag, passed through
        },
    )
