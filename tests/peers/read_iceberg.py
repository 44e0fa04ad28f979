#!/usr/bin/env python3
"""Third-party reader check for Iceberg tables written by medallion.

Reads one table from an Iceberg SQL catalog (the schema pyiceberg's SqlCatalog
uses; catalog name ``medallion``, table ``iceberg_tables``) with independent
readers -- pyiceberg, DuckDB's iceberg extension and polars -- and prints ONE
JSON object on stdout:

    {"metadata_location": "...",
     "readers": {"pyiceberg": {"rows": N, "digest": "<sha256>"},
                 "duckdb":    {"rows": N, "digest": "<sha256>"},
                 "polars":    {"rows": N, "digest": "<sha256>"}}}

The digest is the sha256 of the sorted canonical rows joined by "\\n"; each
canonical row is the compact JSON array of its values in column order, with:
  * timestamps (tz-aware or naive) -> integer microseconds since the epoch
    (UTC for tz-aware; the wall-clock value taken as UTC for naive ones),
  * dates -> "YYYY-MM-DD", times -> integer microseconds since midnight,
  * decimals -> their string form, binary/fixed -> lowercase hex,
  * uuids -> canonical 8-4-4-4-12 string, NaN/inf floats -> "NaN"/"Infinity"/"-Infinity",
  * None -> null; structs -> JSON objects, lists -> arrays, maps -> arrays of [k, v].
Identical data gives identical digests across readers.

With --sql "SELECT ... FROM t" the SQL is run in DuckDB over a view ``t`` (the
iceberg_scan of the table's current metadata, restricted to --columns if given)
and the output is {"rows": [[...], ...]} in the query's order, values
canonicalised as above.

With --queries FILE (a JSON list of {"views": {"name": "ns.table", ...}, "sql": "..."}),
each SQL is run in one DuckDB connection over views of the tables it names (iceberg_scan
of their current metadata), and the output is {"results": [[rows...], ...]} in the list's
order, values canonicalised as above.

With --warehouse DIR, a table with a Delta log at DIR/NAMESPACE/NAME (a medallion table
kept with table_format = "delta") is read from there instead of the catalog: by DuckDB's
delta extension (delta_scan) and polars (read_delta) in place of pyiceberg, DuckDB's
iceberg_scan and polars' scan_iceberg.

A table with medallion's Parquet commit log at DIR/NAMESPACE/NAME/_medallion_log (a table
kept with table_format = "parquet") is read as the plain files a user globs: DuckDB's
read_parquet('DIR/NAMESPACE/NAME/**/*.parquet', hive_partitioning = true) and polars'
scan_parquet with hive partitioning. Files not committed yet end in .staged and are not
matched.

With --snapshots every snapshot of the table is read, oldest first, by pyiceberg
and by DuckDB (iceberg_scan's snapshot_from_id), and the output is
{"snapshots": [{"id": N, "operation": "...", "total_records": N or null,
"pyiceberg": rows, "duckdb": rows}, ...]}.

Usage:
  read_iceberg.py --catalog-uri sqlite:////abs/catalog.db --table ns.name
                  [--columns c1,c2] [--sql "SELECT count(*) FROM t"]
                  [--readers pyiceberg,duckdb,polars] [--snapshots]

Tables in S3 (s3:// locations) are read from the store that AWS_ENDPOINT_URL names, with
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION, the way medallion reaches them.

Errors are reported on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import hashlib
import json
import math
import os
import sys
import tempfile
import traceback
import uuid

ALL_READERS = ("pyiceberg", "duckdb", "polars")
CATALOG_NAME = "medallion"
_TEMP_DIRS: list = []


class CheckError(Exception):
    """A failure to report on stderr with exit status 2."""


def fail(msg: str) -> "NoReturn":  # noqa: F821
    raise CheckError(msg)


# --------------------------------------------------------------------------
# Canonicalisation
# --------------------------------------------------------------------------

_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)


def canon_value(v):
    """Turn one Python value (from pyarrow's to_pylist) into a JSON-able value."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None and v.utcoffset() is not None:
            return (v - _EPOCH_UTC) // _US
        return (v - _EPOCH_NAIVE) // _US
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.time):
        return ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
    if isinstance(v, dt.timedelta):
        return v // _US
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): canon_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [canon_value(x) for x in v]
    # numpy scalars, pandas Timestamps, ... (should not happen with pyarrow)
    if hasattr(v, "item"):
        return canon_value(v.item())
    return str(v)


