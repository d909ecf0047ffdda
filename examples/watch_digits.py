"""Watch a deep sigmoid MLP train on scikit-learn's digits: the README's example, runnable.

    python examples/watch_digits.py [OUT_DIR]

Writes OUT_DIR/run.jsonl and OUT_DIR/flow.png and prints the verdict.
"""

import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import gradwatch as gw

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
digits = load_digits()
X = torch.tensor(digits.data, dtype=torch.float32) / 16
y = torch.tensor(digits.target)
torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(64, 64),
    nn.Sigmoid(),
    *[m for _ in range(9) for m in (nn.Linear(64, 64), nn.Sigmoid())],
    nn.Linear(64, 10),
)
opt = torch.optim.SGD(model.parameters(), lr=0.5)

with gw.Monitor(model, opt, log=out / "run.jsonl") as mon:  # 1. attach
    for _epoch in range(5):
        for i in range(0, len(X), 128):
            loss = nn.functional.cross_entropy(model(X[i : i + 128]), y[i : i + 128])
            loss.backward()
            mon.step(loss)  # 2. record
            opt.step()
            opt.zero_grad()
    print(mon.verdict())  # 3. read the verdict
    mon.plot(out / "flow.png")
