"""The training loop (seeded sharded data order, exact resume after a kill, identical DDP replicas under gloo) and the
generation helpers of the sample stage."""
import dataclasses
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.decoder import Decoder
from pipeline.diffusion import evaluate, trainer
from pipeline.diffusion.config import ModelConfig, SampleConfig
from pipeline.diffusion.inputs import collate
from pipeline.diffusion.inputs import Role
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.checkpoint import load_model, save_model
from pipeline.diffusion.config import TrainConfig
from pipeline.diffusion.ema import ema_model
from pipeline.diffusion.inputs import encode_rows
from pipeline.diffusion.trainer import DataOrder, train
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.params import check
from pipeline.rerank import Judges, relevance_pick
from pipeline.segment import wordpiece_align
from pipeline.subset import eval_subset

CFG = ModelConfig(emb_dim=16, width=32, layers=2, heads=2, ffn=64, dropout=0.1, max_len=48, max_context=8, T=50)
SENTENCES = [
    (["i am so sorry .", "what happened ?"], ["sympathizing", "questioning"], (True, False, True)),
    (["that sounds great !"], ["acknowledging"], (True, False, False)),
    (["you will do fine ."], ["encouraging"], (False, True, False)),
    (["good luck with it .", "tell me more"], ["wishing", "questioning"], (False, False, True)),
]


def control_row(sentences: list[str], intents: list[str], cm: tuple[bool, bool, bool]) -> dict:
    """A controls.parquet-like row for whitespace-split sentences (every 3rd word gets a frame, the rest "_")."""
    words, word_sent = [], []
    for s, text in enumerate(sentences):
        words += text.split()
        word_sent += [s] * len(text.split())
    ids, word_of = wordpiece_align(words)
    return {"context": ["my dog got sick", "oh no"], "words": words, "word_sent": word_sent,
            "sf": ["Emotion" if i % 3 == 0 else "_" for i in range(len(words))], "intents": intents,
            "cm_er": cm[0], "cm_ip": cm[1], "cm_ex": cm[2], "subword_ids": ids, "subword_word": word_of}


def tiny_setup():
    rows = [control_row(*s) for s in SENTENCES] * 2  # 8 examples
    vocab = Vocab.build(rows, CFG)
    return vocab, encode_rows(rows, vocab, CFG), Schedule(CFG.T)


def fresh_model(vocab) -> DiffusEmpModel:
    torch.manual_seed(0)
    return DiffusEmpModel(CFG, vocab)


TCFG = TrainConfig(steps=8, batch_size=4, lr=1e-3, warmup_steps=3, lr_decay="linear", ema_decay=0.9, grad_clip=1.0,
                   checkpoint_every_s=0, checkpoint_every_steps=4, log_every=2)


def test_lr_warms_up_then_decays_linearly_to_zero():
    cfg = TrainConfig(steps=10, batch_size=1, lr=1e-3, warmup_steps=4, lr_decay="linear")
    # step s (0-based): lr * min(1, (s + 1) / 4) * (1 - s / 10)
    assert [round(cfg.lr_at(s), 9) for s in (0, 1, 3, 5, 9)] == [2.5e-4, 4.5e-4, 7e-4, 5e-4, 1e-4]
    assert TrainConfig(steps=10, batch_size=1, lr=1e-3).lr_at(7) == 1e-3  # no warm-up, no decay: constant
    with pytest.raises(PipelineError, match=r"`train.lr_decay` is 'cosine', expected one of 'none', 'linear'"):
        check({"steps": 10, "batch_size": 1, "lr_decay": "cosine"}, TrainConfig, "train", defaults=True)


def test_data_order_shards_partition_the_single_process_batch_and_epochs_are_permutations():
    single = DataOrder(10, 4, seed=3)
    ranks = [DataOrder(10, 4, seed=3, rank=r, world=2) for r in range(2)]
    for step in range(6):  # 2 full batches per epoch of 10: 3 epochs
        shares = [o.indices(step) for o in ranks]
        assert not set(shares[0]) & set(shares[1])
        assert sorted(shares[0] + shares[1]) == sorted(single.indices(step))
    epoch0 = single.indices(0) + single.indices(1)
    assert len(set(epoch0)) == 8
    assert epoch0 != single.indices(2) + single.indices(3)  # a fresh permutation per epoch
    other_seed = DataOrder(10, 4, seed=4)
    assert [other_seed.indices(s) for s in range(2)] != [single.indices(s) for s in range(2)]