def _iceberg_kinds(iceberg_schema, columns):
    """Map column name -> iceberg primitive kind that needs type-driven handling."""
    from pyiceberg.types import UUIDType

    kinds = {}
    for c in columns:
        f = iceberg_schema.find_field(c)
        if isinstance(f.field_type, UUIDType):
            kinds[c] = "uuid"
    return kinds


def arrow_to_rows(tbl, columns, kinds):
    """Canonical rows (lists) from a pyarrow Table, in `columns` order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for name in columns:
        if name not in tbl.column_names:
            fail(f"reader result lacks column {name!r} (has {tbl.column_names})")
        col = tbl.column(name)
        t = col.type
        if pa.types.is_timestamp(t):
            # Fast exact path: UTC-based epoch integers, whatever the tz label.
            col = pc.cast(col, pa.timestamp("us", tz=t.tz), safe=False)
            col = col.cast(pa.int64())
        elif pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
        values = col.to_pylist()
        if kinds.get(name) == "uuid":
            values = [
                None if x is None else str(uuid.UUID(bytes=bytes(x))) if isinstance(x, (bytes, bytearray)) else str(uuid.UUID(str(x)))
                for x in values
            ]
        cols.append(values)
    n = tbl.num_rows
    return [[canon_value(c[i]) for c in cols] for i in range(n)]


def encode_row(row) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def digest_rows(rows):
    lines = sorted(encode_row(r) for r in rows)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------


def local_path(location: str) -> str:
    # file:///abs -> /abs ; also the Hadoop-style file:/abs -> /abs
    if location.startswith("file://"):
        return location[len("file://") :]
    if location.startswith("file:/"):
        return location[len("file:") :]
    return location


def s3_settings():
    """The S3 store of the environment (endpoint, keys, region), or None for local tables."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    return {
        "endpoint": endpoint,
        "key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "region": os.environ.get("AWS_REGION", "us-east-1"),
    }


def read_pyiceberg(table, columns):
    scan = table.scan(selected_fields=tuple(columns))
    return scan.to_arrow().select(columns)


