"""The denoisers of the two model families (ModelConfig.family) and what they share.

Both read the same sequence (inputs.py) through the same pre-LN transformer under the boolean control-range mask:
- DiffusEmpModel ("continuous", paper section 3.2): token ids -> embedding [E = emb_dim] (random init, N(0, 1) like
  the diffusion noise) -- diffusion happens here -- x_t [B, L, E] (with cfg.self_condition: concatenated with the
  previous x0 estimate, [B, L, 2E]) -> up-projection to width W + position + timestep embedding -> transformer ->
  down-projection to E = the x0 prediction. Rounding: logits = x0 . embedding(out_ids), [B, L, V_out].
- MaskedDiffusEmpModel ("masked"): token ids, with WordPiece [MASK] at the hidden response positions -> embedding
  [W] + position -> transformer -> logits over the output vocabulary, tied to the input embedding. The share of
  hidden tokens tells the model how far along the chain it is, so it needs no timestep input (MDLM). With
  cfg.init "minilm" the embedding and transformer are the pretrained MiniLM-L6 encoder (cut to cfg.layers layers)
  under the same boolean mask.
- ContinuousMiniLMModel ("continuous" with init "minilm"): Gaussian diffusion in MiniLM's WordPiece embedding space,
  standardised per dimension, frozen and divided by cfg.noise_factor; x_t, back at MiniLM's scale, plus a
  zero-initialised timestep embedding -> the MiniLM encoder -> the masked family's tied head -> logits over the output
  vocabulary, and x0 = softmax(logits) . the output embeddings (CDCD / TESS), so a continuous chain reads a pretrained
  encoder and the head's cross-entropy trains it.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.schedule import log_likelihood, sqrt_alpha_bar
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


class Transformer(nn.Module):
    """Input states [B, L, W] + learned positions -> LN, dropout, cfg.layers Blocks under the mask, final LN."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pos = nn.Embedding(cfg.max_len, cfg.width)
        self.ln_in, self.drop = nn.LayerNorm(cfg.width), nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_out = nn.LayerNorm(cfg.width)

    def forward(self, h: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.ln_in(h + self.pos.weight[:h.shape[1]]))
        for block in self.blocks:
            h = block(h, attn_mask)
        return self.ln_out(h)


