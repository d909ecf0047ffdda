"""A LightningModule trained by ``lightning.Trainer`` (CPU): a tanh RNN on the adding problem.

Lightning calls ``optimizer.step(closure)``: forward and backward run inside the step.
The learning rate is high and there is no ``gradient_clip_val``.

    gradwatch diagnose examples/diagnose/lightning_train.py --steps 60
"""

import lightning
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def adding_problem(n, length, seed):
    """Two marked numbers in a sequence of random values; the target is their sum."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=g)
    marks = torch.zeros(n, length)
    first = torch.randint(0, length // 2, (n,), generator=g)
    second = torch.randint(length // 2, length, (n,), generator=g)
    marks[torch.arange(n), first] = 1.0
    marks[torch.arange(n), second] = 1.0
    return torch.stack([values, marks], dim=-1), (values * marks).sum(dim=1)


class AddingRNN(lightning.LightningModule):
    def __init__(self, hidden=64, lr=2.0):
        super().__init__()
        self.rnn = nn.RNN(2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        self.lr = lr

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


if __name__ == "__main__":
    torch.manual_seed(0)
    x, y = adding_problem(2048, 50, seed=0)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    trainer = lightning.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(AddingRNN(), loader)