def duckdb_connection():
    import duckdb
    from duckdb_extensions import import_extension

    ext_dir = os.environ.get("MEDALLION_DUCKDB_EXT_DIR")
    if not ext_dir:
        # A private dir per process: parallel tests must not race on INSTALL.
        tmp = tempfile.TemporaryDirectory(prefix="medallion-duckdb-ext-")
        _TEMP_DIRS.append(tmp)  # removed at exit
        ext_dir = tmp.name
    con = duckdb.connect(
        config={
            "extension_directory": ext_dir,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    # import_extension() only INSTALLs the wheel-shipped file; LOAD it too.
    s3 = s3_settings()
    for name in ("avro", "iceberg", "delta") + (("httpfs",) if s3 else ()):  # avro before iceberg
        import_extension(name, con=con)
        con.sql(f"LOAD {name}")
    con.sql("SET TimeZone = 'UTC'")
    if s3:
        scheme, _, host = s3["endpoint"].partition("://")
        con.sql(
            "CREATE SECRET s3_store (TYPE s3, PROVIDER config, "
            f"KEY_ID {_sql_str(s3['key'])}, SECRET {_sql_str(s3['secret'])}, "
            f"REGION {_sql_str(s3['region'])}, ENDPOINT {_sql_str(host.rstrip('/'))}, "
            f"URL_STYLE 'path', USE_SSL {str(scheme == 'https').lower()})"
        )
    return con


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


class DeltaTable:
    """A Delta table found in the warehouse: its directory and column names."""

    def __init__(self, path):
        import deltalake

        self.path = path
        self.metadata_location = path
        self.table = deltalake.DeltaTable(path)
        self.columns = [f.name for f in self.table.schema().fields]


def find_in_warehouse(warehouse, ident):
    """The Delta or plain Parquet table at WAREHOUSE/NAMESPACE/NAME (by its log folder), or
    None when there is none."""
    if not warehouse or "." not in ident:
        return None
    ns, name = ident.split(".", 1)
    path = os.path.join(warehouse, ns, name)
    for log, kind in (("_delta_log", DeltaTable), ("_medallion_log", ParquetFiles)):
        if os.path.isdir(os.path.join(path, log)):
            return kind(path)
    return None


class ParquetFiles:
    """A plain Parquet table found in the warehouse: its directory and column names."""

    def __init__(self, path):
        self.path = path
        self.metadata_location = path
        self.glob = os.path.join(path, "**", "*.parquet")
        con = duckdb_connection()
        try:
            rows = con.sql(f"DESCRIBE SELECT * FROM {scan_sql(self)}").fetchall()
        finally:
            con.close()
        self.columns = [r[0] for r in rows]


def scan_sql(table):
    """The DuckDB table function reading `table`'s current state."""
    if isinstance(table, ParquetFiles):
        return f"read_parquet({_sql_str(table.glob)}, hive_partitioning = true, union_by_name = true)"
    if isinstance(table, DeltaTable):
        return f"delta_scan({_sql_str(table.path)})"
    return f"iceberg_scan({_sql_str(local_path(table.metadata_location))})"


def duckdb_create_view(con, table, columns):
    sel = ", ".join(_ident(c) for c in columns) if columns else "*"
    con.sql(f"CREATE OR REPLACE VIEW t AS SELECT {sel} FROM {scan_sql(table)}")


def _duckdb_arrow(rel):
    if hasattr(rel, "to_arrow_table"):
        return rel.to_arrow_table()
    return rel.fetch_arrow_table()


def read_duckdb(table, columns):
    con = duckdb_connection()
    try:
        duckdb_create_view(con, table, columns)
        return _duckdb_arrow(con.sql("SELECT * FROM t"))
    finally:
        con.close()


def read_polars(table, columns):
    import polars as pl

    s3 = s3_settings()
    options = None
    if s3:
        options = {
            "aws_endpoint_url": s3["endpoint"],
            "aws_access_key_id": s3["key"],
            "aws_secret_access_key": s3["secret"],
            "aws_region": s3["region"],
            "aws_allow_http": "true",
        }
    if isinstance(table, DeltaTable):
        return pl.read_delta(table.path).select(columns).to_arrow()
    if isinstance(table, ParquetFiles):
        lf = pl.scan_parquet(table.glob, hive_partitioning=True, missing_columns="insert")
        return lf.select(columns).collect().to_arrow()
    lf = pl.scan_iceberg(table, storage_options=options)
    return lf.select(columns).collect().to_arrow()


def read_snapshots(table):
    con = duckdb_connection()
    path = _sql_str(local_path(table.metadata_location))
    out = []
    try:
        for snap in sorted(table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms)):
            summary = snap.summary
            total = summary.get("total-records") if summary is not None else None
            py = table.scan(snapshot_id=snap.snapshot_id).to_arrow().num_rows
            duck = con.sql(
                f"SELECT count(*) FROM iceberg_scan({path}, snapshot_from_id => {snap.snapshot_id})"
            ).fetchone()[0]
            out.append({
                "id": snap.snapshot_id,
                "operation": summary.operation.value if summary is not None else None,
                "total_records": None if total is None else int(total),
                "pyiceberg": py,
                "duckdb": duck,
            })
    finally:
        con.close()
    return out


READERS = {"pyiceberg": read_pyiceberg, "duckdb": read_duckdb, "polars": read_polars}


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description="Read a medallion Iceberg table with third-party readers.")
    p.add_argument("--catalog-uri", required=True, help="SQLAlchemy URI of the SQL catalog, e.g. sqlite:////abs/catalog.db")
    p.add_argument("--table", default=None, help="NAMESPACE.NAME")
    p.add_argument("--warehouse", default=None, help="local warehouse directory holding Delta tables")
    p.add_argument("--queries", default=None, help="JSON file of queries over several tables")
    p.add_argument("--columns", default=None, help="comma-separated columns (default: all, in schema order)")
    p.add_argument("--sql", default=None, help="SQL to run in DuckDB over view t instead of digesting")
    p.add_argument("--snapshots", action="store_true", help="count the rows of every snapshot with pyiceberg and DuckDB")
    p.add_argument("--readers", default=",".join(ALL_READERS), help="comma-separated subset of " + ",".join(ALL_READERS))
    return p.parse_args(argv)