class DiffusEmpModel(nn.Module):
    """The continuous family: f_theta(x_t, t) -> x0 and its rounding head."""

    def __init__(self, cfg: ModelConfig, vocab: Vocab):
        super().__init__()
        self.cfg = cfg
        E, W = cfg.emb_dim, cfg.width
        self.embedding = nn.Embedding(vocab.size, E)  # default init N(0, 1)
        self.register_buffer("out_ids", torch.tensor(vocab.out_ids), persistent=False)  # [V_out] model ids
        self.end_id = vocab.end  # generation stops at the first END
        self.up = nn.Sequential(nn.Linear(2 * E if cfg.self_condition else E, W), nn.Tanh(), nn.Linear(W, W))
        self.time = nn.Sequential(nn.Linear(E, W), nn.SiLU(), nn.Linear(W, W))
        self.transformer = Transformer(cfg)
        self.down = nn.Sequential(nn.Linear(W, W), nn.Tanh(), nn.Linear(W, E))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, L] -> embeddings [B, L, E] (the clean x_0 of every position)."""
        return self.embedding(ids)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, attn_mask: torch.Tensor,
                x0_prev: torch.Tensor | None = None, where: torch.Tensor | None = None) -> torch.Tensor:
        """x_t [B, L, E] (noised response positions, clean embeddings elsewhere), t [B] original diffusion times,
        attn_mask [B, 1, L, L] bool (True = may attend), x0_prev [B, L, E]: the previous x0 estimate (self-conditioning;
        None = zeros, and ignored without cfg.self_condition), where [B, L] bool: the positions whose estimate is read
        (None = all) -> predicted x0 [B, L, E], zeros outside `where`."""
        if self.cfg.self_condition:
            x_t = torch.cat([x_t, torch.zeros_like(x_t) if x0_prev is None else x0_prev], dim=-1)  # [B, L, 2E]
        h = self.up(x_t) + self.time(timestep_embedding(t, self.cfg.emb_dim))[:, None]  # [B, L, W]
        x0 = self.down(self.transformer(h, attn_mask))
        return x0 if where is None else x0 * where[..., None]

    def output_embeddings(self) -> torch.Tensor:
        """Embeddings of the output vocabulary [V_out, E] (the rows the rounding head scores)."""
        return self.embedding.weight[self.out_ids]

    def logits(self, x0: torch.Tensor) -> torch.Tensor:
        """Rounding head p(w | x0), tied to the embedding: x0 [B, L, E] (or [N, E]) -> logits [..., V_out] over
        vocab.out_ids."""
        return F.linear(x0, self.output_embeddings())


def minilm_encoder(cfg: ModelConfig, vocab_size: int, pretrained: bool) -> nn.Module:
    """MiniLM-L6's BERT encoder (no pooler) cut to cfg.layers layers, its embedding table grown to vocab_size rows
    (our own tokens after the 30,522 WordPieces, which keep their ids). pretrained: load the packaged weights (False:
    the architecture only, for a saved model whose weights come next)."""
    from transformers import BertConfig, BertModel

    from pipeline.models import minilm_path

    config = BertConfig.from_pretrained(minilm_path(), num_hidden_layers=cfg.layers, attn_implementation="sdpa",
                                        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    encoder = (BertModel.from_pretrained(minilm_path(), config=config, add_pooling_layer=False, dtype=torch.float32)
               if pretrained else BertModel(config, add_pooling_layer=False))
    encoder.resize_token_embeddings(vocab_size)
    return encoder


class MaskedDiffusEmpModel(nn.Module):
    """The masked family: p_theta(w | sequence with hidden response tokens) at every position."""

    def __init__(self, cfg: ModelConfig, vocab: Vocab, pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("out_ids", torch.tensor(vocab.out_ids), persistent=False)  # [V_out] model ids
        self.mask_id, self.end_id = vocab.mask, vocab.end
        if cfg.init == "minilm":
            self.encoder = minilm_encoder(cfg, vocab.size, pretrained)
        else:
            self.tokens = nn.Embedding(vocab.size, cfg.width)
            nn.init.normal_(self.tokens.weight, std=0.02)  # BERT's init: the tied head starts near uniform
            self.transformer = Transformer(cfg)
        self.head = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.GELU(), nn.LayerNorm(cfg.width))
        self.out_bias = nn.Parameter(torch.zeros(len(vocab.out_ids)))

    @property
    def embedding(self) -> nn.Embedding:
        """The input embedding table [vocab.size, W] (MiniLM's word embeddings, grown, under init "minilm")."""
        return self.encoder.embeddings.word_embeddings if self.cfg.init == "minilm" else self.tokens

    def forward(self, ids: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """ids [B, L] (mask_id at hidden response positions), attn_mask [B, 1, L, L] -> hidden states [B, L, W]."""
        if self.cfg.init == "minilm":
            return self.encoder(input_ids=ids, attention_mask=attn_mask).last_hidden_state
        return self.transformer(self.embedding(ids), attn_mask)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., W] -> logits [..., V_out] over vocab.out_ids (BERT's MLM head, tied to the embedding)."""
        return F.linear(self.head(h), self.embedding.weight[self.out_ids], self.out_bias)


class ContinuousMiniLMModel(nn.Module):
    """The continuous family on the pretrained MiniLM encoder: f_theta(x_t, t) -> x0 through a cross-entropy head.

    The diffusion space (`space`, [vocab.size, E = 384]): MiniLM's word embeddings (control tokens' rows drawn from
    their mean and covariance) minus their per-dimension mean, over their per-dimension standard deviation (both of
    the WordPiece rows), over cfg.noise_factor; frozen, so the space cannot drift or collapse under the MSE.
    """

    def __init__(self, cfg: ModelConfig, vocab: Vocab, pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        W = cfg.width
        self.register_buffer("out_ids", torch.tensor(vocab.out_ids), persistent=False)  # [V_out] model ids
        self.end_id = vocab.end
        self.encoder = minilm_encoder(cfg, vocab.size, pretrained)
        table = self.encoder.embeddings.word_embeddings.weight  # [V, W]
        table.requires_grad_(False)
        pieces = table.detach()[:vocab.wordpiece_size]
        self.register_buffer("mean", pieces.mean(0))  # [W]
        self.register_buffer("std", pieces.std(0))  # [W]
        if cfg.soft_absorb:  # DiffuSeq-v2's soft absorbing state, a point of the diffusion space [E]
            self.absorb = nn.Parameter(self.to_space(table.detach()[vocab.mask]).clone())
        self.time = nn.Sequential(nn.Linear(W, W), nn.SiLU(), nn.Linear(W, W))
        nn.init.zeros_(self.time[2].weight), nn.init.zeros_(self.time[2].bias)  # the encoder starts as pretrained
        self.head = nn.Sequential(nn.Linear(W, W), nn.GELU(), nn.LayerNorm(W))
        self.out_bias = nn.Parameter(torch.zeros(len(vocab.out_ids)))
        self.register_buffer("alpha_bar", sqrt_alpha_bar(cfg.T, cfg.noise_offset).float(), persistent=False)  # [T+1]

    def to_space(self, e: torch.Tensor) -> torch.Tensor:
        """MiniLM-scale embeddings [..., W] -> the diffusion space."""
        return (e - self.mean) / self.std / self.cfg.noise_factor

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, L] -> their points of the diffusion space [B, L, E] (the clean x_0 of every position)."""
        return self.to_space(self.encoder.embeddings.word_embeddings(ids))

    def output_embeddings(self) -> torch.Tensor:
        """The output vocabulary's points of the diffusion space [V_out, E]."""
        return self.to_space(self.encoder.embeddings.word_embeddings.weight[self.out_ids])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, attn_mask: torch.Tensor,
                x0_prev: torch.Tensor | None = None, where: torch.Tensor | None = None,
                return_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """As DiffusEmpModel.forward (x0_prev unused: no self-conditioning) -> x0 [B, L, E], zeros outside `where`;
        with return_logits also the head's logits [N, V_out] at the `where` positions, row-major."""
        where = torch.ones(x_t.shape[:2], dtype=torch.bool, device=x_t.device) if where is None else where
        inputs = x_t * self.cfg.noise_factor * self.std + self.mean  # back at MiniLM's scale
        inputs = inputs + self.time(timestep_embedding(t, self.cfg.width))[:, None]  # [B, L, W]
        h = self.encoder(inputs_embeds=inputs, attention_mask=attn_mask).last_hidden_state  # [B, L, W]
        logits = F.linear(self.head(h[where]), self.encoder.embeddings.word_embeddings.weight[self.out_ids],
                          self.out_bias)  # [N, V_out]
        if self.cfg.evidence:
            logits = logits.float() + self.evidence(x_t[where], t[:, None].expand(where.shape)[where])
        x0 = torch.zeros_like(x_t)
        x0[where] = (logits.float().softmax(-1) @ self.output_embeddings()).to(x0.dtype)  # the expected embedding
        return (x0, logits) if return_logits else x0

    def evidence(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """schedule.log_likelihood of x_t under every output token at alpha_bar(t), in float32 (the terms grow as
        1 / (1 - alpha_bar)): x_t [N, E] points of the diffusion space at times t [N] -> [N, V_out]."""
        with torch.autocast(x_t.device.type, enabled=False):
            return log_likelihood(x_t.float(), self.output_embeddings().float(), self.alpha_bar[t].float()[:, None])

    def logits(self, x0: torch.Tensor) -> torch.Tensor:
        """The continuous family's rounding head: x0 [..., E] -> logits [..., V_out], x0 . output embeddings."""
        return F.linear(x0, self.output_embeddings())


def build_model(cfg: ModelConfig, vocab: Vocab, pretrained: bool = True) -> nn.Module:
    """The denoiser of cfg.family, freshly initialised (pretrained: with cfg.init's weights where it names some)."""
    if cfg.family == "masked":
        return MaskedDiffusEmpModel(cfg, vocab, pretrained)
    if cfg.init == "minilm":
        return ContinuousMiniLMModel(cfg, vocab, pretrained)
    return DiffusEmpModel(cfg, vocab)
