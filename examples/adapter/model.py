"""A small character-level transformer language model (pre-LayerNorm, causal) and its pretraining."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from .data import PROMPT_LEN, SEQ_LEN, VOCAB, Split


class Attention(nn.Module):
    """Multi-head causal self-attention with separate q, k, v, o projections (the adapters' sites)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharLM(nn.Module):
    def __init__(self, d: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(len(VOCAB), d)
        self.pos = nn.Parameter(torch.randn(SEQ_LEN, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, len(VOCAB))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def answer_scores(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the answer characters, and per example whether every answer character
    is the model's top choice (teacher-forced; the same as exact match under greedy decoding)."""
    logits, target = logits[:, PROMPT_LEN - 1 :], ids[:, PROMPT_LEN:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    return loss, (logits.argmax(-1) == target).all(-1)


def answer_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return answer_scores(model(ids[:, :-1]), ids)[0]


def pretrain(
    split: Split, steps: int, batch: int = 128, lr: float = 3e-3, seed: int = 0, progress: tqdm | None = None
) -> CharLM:
    """Train a fresh model on the pretraining task (cosine learning rate); returns it frozen."""
    torch.manual_seed(seed)
    model = CharLM()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(len(split), (batch,), generator=gen)
        loss = answer_loss(model, split.ids[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress.update(1)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
