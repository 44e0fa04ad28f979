"""Runs the README's recipes (code blocks marked ```python recipe or ```sql recipe) as a user
would, in DIR (which holds the demo's ./warehouse), and prints ONE JSON array with what each
printed: [{"kind": "python"|"sql", "first_line": "...", "output": "..."}, ...].

DuckDB extensions come from the pinned wheels, installed beforehand into the extension
directory of a private HOME, so a recipe's INSTALL finds them there without a download. The
SQL recipes run in one DuckDB connection, with the REST endpoint replaced by --endpoint; the
output of a SQL recipe is its last statement's first value.

Usage: recipes.py --readme README.md --dir DIR --endpoint http://127.0.0.1:PORT
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

RECIPE = re.compile(r"```(python|sql) recipe\n(.*?)```", re.S)
README_ENDPOINT = "http://127.0.0.1:8181"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readme", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--endpoint", required=True)
    args = ap.parse_args()
    import duckdb
    from duckdb_extensions import import_extension

    home = tempfile.mkdtemp(prefix="medallion-recipes-home-")
    ext_dir = os.path.join(home, ".duckdb", "extensions")
    con = duckdb.connect(config={"extension_directory": ext_dir})
    for name in ("avro", "iceberg", "httpfs"):
        import_extension(name, con=con)
    con.close()
    env = dict(os.environ, HOME=home)

    out = []
    text = open(args.readme, encoding="utf-8").read()
    for kind, code in RECIPE.findall(text):
        if kind == "python":
            run = subprocess.run(
                [sys.executable, "-c", code], cwd=args.dir, env=env, capture_output=True, text=True
            )
            if run.returncode != 0:
                raise SystemExit(f"recipe failed:\n{code}\n{run.stderr}")
            output = run.stdout.strip()
        else:
            os.environ["HOME"] = home
            os.chdir(args.dir)
            con = duckdb.connect()
            result = None
            code = code.replace(README_ENDPOINT, args.endpoint)
            code = "\n".join(l for l in code.splitlines() if not l.strip().startswith("--"))
            for statement in code.split(";"):
                if statement.strip():
                    result = con.sql(statement)
            output = str(result.fetchone()[0])
        out.append({"kind": kind, "first_line": code.splitlines()[0], "output": output})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
