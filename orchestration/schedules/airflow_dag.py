"""medallion in Airflow: bronze, silver and gold of the web pipeline as `run --once` tasks,
every 5 minutes.

- max_active_runs=1: a DAG run that is still going holds back the next one, so two runs
  never overlap (medallion schedule's overlap = "skip");
- catchup=False: after downtime Airflow starts from the latest interval instead of replaying
  every missed one (medallion schedule's missed = "run_once"); a `--once` run reads whatever
  is new, so one run catches up all the same;
- execution_timeout bounds a task; Airflow then sends SIGTERM, which `run --once` answers by
  committing its open batch within --shutdown-timeout.

Put this file in the DAGs folder of a worker that has the `medallion` binary and the
repository (for the specs and schemas) at MEDALLION_HOME.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

MEDALLION_HOME = "/opt/medallion"
SPEC = "pipelines/specs/web.toml"

default_args = {
    "owner": "data-platform",
    "retries": 1,
    "retry_delay": timedelta(minutes=1),
    "execution_timeout": timedelta(minutes=4),
}

with DAG(
    dag_id="medallion_web",
    description="Kafka -> bronze -> silver -> gold with medallion run --once",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["medallion", "lakehouse"],
) as dag:
    layers = [
        BashOperator(
            task_id=f"{stage}_once",
            bash_command=(
                f"medallion run --once --stage {stage} --shutdown-timeout 25s {SPEC}"
            ),
            cwd=MEDALLION_HOME,
            env={"MEDALLION_PII_SALT": "{{ var.value.medallion_pii_salt }}"},
            append_env=True,
        )
        for stage in ("bronze", "silver", "gold")
    ]
    layers[0] >> layers[1] >> layers[2]
