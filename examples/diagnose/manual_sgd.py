"""A deep sigmoid MLP on scikit-learn's digits, trained by hand: no optimizer object.

The update is ``p.data.add_(p.grad, alpha=-lr)``, as in many tutorials.  Eight sigmoid
layers: the gradient reaching the first layers is orders of magnitude smaller than at
the top (the vanishing gradient problem of the article).

    gradwatch diagnose examples/diagnose/manual_sgd.py --steps 200 --try
"""

import torch
from sklearn.datasets import load_digits
from torch import nn

torch.manual_seed(0)
digits = load_digits()
X = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target)

layers = []
width = 64
for _ in range(8):
    layers += [nn.Linear(width, 64), nn.Sigmoid()]
    width = 64
model = nn.Sequential(*layers, nn.Linear(64, 10))
lr = 0.5

for step in range(2000):
    idx = torch.randint(0, len(X), (64,))
    loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
    if step % 200 == 0:
        print(step, loss.item())
