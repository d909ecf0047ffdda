"""Log-compressed features without an epsilon: log(ReLU(x)) is -inf wherever ReLU gives 0.

The forward pass makes the NaN (the loss is NaN from the first step); no gradient remedy
can fix it, the code has to (``torch.log(x + eps)`` or ``log1p``).

    gradwatch diagnose examples/diagnose/forward_nan.py --steps 50
"""

import torch
from sklearn.datasets import load_digits
from torch import nn


class LogScale(nn.Module):
    def forward(self, x):
        return torch.log(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.act = nn.ReLU()
        self.logscale = LogScale()
        self.fc2 = nn.Linear(64, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(self.logscale(self.act(self.fc1(x))))))


torch.manual_seed(0)
digits = load_digits()
X = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for _step in range(1000):
    idx = torch.randint(0, len(X), (64,))
    loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
