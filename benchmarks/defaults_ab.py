"""What the default non-finite origin and misuse lints cost: paired A/B of two monitors.

Both sides are monitored: A is ``Monitor(model, opt, lints=False, trace_nonfinite=False)``,
B is ``Monitor(model, opt)`` (the defaults: lints on, tracing armed only after a NaN/Inf).
Same paired blocks as ``overhead.py`` (``_paired.paired_blocks``: two identical copies of a
model of ``overhead.build``, steps interleaved, one thread), so the ratio B/A is the cost of
those defaults alone, without the rest of the monitor. See docs/monitor.md ("Cost").

Usage:
    python benchmarks/defaults_ab.py mlp [--min-blocks 12] [--max-blocks 24]
    python benchmarks/defaults_ab.py lstm --a "{}" --b "{'weights_every': None}"   # any two configurations

``--a``/``--b`` are Python dict literals of ``Monitor`` keywords (default: the bare side and
the defaults above), to price any one option the same way.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paired import THREAD_ENV, format_row, paired_blocks, summarize
from overhead import BLOCK_STEPS, MODELS, build, trainer


def main() -> None:
    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)  # before torch is imported
    import torch

    import gradwatch as gw

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("--min-blocks", type=int, default=12)
    ap.add_argument("--max-blocks", type=int, default=24)
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ap.add_argument("--a", default="{'lints': False, 'trace_nonfinite': False}", help="Monitor keywords of side A")
    ap.add_argument("--b", default="{}", help="Monitor keywords of side B (the ratio is B/A)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    k = BLOCK_STEPS[args.model]
    base, x, y, loss_fn = build(args.model)
    a_model, b_model = base, copy.deepcopy(base)  # identical weights
    a_opt = torch.optim.SGD(a_model.parameters(), lr=1e-3, momentum=0.9)
    b_opt = torch.optim.SGD(b_model.parameters(), lr=1e-3, momentum=0.9)
    with tempfile.TemporaryDirectory(prefix="gw-ab-") as tmp:
        a_kw, b_kw = ast.literal_eval(args.a), ast.literal_eval(args.b)
        a_mon = gw.Monitor(a_model, a_opt, sync_every=k, log=Path(tmp) / "a.jsonl", **a_kw)
        b_mon = gw.Monitor(b_model, b_opt, sync_every=k, log=Path(tmp) / "b.jsonl", **b_kw)
        a = trainer(a_model, x, y, loss_fn, a_opt, lambda step, loss: a_mon.step(loss))
        b = trainer(b_model, x, y, loss_fn, b_opt, lambda step, loss: b_mon.step(loss))
        blocks = paired_blocks(a, b, k=k, min_blocks=args.min_blocks, max_blocks=args.max_blocks, target=0.01)
        a_mon.close()
        b_mon.close()
    result = summarize(blocks, k)
    if args.json:
        print(json.dumps({"model": args.model, "a": args.a, "b": args.b, **result}))
    else:
        print(f"A = {args.a}, B = {args.b}")
        print(format_row(f"{args.model:12s} B/A  ", result))


if __name__ == "__main__":
    main()