def test_length_grouped_batches_sort_each_run_of_batches_by_length():
    n, size, group = 24, 4, 3  # two runs of three batches per epoch
    lengths = [(7 * i) % 24 for i in range(n)]  # distinct lengths
    grouped = DataOrder(n, size, seed=3, lengths=lengths, group_batches=group)
    plain = DataOrder(n, size, seed=3)
    for epoch in range(2):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(3 * 1_000_003 + epoch)).tolist()
        runs = [sorted(perm[i:i + size * group], key=lambda j: lengths[j]) for i in range(0, n, size * group)]
        expected = {tuple(run[b:b + size]) for run in runs for b in range(0, len(run), size)}
        batches = [tuple(grouped.indices(epoch * 6 + k)) for k in range(6)]
        assert set(batches) == expected  # each batch: neighbours in length within its run of the permutation
        assert sorted(sum(batches, ())) == sorted(sum((plain.indices(epoch * 6 + k) for k in range(6)), []))
    ranks = [DataOrder(n, size, seed=3, rank=r, world=2, lengths=lengths, group_batches=group) for r in range(2)]
    assert all(sorted(ranks[0].indices(s) + ranks[1].indices(s)) == sorted(grouped.indices(s)) for s in range(12))
    assert DataOrder(n, size, seed=3, lengths=lengths, group_batches=0).indices(0) == plain.indices(0)


@pytest.mark.parametrize("bf16", [False, True])
def test_resume_after_a_kill_continues_exactly(tmp_path, monkeypatch, bf16):
    torch.set_num_threads(1)
    vocab, examples, schedule = tiny_setup()
    cfg = TrainConfig(**{**TCFG.__dict__, "bf16": bf16})
    straight = train(fresh_model(vocab), examples, schedule, cfg, seed=1, checkpoint=tmp_path / "a.pt",
                     fingerprint={})
    if bf16:  # autocast did run: the same steps in float32 end elsewhere
        fp32 = train(fresh_model(vocab), examples, schedule, TCFG, seed=1, checkpoint=tmp_path / "c.pt",
                     fingerprint={})
        assert not torch.equal(fp32.ema["embedding.weight"], straight.ema["embedding.weight"])

    # Kill the second run in its 7th step: the step-4 checkpoint survives, steps 5-6 are lost and must be redone.
    calls, real_loss = [], trainer.training_loss

    def dying_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer, "training_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        train(fresh_model(vocab), examples, schedule, cfg, seed=1, checkpoint=tmp_path / "b.pt", fingerprint={})
    assert torch.load(tmp_path / "b.pt", weights_only=False)["step"] == 4
    monkeypatch.setattr(trainer, "training_loss", real_loss)

    model = fresh_model(vocab)
    resumed = train(model, examples, schedule, cfg, seed=1, checkpoint=tmp_path / "b.pt", fingerprint={})
    assert resumed.summary["resumed_from_step"] == 4
    for k, v in straight.ema.items():
        assert torch.equal(v, resumed.ema[k]), k
    assert not torch.equal(straight.ema["embedding.weight"], fresh_model(vocab).embedding.weight)  # it did train
    timing = ("examples_per_s", "minutes")
    strip = [{k: v for k, v in h.items() if k not in timing} for h in straight.history]
    assert strip == [{k: v for k, v in h.items() if k not in timing} for h in resumed.history]


def test_a_checkpoint_of_other_settings_or_data_is_not_resumed(tmp_path):
    torch.set_num_threads(1)
    vocab, examples, schedule = tiny_setup()
    cfg = TrainConfig(**{**TCFG.__dict__, "steps": 2})
    train(fresh_model(vocab), examples, schedule, cfg, seed=1, checkpoint=tmp_path / "c.pt", fingerprint={"lr": 1})
    again = train(fresh_model(vocab), examples, schedule, cfg, seed=1, checkpoint=tmp_path / "c.pt",
                  fingerprint={"lr": 2})
    assert again.summary["resumed_from_step"] == 0
    longer = TrainConfig(**{**TCFG.__dict__, "steps": 3})  # same settings, more steps: continue the finished run
    assert train(fresh_model(vocab), examples, schedule, longer, seed=1, checkpoint=tmp_path / "c.pt",
                 fingerprint={"lr": 2}).summary["resumed_from_step"] == 2
    other_data = examples[::-1]  # same settings, other data
    assert train(fresh_model(vocab), other_data, schedule, longer, seed=1, checkpoint=tmp_path / "c.pt",
                 fingerprint={"lr": 2}).summary["resumed_from_step"] == 0


