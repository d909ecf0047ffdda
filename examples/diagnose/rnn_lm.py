"""A word-level RNN language model, written like PyTorch's word_language_model example.

The learning rate (5, plain SGD) is too high for a tanh RNN without gradient clipping:
the gradient explodes within the first hundred steps.  Data: gradwatch's generated
Markov text (nothing is downloaded).

    python examples/diagnose/rnn_lm.py --lr 5
    gradwatch diagnose examples/diagnose/rnn_lm.py --steps 150 --try -- --lr 5
"""

import argparse

import torch
from torch import nn

from gradwatch.tasks.text import batchify, markov_text


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.RNN(ninp, nhid, nonlinearity="tanh")
        self.decoder = nn.Linear(nhid, ntoken)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x, hidden):
        output, hidden = self.rnn(self.encoder(x), hidden)
        return self.decoder(output), hidden


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bptt", type=int, default=35)
    args = parser.parse_args()

    torch.manual_seed(1111)
    vocab, batch = 2000, 20
    data = batchify(markov_text(vocab, seed=0).sample(200_000, seed=1), batch)
    model = RNNModel(vocab, 64, 128)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    for epoch in range(args.epochs):
        hidden = torch.zeros(1, batch, 128)
        for i in range(0, data.size(0) - 1 - args.bptt, args.bptt):
            x, y = data[i : i + args.bptt], data[i + 1 : i + 1 + args.bptt]
            hidden = hidden.detach()
            optimizer.zero_grad()
            output, hidden = model(x, hidden)
            loss = criterion(output.view(-1, vocab), y.reshape(-1))
            loss.backward()
            optimizer.step()
            if (i // args.bptt) % 100 == 0:
                print(f"epoch {epoch} batch {i // args.bptt} loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
