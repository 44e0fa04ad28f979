"""Reads a Delta table with readers medallion did not write and prints, as JSON, what each
sees: DuckDB's delta extension and polars (rows: count, sum of `id`, min and max of `ts` in
epoch microseconds), and the deltalake package (the table's version and the `txn` version of
each app id asked for).

With --txn-only, only the version, the `txn` versions and the table configuration are read
(any table's columns). With --versions, every version of the table is read, oldest first, by
polars and by the deltalake package: its operation and each reader's row count. With
--set KEY=VALUE, the deltalake package first sets that table property, as an operator
would, in a commit of its own.

usage: read_delta.py --path DIR [--set KEY=VALUE ...] [--app-id ID ...] [--txn-only | --versions]
"""

import argparse
import json
import os
import sys
import tempfile

import duckdb
import polars as pl
from deltalake import DeltaTable
from duckdb_extensions import import_extension


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", required=True)
    ap.add_argument("--app-id", action="append", default=[])
    ap.add_argument("--txn-only", action="store_true")
    ap.add_argument("--versions", action="store_true")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    table = DeltaTable(a.path)
    if a.set:
        table.alter.set_table_properties(dict(kv.split("=", 1) for kv in a.set))
        table = DeltaTable(a.path)
    txn = {app: table.transaction_version(app) for app in a.app_id}
    if a.txn_only:
        configuration = table.metadata().configuration
        print(json.dumps({"version": table.version(), "txn": txn, "configuration": configuration}))
        return
    if a.versions:
        operations = {c["version"]: c.get("operation") for c in table.history()}
        out = []
        for v in range(table.version() + 1):
            out.append({
                "version": v,
                "operation": operations.get(v),
                "polars": pl.read_delta(a.path, version=v).height,
                "deltalake": DeltaTable(a.path, version=v).to_pyarrow_table().num_rows,
            })
        print(json.dumps({"versions": out}))
        return
    with tempfile.TemporaryDirectory(prefix="medallion-duckdb-ext-") as ext_dir:
        con = duckdb.connect(
            config={
                "extension_directory": ext_dir,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        import_extension("delta", con=con)
        con.sql("LOAD delta")
        path = a.path.replace("'", "''")
        row = con.sql(
            f"SELECT count(*), sum(id), epoch_us(min(ts)), epoch_us(max(ts)) FROM delta_scan('{path}')"
        ).fetchone()
    duck = {"count": row[0], "sum_id": int(row[1] or 0), "min_ts": row[2], "max_ts": row[3]}
    df = pl.read_delta(a.path)
    ts = df.get_column("ts").dt.epoch("us")
    polars = {
        "count": df.height,
        "sum_id": int(df.get_column("id").sum()),
        "min_ts": ts.min(),
        "max_ts": ts.max(),
    }
    print(json.dumps({"duckdb": duck, "polars": polars, "version": table.version(), "txn": txn}))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # Skip interpreter teardown: with polars, pyarrow and deltalake loaded it sometimes aborts
    # ("terminate called without an active exception") after the answer is printed.
    os._exit(0)