def test_saved_model_round_trips(tmp_path):
    vocab, _, _ = tiny_setup()
    model = fresh_model(vocab)
    save_model(tmp_path / "m", model.state_dict(), CFG, vocab)
    loaded, loaded_vocab = load_model(tmp_path / "m")
    assert loaded_vocab.tokens == vocab.tokens and loaded.cfg == CFG
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def _ddp_worker(rank: int, world: int, out_dir: str, vocab: Vocab, examples: list) -> None:
    torch.set_num_threads(1)
    # A file rendezvous: no TCP port to pick, so no race with another process grabbing a "free" one.
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out_dir, 'rendezvous')}", rank=rank,
                            world_size=world)
    schedule = Schedule(CFG.T)
    torch.manual_seed(rank)  # different inits on purpose: DDP must start every replica from rank 0's weights
    model = DiffusEmpModel(CFG, vocab)
    cfg = TrainConfig(**{**TCFG.__dict__, "steps": 3})
    result = train(model, examples, schedule, cfg, seed=1, checkpoint=os.path.join(out_dir, "ddp.pt"), fingerprint={})
    torch.save({"model": model.state_dict(), "ema": result.ema}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_gloo_ranks_keep_identical_replicas(tmp_path):
    vocab, examples, _ = tiny_setup()  # encoded here: the workers need not load the tokenizer
    mp.spawn(_ddp_worker, args=(2, str(tmp_path), vocab, examples), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for part in ("model", "ema"):
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), (part, k)
    assert not torch.equal(r0["model"]["transformer.blocks.0.qkv.weight"],
                           fresh_model(vocab).transformer.blocks[0].qkv.weight)
    assert torch.load(tmp_path / "ddp.pt", weights_only=False)["step"] == 3


def test_eval_subset_is_seeded_and_order_free():
    ids = [f"c:{i}" for i in range(20)]
    pick = eval_subset(ids, 5, seed=7)
    assert len(pick) == 5 and pick == sorted(pick) and set(pick) <= set(ids)
    assert eval_subset(ids[::-1] + ids[:3], 5, seed=7) == pick  # same set of ids -> same subset
    assert eval_subset(ids, 5, seed=8) != pick
    assert eval_subset(ids, None, seed=7) == sorted(ids)


def generate(model, vocab, rows, cfg, seed, edit=False, judges=Judges()) -> list[str]:
    """One kept text per row, each row alone (the decoder with group 1)."""
    return [text for _, text in Decoder(model, vocab, cfg, judges)(rows, seed, edit)]


def test_generate_returns_one_reproducible_text_per_row_in_order():
    torch.set_num_threads(1)
    vocab, _, _ = tiny_setup()
    rows = [control_row(*s) for s in SENTENCES]
    model = fresh_model(vocab).eval()
    cfg = SampleConfig(split="test", subset=None, steps=3, clamp=True, temperature=0.0, solver="ancestral",
                       edit_strength=0.5, num_samples=1, rerank="none", candidates=None, edit_candidates=None, batch_size=3, bf16=False)
    texts = generate(model, vocab, rows, cfg, seed=5)
    assert len(texts) == len(rows) and all(isinstance(t, str) for t in texts)
    assert generate(model, vocab, rows, cfg, seed=5) == texts
    alone = generate(model, vocab, rows[-1:], SampleConfig(**{**cfg.__dict__, "batch_size": 1}), seed=5)
    assert len(alone) == 1


def test_held_out_sampling_scores_regenerated_responses_position_by_position(monkeypatch):
    vocab, examples, schedule = tiny_setup()
    model = fresh_model(vocab)
    gold = [[i for i, r in zip(e.ids, e.role) if r == Role.RESPONSE][:-1] for e in examples[:3]]  # without END
    # Example 0 exact; example 1 one token wrong and one missing; example 2 two extra tokens.
    fake = [gold[0], [gold[1][0] + 1] + gold[1][1:-1], gold[2] + [7, 7]]
    calls = []
    monkeypatch.setattr(evaluate, "sample", lambda *args, **kwargs: calls.append(kwargs) or fake)
    out, texts = evaluate.held_out_sampling(model, ema_model(model, 0.9), schedule, examples[:3], 3, steps=5, seed=0,
                                            decoder="clamped")
    assert len(texts) == 3
    n1, n2 = len(gold[1]), len(gold[2])
    expected = (1 + (n1 - 2) / n1 + n2 / (n2 + 2)) / 3
    assert out == {"examples": 3, "steps": 5, "decoder": "clamped", "token_accuracy": round(expected, 4),
                   "exact": round(1 / 3, 4)}
    assert {k: calls[0][k] for k in ("temperature", "solver", "clamp")} == evaluate.DECODERS["clamped"]


def test_several_draws_are_reranked_by_mbr_and_editing_starts_from_the_candidate():
    torch.set_num_threads(1)
    vocab, _, _ = tiny_setup()
    rows = [control_row(*s) for s in SENTENCES]
    model = fresh_model(vocab).eval()
    one = SampleConfig(split="test", subset=None, steps=3, clamp=False, temperature=0.0, solver="ancestral",
                       edit_strength=0.5, num_samples=1, rerank="none", candidates=None, edit_candidates=None, batch_size=4, bf16=False)
    three = SampleConfig(**{**one.__dict__, "num_samples": 3, "rerank": "mbr"})
    picked = generate(model, vocab, rows, three, seed=5)
    assert len(picked) == len(rows) and generate(model, vocab, rows, three, seed=5) == picked
    # rerank fluency: the draw the language model scores lowest, per row (here: the shortest text, the first on ties)
    scored = []
    fluency = SampleConfig(**{**three.__dict__, "rerank": "fluency"})
    nll = lambda texts: scored.append(list(texts)) or np.array([len(t) if t else np.nan for t in texts], dtype=float)
    most_fluent = generate(model, vocab, rows, fluency, seed=5, judges=Judges(fluency_nll=nll))
    assert len(scored) == 1 and len(scored[0]) == 3 * len(rows)  # one call, every draw of every row, draw-major
    draws = [scored[0][j * len(rows):(j + 1) * len(rows)] for j in range(3)]
    assert len({tuple(d) for d in draws}) > 1  # three different draws were scored
    assert most_fluent == [min((draw[i] for draw in draws), key=lambda t: len(t) if t else math.inf)
                           for i in range(len(rows))]
    with pytest.raises(PipelineError, match="fluency_nll"):
        generate(model, vocab, rows, fluency, seed=5)
    # rerank controls: the draw that agrees best with its row (here: a text of even length agrees, an odd one does
    # not), the most fluent of those on ties
    controls = SampleConfig(**{**three.__dict__, "rerank": "controls"})
    agree = lambda rs, texts: np.array([float(len(t) % 2 == 0) for t in texts])
    kept = generate(model, vocab, rows, controls, seed=5, judges=Judges(nll, agree))
    assert kept == [min((draw[i] for draw in draws), key=lambda t: (len(t) % 2, len(t) if t else math.inf))
                    for i in range(len(rows))]
    with pytest.raises(PipelineError, match="taggers"):
        generate(model, vocab, rows, controls, seed=5, judges=Judges(fluency_nll=nll))
    # rerank relevance: each row's draws scored as a [draws, rows] matrix (here relevance = the text's length)
    relevant = SampleConfig(**{**three.__dict__, "rerank": "relevance"})
    length = lambda rs, texts: np.array([float(len(t)) for t in texts])
    kept = generate(model, vocab, rows, relevant, seed=5, judges=Judges(nll, relevance=length))
    matrix = np.array([[len(t) if t else np.nan for t in draw] for draw in draws])
    assert kept == [draws[d][i] for i, d in enumerate(relevance_pick(matrix, np.nan_to_num(matrix)))]
    with pytest.raises(PipelineError, match="sentence encoder"):
        generate(model, vocab, rows, relevant, seed=5, judges=Judges(fluency_nll=nll))
    # Strength 1/3 of 3 respaced steps: one reverse step, from the candidate's embeddings noised to that step.
    seen, forward = [], model.forward
    model.forward = lambda x, t, mask, prev=None, where=None: (seen.append((x.clone(), t.clone()))
                                                               or forward(x, t, mask, prev, where))
    generate(model, vocab, rows, dataclasses.replace(one, edit_strength=1 / 3), seed=5, edit=True)
    schedule = Schedule(CFG.T).respace(3)
    (x, t), = seen
    batch = collate(encode_rows(sorted(rows, key=lambda r: len(r["subword_ids"])), vocab, CFG))
    assert (t == schedule.timesteps[1]).all()
    resp = batch.is_response
    noise = (x[resp] - schedule.alpha_bar[1].sqrt().float() * model.embed(batch.ids).detach()[resp]).std()
    assert float(noise) == pytest.approx(float((1 - schedule.alpha_bar[1]).sqrt()), rel=0.2)
