"""Reads medallion's Iceberg REST catalog (`medallion catalog serve`) as its users would:
DuckDB's iceberg extension ATTACHes the endpoint and counts every table it lists, and plain
HTTP requests probe the error answers. Prints ONE JSON object:

  {"tables": {"ns.name": rows, ...},
   "probes": {"PATH or METHOD PATH": {"status": N, "body": {...}}, ...}}

Usage: rest_catalog.py --endpoint http://127.0.0.1:PORT
"""

import argparse
import json
import urllib.error
import urllib.request

from read_iceberg import duckdb_connection

PROBES = [
    ("GET", "/v1/config"),
    ("GET", "/v1/namespaces"),
    ("GET", "/v1/namespaces/no_such_ns"),
    ("GET", "/v1/namespaces/no_such_ns/tables"),
    ("GET", "/v1/namespaces/bronze/tables/no_such_table"),
    ("POST", "/v1/namespaces"),
    ("DELETE", "/v1/namespaces/bronze/tables/web_events"),
    ("GET", "/v2/unknown"),
]


def probe(endpoint, method, path, body=None):
    """The status and JSON body of one request; a POST without a body sends `{}`."""
    data = json.dumps(body).encode() if body is not None else b"{}" if method == "POST" else None
    req = urllib.request.Request(
        endpoint + path, method=method, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req) as resp:
            return {"status": resp.status, "body": json.loads(resp.read() or b"null")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": json.loads(e.read() or b"null")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    args = ap.parse_args()
    from duckdb_extensions import import_extension

    con = duckdb_connection()
    import_extension("httpfs", con=con)
    con.sql("LOAD httpfs")
    con.sql(
        f"ATTACH '' AS lake (TYPE iceberg, ENDPOINT '{args.endpoint}', AUTHORIZATION_TYPE 'none')"
    )
    listed = con.sql(
        "SELECT schema, name FROM (SHOW ALL TABLES) WHERE database = 'lake' ORDER BY ALL"
    ).fetchall()
    tables = {
        f"{ns}.{name}": con.sql(f'SELECT count(*) FROM lake."{ns}"."{name}"').fetchone()[0]
        for ns, name in listed
    }
    probes = {f"{m} {p}": probe(args.endpoint, m, p) for m, p in PROBES}
    print(json.dumps({"tables": tables, "probes": probes}))


if __name__ == "__main__":
    main()
