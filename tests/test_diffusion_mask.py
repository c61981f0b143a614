"""The control-range mask on a hand-drawn example: every rule, its size, padding, ablations."""
import pytest
import torch

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.inputs import Role, collate, encode_example
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError

# Response "x y z" segmented as: word 0 = 2 subwords, words 1 and 2 = 1 subword; sentences: words 0-1 | word 2.
ROW = dict(words=["ab", "c", "d"], word_sent=[0, 0, 1], sf=["Desirability", "_", "?"], sent_starts=[0, 5],
           sent_ends=[4, 6], intents=["acknowledging", "questioning"], cm_er=True, cm_ip=False, cm_ex=True,
           subword_ids=[1037, 2497, 1039, 1040], subword_word=[0, 0, 1, 2])
CFG = ModelConfig(emb_dim=8, width=16, layers=1, heads=2, ffn=16, max_len=32, max_context=2, T=10)

# Positions: 0-1 context (the 2 newest tokens), 2 SEP, 3-5 CM, 6-7 IT (sentence 0, 1), 8-10 SF (word 0, 1, 2),
# 11 SEP, 12-13 word 0 (sentence 0), 14 word 1 (sentence 0), 15 word 2 (sentence 1), 16 END.
# Row = query, column = key, 1 = may attend.
#              ctx S CM  IT SF  S resp E
DRAWN = """
0 context      11 1 111 11 111 1 1111 1
1 context      11 1 111 11 111 1 1111 1
2 SEP          11 1 111 11 111 1 1111 1
3 CM er        11 1 100 00 000 1 1111 1
4 CM ip (null) 11 1 010 00 000 1 1111 1
5 CM ex        11 1 001 00 000 1 1111 1
6 IT sent 0    11 1 000 11 000 1 1110 0
7 IT sent 1    11 1 000 11 000 1 0001 0
8 SF word 0    11 1 000 00 111 1 1100 0
9 SF word 1    11 1 000 00 111 1 0010 0
10 SF word 2   11 1 000 00 111 1 0001 0
11 SEP         11 1 111 11 111 1 1111 1
12 w0 s0       11 1 111 10 100 1 1111 1
13 w0 s0       11 1 111 10 100 1 1111 1
14 w1 s0       11 1 111 10 010 1 1111 1
15 w2 s1       11 1 111 01 001 1 1111 1
16 END         11 1 111 00 000 1 1111 1
"""


def drawn() -> torch.Tensor:
    rows = [line.split()[-8:] for line in DRAWN.strip().splitlines()]
    return torch.tensor([[c == "1" for c in "".join(r)] for r in rows])  # [17, 17]


@pytest.fixture(scope="module")
def vocab():
    return Vocab.build([ROW], CFG)


def encode(vocab, cfg=CFG, context=("i am very happy today",)):
    return encode_example(list(context), ROW, vocab, cfg, ROW["subword_ids"])


def test_layout_matches_the_drawing(vocab):
    ex = encode(vocab)
    assert ex.role == [Role.CONTEXT] * 2 + [Role.SEP] + [Role.CM] * 3 + [Role.IT] * 2 + [Role.SF] * 3 + [Role.SEP] \
        + [Role.RESPONSE] * 5
    assert ex.sent[6:11] == [0, 1, 0, 0, 1] and ex.word[8:11] == [0, 1, 2]
    assert ex.sent[12:] == [0, 0, 0, 1, -1] and ex.word[12:] == [0, 0, 1, 2, -1]


def test_mask_equals_the_hand_drawn_matrix(vocab):
    batch = collate([encode(vocab)])
    mask = control_range_mask(batch, "control_range", CFG.signals)
    assert mask.shape == (1, 1, 17, 17)  # size = the sequence
    assert torch.equal(mask[0, 0], drawn())
    assert torch.equal(mask[0, 0], mask[0, 0].T)  # visibility is symmetric


def test_padding_is_excluded_and_gives_no_nan(vocab):
    long = encode(vocab, ModelConfig(**{**CFG.to_dict(), "max_context": 8}))  # 3 more context tokens
    batch = collate([encode(vocab), long])
    mask = control_range_mask(batch, "control_range", CFG.signals)  # [2, 1, 20, 20]
    assert mask.shape == (2, 1, 20, 20) and batch.is_pad[0, 17:].all() and not batch.is_pad[1].any()
    assert torch.equal(mask[0, 0, :17, :17], drawn())
    assert not mask[0, 0, :17, 17:].any() and not mask[0, 0, 17:, :17].any()  # pads neither seen nor seeing
    assert torch.equal(mask[0, 0, 17:, 17:], torch.eye(3, dtype=torch.bool))  # a pad row sees only itself
    model = DiffusEmpModel(CFG, vocab)
    x0 = model(torch.randn(2, 20, CFG.emb_dim), torch.tensor([3, 7]), mask)
    assert torch.isfinite(x0).all()


def test_full_mask_is_the_wo_mask_ablation(vocab):
    batch = collate([encode(vocab), encode(vocab, context=())])  # second: no context, 2 pads
    mask = control_range_mask(batch, "full", CFG.signals)
    assert mask[0, 0].all()
    assert mask[1, 0, :15, :15].all() and not mask[1, 0, :15, 15:].any()


@pytest.mark.parametrize("dropped", [("cm",), ("it",), ("sf",), ("cm", "it", "sf")])  # the last: no_controls
def test_signal_ablation_removes_tokens_rows_and_columns(vocab, dropped):
    cfg = ModelConfig(**{**CFG.to_dict(), "signals": [s for s in CFG.signals if s not in dropped]})
    gone = [i for s in dropped for i in {"cm": [3, 4, 5], "it": [6, 7], "sf": [8, 9, 10]}[s]]
    keep = [i for i in range(17) if i not in gone]
    ex = encode(vocab, cfg)
    assert len(ex) == 17 - len(gone)
    mask = control_range_mask(collate([ex]), cfg.mask, cfg.signals)[0, 0]
    assert torch.equal(mask, drawn()[keep][:, keep])
    with pytest.raises(PipelineError, match="encode the inputs with the model's config"):
        control_range_mask(collate([encode(vocab)]), cfg.mask, cfg.signals)
