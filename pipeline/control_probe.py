"""Does a trained model read its CM control? The two probes of issue 26 (item 4) for a signal whose removal did not
lower its own metric; docs/diffusion.md ("What the ablations say") holds the findings.

Random CM (`random_cm`, `cm_probe`): the scored examples' control rows decoded twice by the same Decoder and seed,
once with their own CM and once with each row's CM (its three mechanism booleans) replaced by another combination
drawn from the candidate pool's (at their frequencies there, the row's own excluded). The CM tagger of ACC-CM re-tags
both outputs; per example, the share of the three mechanisms on which an output and a CM agree (ACC-CM is its mean):
- true:   the outputs of the true CM   against the true CM (ACC-CM as stage score computes it);
- follow: the outputs of the random CM against the random CM (the model follows the CM it is given);
- chance: the outputs of the true CM   against the random CM (what outputs that never saw that CM agree with it);
- kept:   the outputs of the random CM against the true CM (what the context and the other signals still carry).
follow - chance > 0, with its paired bootstrap 95% interval over the examples, means that the CM tokens move the output.

Attention mass (`attention_mass`): at the sampler's first step (every response position hidden), per layer, the share
of a response query's attention that goes to the keys of each role (mean over heads, response positions and
examples), beside the share of the keys it may see that have that role (what attention spread evenly would give).
"""
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from pipeline.bootstrap import interval
from pipeline.decoder import Decoder
from pipeline.diffusion.inputs import Example, Role, collate
from pipeline.diffusion.mask import control_range_mask
from pipeline.errors import PipelineError
from pipeline.metrics.control import CM_COLUMNS, cm_matches
from pipeline.progress import progress


def cm_of(rows: Sequence[Mapping]) -> np.ndarray:
    """Control rows -> their CM, bool [N, 3] (columns labels.MECHANISMS)."""
    return np.array([[bool(r[c]) for c in CM_COLUMNS] for r in rows], dtype=bool).reshape(-1, len(CM_COLUMNS))


def random_cm(rows: Sequence[Mapping], pool: np.ndarray, seed: int) -> list[dict]:
    """rows with each CM replaced by a combination drawn from pool (bool [M, 3]: the candidates' CM) at its frequency
    there, never the row's own -> new rows (the same otherwise)."""
    combos, counts = np.unique(np.asarray(pool, bool), axis=0, return_counts=True)  # [C, 3], [C]
    if len(combos) < 2:
        raise PipelineError("the candidate pool holds one CM combination only: there is no other CM to give")
    rng = np.random.default_rng(seed)
    out = []
    for row, own in zip(rows, cm_of(rows)):
        weight = np.where((combos == own).all(1), 0, counts).astype(float)
        pick = combos[rng.choice(len(combos), p=weight / weight.sum())]
        out.append({**row, **{c: bool(v) for c, v in zip(CM_COLUMNS, pick)}})
    return out


