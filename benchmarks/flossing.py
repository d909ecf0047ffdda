"""Cost of gradient flossing per call, and of the monitor's Lyapunov collector, as ratios to a plain step.

Paired blocks (benchmarks/_paired.py): a plain training step (forward, backward, SGD) of a
model and the same step of an identical copy with the tool, interleaved step by step in
one process, one torch thread; the median block ratio on CPU time with its 95 % interval.
One fresh process per (model, tool).

Tools:
- ``floss-k{k}``: ``loss + 0.1 · flossing_loss(rnn, x, k=k)`` on every step (the cost of one
  flossing call, backward included; ``every=m`` divides the extra cost by m);
- ``lyapunov-k3``: ``Monitor(lyapunov_every=1, lyapunov_k=3)`` against ``Monitor()`` with the
  same defaults otherwise (the collector's cost when it measures on every recorded step; a
  period N divides the extra cost by N).

    python benchmarks/flossing.py [--blocks 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _paired import THREAD_ENV, format_row, paired_blocks, summarize

MODELS = {
    # name: (module class, hidden, input, length, batch)
    "rnn-h64-T100": ("RNN", 64, 32, 100, 32),
    "lstm-h128-T100": ("LSTM", 128, 32, 100, 32),
}
TOOLS = ("floss-k1", "floss-k4", "floss-k16", "lyapunov-k3")
K = 10  # steps per side per block


def worker(model_name: str, tool: str, blocks: int) -> dict[str, Any]:
    import torch
    from torch import nn

    from gradwatch.monitor import Monitor
    from gradwatch.remedies.flossing import flossing_loss

    torch.set_num_threads(1)
    kind, hidden, inp, length, batch = MODELS[model_name]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = getattr(nn, kind)(inp, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    plain_net, tool_net = Net(), Net()
    tool_net.load_state_dict(plain_net.state_dict())
    x = torch.randn(batch, length, inp)
    y = torch.randn(batch, 1)
    opt_p = torch.optim.SGD(plain_net.parameters(), lr=1e-3)
    opt_t = torch.optim.SGD(tool_net.parameters(), lr=1e-3)
    mon_p = mon_t = None
    if tool.startswith("lyapunov"):
        mon_p = Monitor(plain_net, opt_p)
        mon_t = Monitor(tool_net, opt_t, lyapunov_every=1, lyapunov_k=3)
    k = int(tool.split("-k")[1])

    def step(net: nn.Module, opt: torch.optim.Optimizer, mon: Any, floss: bool) -> None:
        loss = (net(x) - y).pow(2).mean()
        total = loss + 0.1 * flossing_loss(net.rnn, x, k=k) if floss else loss
        total.backward()
        if mon is not None:
            mon.step(loss)
        opt.step()
        opt.zero_grad()

    floss = tool.startswith("floss")

    def plain(n: int) -> None:
        for _ in range(n):
            step(plain_net, opt_p, mon_p, False)

    def with_tool(n: int) -> None:
        for _ in range(n):
            step(tool_net, opt_t, mon_t, floss)

    rows = paired_blocks(plain, with_tool, k=K, min_blocks=blocks, max_blocks=blocks)
    return summarize(rows, K)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--tools", nargs="*", default=list(TOOLS))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.blocks)))
        return
    results: dict[str, dict[str, Any]] = {}
    env = {**os.environ, **THREAD_ENV}
    for m in args.models:
        for t in args.tools:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", m, t, "--blocks", str(args.blocks)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            results[f"{m} {t}"] = json.loads(out.stdout.strip().splitlines()[-1])
            if not args.json:
                print(format_row(f"{m:16s} {t:12s}", results[f"{m} {t}"]), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
