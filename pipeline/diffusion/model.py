"""DiffusEmpModel: the denoiser f_theta(x_t, t) -> x0 of paper section 3.2 and its rounding head.

token ids -> embedding [E = emb_dim] (random init, N(0, 1) like the diffusion noise) -- diffusion happens here --
x_t [B, L, E] (with cfg.self_condition: concatenated with the previous x0 estimate, [B, L, 2E]) -> up-projection to
width W + position + timestep embedding -> pre-LN transformer layers, each attending under the boolean control-range
mask -> down-projection to E = the x0 prediction.
Rounding: logits over the output vocabulary = x0 . embedding(out_ids) (tied to the input embedding), [B, L, V_out].
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.vocab import Vocab


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusion times t [B] (any scale) -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # [B, half]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Block(nn.Module):
    """Pre-LN transformer layer: x + attn(LN(x), mask); x + MLP(LN(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.ln1, self.ln2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, cfg.ffn), nn.GELU(), nn.Linear(cfg.ffn, cfg.width))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, W = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)  # [B,H,L,D]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, W)))
        return x + self.drop(self.mlp(self.ln2(x)))


class DiffusEmpModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab: Vocab):
        super().__init__()
        self.cfg = cfg
        E, W = cfg.emb_dim, cfg.width
        self.embedding = nn.Embedding(vocab.size, E)  # default init N(0, 1)
        self.register_buffer("out_ids", torch.tensor(vocab.out_ids), persistent=False)  # [V_out] model ids
        self.end_id = vocab.end  # generation stops at the first END
        self.up = nn.Sequential(nn.Linear(2 * E if cfg.self_condition else E, W), nn.Tanh(), nn.Linear(W, W))
        self.time = nn.Sequential(nn.Linear(E, W), nn.SiLU(), nn.Linear(W, W))
        self.pos = nn.Embedding(cfg.max_len, W)
        self.ln_in, self.drop = nn.LayerNorm(W), nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_out = nn.LayerNorm(W)
        self.down = nn.Sequential(nn.Linear(W, W), nn.Tanh(), nn.Linear(W, E))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, L] -> embeddings [B, L, E] (the clean x_0 of every position)."""
        return self.embedding(ids)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, attn_mask: torch.Tensor,
                x0_prev: torch.Tensor | None = None) -> torch.Tensor:
        """x_t [B, L, E] (noised response positions, clean embeddings elsewhere), t [B] original diffusion times,
        attn_mask [B, 1, L, L] bool (True = may attend), x0_prev [B, L, E]: the previous x0 estimate (self-conditioning;
        None = zeros, and ignored without cfg.self_condition) -> predicted x0 [B, L, E]."""
        L = x_t.shape[1]
        if self.cfg.self_condition:
            x_t = torch.cat([x_t, torch.zeros_like(x_t) if x0_prev is None else x0_prev], dim=-1)  # [B, L, 2E]
        h = self.up(x_t) + self.pos.weight[:L] + self.time(timestep_embedding(t, self.cfg.emb_dim))[:, None]  # [B,L,W]
        h = self.drop(self.ln_in(h))
        for block in self.blocks:
            h = block(h, attn_mask)
        return self.down(self.ln_out(h))

    def output_embeddings(self) -> torch.Tensor:
        """Embeddings of the output vocabulary [V_out, E] (the rows the rounding head scores)."""
        return self.embedding.weight[self.out_ids]

    def logits(self, x0: torch.Tensor) -> torch.Tensor:
        """Rounding head p(w | x0), tied to the embedding: x0 [B, L, E] (or [N, E]) -> logits [..., V_out] over
        vocab.out_ids."""
        return F.linear(x0, self.output_embeddings())
