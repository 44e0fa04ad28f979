"""Renders a medallion HTML quality report in headless Chromium (Debian's) and prints, as
JSON, what the rendered page shows: the numbers of its tables, read from the DOM Chromium
built, and how many pixels of each chart color its screenshot has.

usage: html_report.py --html REPORT.html --screenshot OUT.png
"""

import argparse
import json
import subprocess
import sys
import tempfile
from html.parser import HTMLParser

from PIL import Image

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
VOID = {"meta", "link", "br", "img", "input", "hr", "area", "base", "col", "source", "wbr"}
# The report's chart colors (reports/src/html.rs).
COLORS = {"line": (0x25, 0x63, 0xEB), "pass": (0x16, 0xA3, 0x4A), "fail": (0xDC, 0x26, 0x26)}


class Node:
    def __init__(self, tag, attrs):
        self.tag, self.attrs, self.children, self.text = tag, dict(attrs), [], ""

    def all(self):
        yield self
        for c in self.children:
            yield from c.all()

    def find(self, pred):
        return [n for n in self.all() if pred(n)]

    def content(self):
        return self.text + "".join(c.content() for c in self.children)

    def classes(self):
        return (self.attrs.get("class") or "").split()


class Tree(HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = Node("root", [])
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs)
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, attrs))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].text += data


def chromium(args, profile):
    out = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=120,
    )
    if out.returncode != 0:
        sys.exit(f"chromium {args}: {out.returncode}: {out.stderr.decode(errors='replace')}")
    return out.stdout.decode()


def number(text):
    text = text.strip().replace(",", "")
    if text.endswith("%"):
        return float(text[:-1]) / 100
    try:
        return int(text)
    except ValueError:
        return text


def cell(row, cls):
    found = row.find(lambda n: cls in n.classes())
    return number(found[0].content()) if found else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--html", required=True)
    ap.add_argument("--screenshot", required=True)
    a = ap.parse_args()
    url = "file://" + a.html
    with tempfile.TemporaryDirectory() as profile:
        dom = chromium(["--dump-dom", url], profile)
    with tempfile.TemporaryDirectory() as profile:
        chromium([f"--screenshot={a.screenshot}", "--window-size=1280,6000", url], profile)
    tree = Tree()
    tree.feed(dom)
    root = tree.root

    overview = {}
    for table in root.find(lambda n: n.attrs.get("id") == "tables"):
        for row in table.find(lambda n: n.tag == "tr" and "data-table" in n.attrs):
            overview[row.attrs["data-table"]] = {
                "rows": cell(row, "rows"),
                "added": cell(row, "added"),
                "commits": cell(row, "commits"),
            }
    dead = []
    for table in root.find(lambda n: n.attrs.get("id") == "dead-letters"):
        for row in table.find(lambda n: n.tag == "tr" and "data-reason" in n.attrs):
            dead.append(
                {
                    "table": row.attrs["data-table"],
                    "reason": row.attrs["data-reason"],
                    "records": cell(row, "records"),
                    "samples": len(row.find(lambda n: "sample" in n.classes())),
                }
            )
    topics = {
        n.attrs["data-topic"]: number(n.content())
        for n in root.find(lambda n: "dlq-topic-records" in n.classes())
    }
    sections = {}
    for sec in root.find(lambda n: n.tag == "section"):
        name = sec.attrs["data-table"]
        ingest = sec.find(lambda n: "ingest" in n.classes())
        ingest = (
            {k: cell(ingest[0], k) for k in ["consumed", "written", "duplicates", "dedupe-rate", "dead-letters"]}
            if ingest
            else None
        )
        lag = sec.find(lambda n: "lag" in n.classes())
        behind = sec.find(lambda n: "commits-behind" in n.classes())
        sections[name] = {
            "rows": cell(sec, "rows"),
            "ingest": ingest,
            "lag": number(lag[0].content()) if lag else None,
            "commits_behind": number(behind[0].content()) if behind else None,
            "profiled_rows": cell(sec, "profiled-rows"),
            "expectations": {
                row.attrs["data-expectation"]: {
                    "passed": cell(row, "passed"),
                    "failed": cell(row, "failed"),
                    "pass_rate": cell(row, "pass-rate"),
                }
                for row in sec.find(lambda n: n.tag == "tr" and "data-expectation" in n.attrs)
            },
            "columns": {
                row.attrs["data-column"]: {
                    "nulls": cell(row, "nulls"),
                    "distinct": cell(row, "distinct"),
                    "min": cell(row, "min"),
                    "max": cell(row, "max"),
                }
                for row in sec.find(lambda n: n.tag == "tr" and "data-column" in n.attrs)
            },
            "charts": [
                " ".join(c.classes())
                for c in sec.find(lambda n: n.tag == "svg")
            ],
            "polyline_points": [
                len((p.attrs.get("points") or "").split())
                for p in sec.find(lambda n: n.tag == "polyline")
            ],
        }

    image = Image.open(a.screenshot).convert("RGB")
    pixels = {k: 0 for k in COLORS}
    for r, g, b in image.getdata():
        for k, (cr, cg, cb) in COLORS.items():
            if abs(r - cr) + abs(g - cg) + abs(b - cb) < 24:
                pixels[k] += 1
    print(
        json.dumps(
            {
                "overview": overview,
                "dead_letters": dead,
                "dlq_topics": topics,
                "sections": sections,
                "screenshot": {"width": image.width, "height": image.height, "pixels": pixels},
            }
        )
    )


if __name__ == "__main__":
    main()
