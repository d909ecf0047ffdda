"""Print docs/reproduce.md's status table from a results.json written by `gradwatch reproduce`.

Usage: python scripts/reproduce_table.py /tmp/repro/results.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    print("| id | source | published | measured (" + doc["tier"] + ") | result | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c in doc["claims"]:
        result = "skipped" if c["skipped"] else ("pass" if c["pass"] else "**fail**")
        cells = [f"`{c['id']}`", c["source"], c["published"], c["measured"], result, str(c["seconds"])]
        print("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
