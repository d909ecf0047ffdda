"""A tiny GPT-2 trained by the Hugging Face ``Trainer`` on generated Markov text (nothing downloaded).

The model is built from a config (no pretrained weights); the Trainer clips at
``max_grad_norm=1.0`` by default, and training is healthy.

    gradwatch diagnose examples/diagnose/hf_trainer.py --steps 40
"""

import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from gradwatch.tasks.text import markov_text


class Blocks(torch.utils.data.Dataset):
    def __init__(self, ids, length):
        self.ids, self.length = ids, length

    def __len__(self):
        return (len(self.ids) - 1) // self.length

    def __getitem__(self, i):
        chunk = self.ids[i * self.length : (i + 1) * self.length]
        return {"input_ids": chunk, "labels": chunk}


def main():
    vocab = 500
    ids = markov_text(vocab, seed=0).sample(60_000, seed=1)
    config = GPT2Config(
        vocab_size=vocab, n_positions=64, n_embd=64, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=16,
            learning_rate=1e-3,
            max_steps=300,
            logging_steps=50,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        Trainer(model=model, args=args, train_dataset=Blocks(ids, 64)).train()


if __name__ == "__main__":
    main()