def load_table(uri, ident):
    from pyiceberg.catalog.sql import SqlCatalog

    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///") :].split("?", 1)[0]
        if db not in ("", ":memory:") and not os.path.exists(db):
            fail(f"SQLite catalog file {db!r} does not exist (URI {uri!r}; use sqlite:/// + absolute path)")
    if "." not in ident:
        fail(f"--table must be NAMESPACE.NAME, got {ident!r}")
    try:
        props = {}
        s3 = s3_settings()
        if s3:
            props = {
                "s3.endpoint": s3["endpoint"],
                "s3.access-key-id": s3["key"],
                "s3.secret-access-key": s3["secret"],
                "s3.region": s3["region"],
            }
        cat = SqlCatalog(CATALOG_NAME, uri=uri, **props)
    except Exception as e:  # noqa: BLE001
        fail(f"cannot open SQL catalog {uri!r}: {type(e).__name__}: {e}")
    try:
        return cat.load_table(ident)
    except Exception as e:  # noqa: BLE001
        fail(f"cannot load table {ident!r} from catalog {uri!r}: {type(e).__name__}: {e}")


def open_table(uri, warehouse, ident):
    """The table `ident`: a Delta table in the warehouse, else the catalog's Iceberg table."""
    return find_in_warehouse(warehouse, ident) or load_table(uri, ident)


def run_queries(uri, warehouse, path):
    with open(path) as f:
        queries = json.load(f)
    scans = {}
    con = duckdb_connection()
    results = []
    try:
        for q in queries:
            for name, ident in q["views"].items():
                if ident not in scans:
                    scans[ident] = scan_sql(open_table(uri, warehouse, ident))
                con.sql(f"CREATE OR REPLACE VIEW {_ident(name)} AS SELECT * FROM {scans[ident]}")
            try:
                res = _duckdb_arrow(con.sql(q["sql"]))
            except Exception as e:  # noqa: BLE001
                fail(f"DuckDB failed on {q['sql']!r}: {type(e).__name__}: {e}")
            results.append(arrow_to_rows(res, res.column_names, {}))
    finally:
        con.close()
    return {"results": results}


def run(argv):
    args = parse_args(argv)
    if args.queries is not None:
        return run_queries(args.catalog_uri, args.warehouse, args.queries)
    if args.table is None:
        fail("--table is required (or --queries)")
    table = open_table(args.catalog_uri, args.warehouse, args.table)
    outside_catalog = isinstance(table, (DeltaTable, ParquetFiles))
    all_cols = table.columns if outside_catalog else [f.name for f in table.schema().fields]
    if args.columns:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
        missing = [c for c in columns if c not in all_cols]
        if missing:
            fail(f"unknown column(s) {missing} in {args.table}; table has {all_cols}")
    else:
        columns = all_cols
    if not columns:
        fail("no columns selected")

    if args.snapshots:
        if outside_catalog:
            fail("--snapshots reads Iceberg tables only")
        return {"snapshots": read_snapshots(table)}

    if args.sql is not None:
        con = duckdb_connection()
        try:
            duckdb_create_view(con, table, columns if args.columns else None)
            try:
                res = _duckdb_arrow(con.sql(args.sql))
            except Exception as e:  # noqa: BLE001
                fail(f"DuckDB failed on --sql: {type(e).__name__}: {e}")
        finally:
            con.close()
        rows = arrow_to_rows(res, res.column_names, {})
        return {"metadata_location": table.metadata_location, "columns": res.column_names, "rows": rows}

    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    if outside_catalog:
        # pyiceberg reads Iceberg only: Delta and Parquet tables are judged by DuckDB and polars.
        readers = [r for r in readers if r != "pyiceberg"]
    bad = [r for r in readers if r not in READERS]
    if bad or not readers:
        fail(f"unknown reader(s) {bad}; choose from {','.join(ALL_READERS)}")
    kinds = {} if outside_catalog else _iceberg_kinds(table.schema(), columns)
    out = {"metadata_location": table.metadata_location, "columns": columns, "readers": {}}
    for r in readers:
        try:
            tbl = READERS[r](table, columns)
        except CheckError:
            raise
        except Exception as e:  # noqa: BLE001
            fail(f"reader {r} failed on {args.table} ({table.metadata_location}): {type(e).__name__}: {e}")
        rows = arrow_to_rows(tbl, columns, kinds)
        out["readers"][r] = {"rows": len(rows), "digest": digest_rows(rows)}
    return out


def main(argv=None):
    try:
        out = run(sys.argv[1:] if argv is None else argv)
    except CheckError as e:
        print(f"read_iceberg.py: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        print(f"read_iceberg.py: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(out, ensure_ascii=False, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