def cm_probe(decoder: Decoder, rows: Sequence[Mapping], pool: np.ndarray, group: int, seed: int,
             tag_cm: Callable[[list[list[str]], list[str]], np.ndarray], resamples: int) -> dict:
    """rows: the control rows stage sample decodes (`pipeline.subset.control_rows`, `group` per example); pool: the
    candidates' CM, bool [M, 3]; tag_cm: (contexts, responses) -> tagged CM, bool [n, 3] (the score stage's tagger
    and threshold) -> {"examples", "true", "follow", "chance", "kept" (ACC-CM x 100), "follow_minus_chance",
    "true_minus_follow" (x 100, with "low" / "high"), "outputs" (n per side that changed)}."""
    given = random_cm(rows, pool, seed)
    sides = {}
    for name, source in (("true", rows), ("random", given)):
        kept = decoder(source, seed, group=group)  # (row index, text) per example
        idx = [i for i, _ in kept]
        texts = [t for _, t in kept]
        sides[name] = (idx, texts, tag_cm([list(rows[i]["context"]) for i in idx], texts))
    (ti, t_texts, t_tags), (ri, r_texts, r_tags) = sides["true"], sides["random"]
    true_cm, given_cm = cm_of(rows), cm_of(given)
    per = {  # [n examples]: the share of the three mechanisms that agree
        "true": cm_matches(t_tags, true_cm[ti]).mean(1), "follow": cm_matches(r_tags, given_cm[ri]).mean(1),
        "chance": cm_matches(t_tags, given_cm[ti]).mean(1), "kept": cm_matches(r_tags, true_cm[ri]).mean(1)}
    out = {"examples": len(ti), **{k: round(100 * float(v.mean()), 2) for k, v in per.items()}}
    for a, b in (("follow", "chance"), ("true", "follow")):
        out[f"{a}_minus_{b}"] = {k: round(100 * v, 2) for k, v in interval(per[a] - per[b], resamples, seed).items()}
    out["outputs_changed"] = int(sum(a != b for a, b in zip(t_texts, r_texts)))
    return out


ROLES = {"context": (Role.CONTEXT, Role.SEP), "cm": (Role.CM,), "it": (Role.IT,), "sf": (Role.SF,),
         "response": (Role.RESPONSE,)}


@torch.no_grad()
def attention_mass(model: torch.nn.Module, examples: Sequence[Example], batch_size: int = 16) -> dict:
    """A masked-family model on the MiniLM encoder (cfg.init "minilm") and encoded control rows (inference: response
    positions hidden) -> {"layers": [{role: attention share}] per layer, "mean": {role: share over the layers},
    "keys": {role: share of the visible keys}}; roles as ROLES (context includes the separators)."""
    cfg = model.cfg
    if cfg.family != "masked" or cfg.init != "minilm":
        raise PipelineError("the attention probe reads the MiniLM encoder's attention: a masked model with "
                            f"init minilm, not family {cfg.family!r} with init {cfg.init!r}")
    role_of = torch.zeros(len(Role), len(ROLES))  # [roles, groups]: Role -> its ROLES group
    for j, group in enumerate(ROLES.values()):
        role_of[list(group), j] = 1.0
    encoder, was = model.encoder, model.encoder.config._attn_implementation
    encoder.set_attn_implementation("eager")  # SDPA does not return the attention probabilities
    model.eval()
    mass, keys, queries = torch.zeros(cfg.layers, len(ROLES)), torch.zeros(len(ROLES)), 0
    try:
        chunks = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
        for chunk in progress(chunks, desc="attention", every_s=30.0):
            batch = collate(chunk)
            attn = control_range_mask(batch, cfg.mask, cfg.signals)  # [B, 1, L, L]
            hidden = batch.is_response  # [B, L]: the queries probed
            ids = torch.where(hidden, torch.full_like(batch.ids, model.mask_id), batch.ids)
            additive = torch.zeros(attn.shape).masked_fill(~attn, torch.finfo(torch.float32).min)  # eager adds it
            probs = encoder(input_ids=ids, attention_mask=additive, output_attentions=True).attentions  # [B,H,L,L] each
            group = role_of[batch.role]  # [B, L, groups]
            for layer, p in enumerate(probs):
                mass[layer] += (p.float().mean(1) @ group)[hidden].sum(0)  # [groups]
            visible = attn[:, 0].float() @ group  # [B, L, groups]: visible keys of each group
            keys += (visible / visible.sum(-1, keepdim=True))[hidden].sum(0)
            queries += int(hidden.sum())
    finally:
        encoder.set_attn_implementation(was)

    def by_role(row: torch.Tensor) -> dict[str, float]:
        return {role: round(float(v), 4) for role, v in zip(ROLES, row)}

    per_layer = mass / queries  # [layers, groups]
    return {"layers": [by_role(row) for row in per_layer], "mean": by_role(per_layer.mean(0)),
            "keys": by_role(keys / queries)}
