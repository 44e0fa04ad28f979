"""Writes through medallion's Iceberg REST catalog (`medallion catalog serve --read-write`)
as an independent client would: pyiceberg's RestCatalog creates a namespace and a table and
appends to it twice, a stale table handle's append must fail with CommitFailedException, and
a raw commit whose requirement is stale must get 409 in the REST error shape. Prints ONE JSON
object:

  {"rows": N, "snapshots": N, "stale_append": "ExceptionName",
   "stale_commit": {"status": N, "body": {...}}, "stale_property": null}

Usage: rest_write.py --endpoint http://127.0.0.1:PORT --table ns.name --stale-table ns.name
"""

import argparse
import json

import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import CommitFailedException
from rest_catalog import probe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--stale-table", required=True)
    args = ap.parse_args()
    catalog = RestCatalog("medallion", uri=args.endpoint)
    namespace, _ = args.table.split(".")
    catalog.create_namespace(namespace)
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": pa.array(["a", "b", "c"])})
    # Without retries, so that the stale append shows the server's answer (pyiceberg would
    # otherwise rebase on the 409 and commit again).
    table = catalog.create_table(
        args.table, schema=data.schema, properties={"commit.retry.num-retries": "0"}
    )
    stale = catalog.load_table(args.table)
    table.append(data)
    table.append(data.slice(0, 2))
    try:
        stale.append(data)
        stale_append = "committed"
    except CommitFailedException as e:
        stale_append = type(e).__name__
    table = catalog.load_table(args.table)
    rows = table.scan().to_arrow().num_rows

    # A commit built on a snapshot the table's main branch is no longer at.
    ns, name = args.stale_table.split(".")
    current = catalog.load_table(args.stale_table).metadata.current_snapshot_id
    stale_commit = probe(
        args.endpoint,
        "POST",
        f"/v1/namespaces/{ns}/tables/{name}",
        {
            "identifier": {"namespace": [ns], "name": name},
            "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": current + 1}],
            "updates": [{"action": "set-properties", "updates": {"stale": "yes"}}],
        },
    )
    stale_property = catalog.load_table(args.stale_table).properties.get("stale")
    print(
        json.dumps(
            {
                "stale_property": stale_property,
                "rows": rows,
                "snapshots": len(table.metadata.snapshots),
                "stale_append": stale_append,
                "stale_commit": stale_commit,
            }
        )
    )


if __name__ == "__main__":
    main()
