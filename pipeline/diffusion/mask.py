"""The control-range mask (paper Eq. 3-6, Figure 3): which keys each query position may attend to.

mask[b, 0, q, k] = True means position q may attend to position k (the torch SDPA boolean convention). The paper's
"token i controls token j" becomes: j attends to i. Rules (visibility is symmetric: a signal also reads the tokens it
controls, as in the authors' code, so a control token is contextualised by its range):
- context and separators: see every token and are seen by every token (the authors let context see everything; the
  paper does not say; the context is the condition of everything, so every position reads it);
- a CM token controls every response token (and END);
- an IT token controls the response subwords of its sentence;
- an SF token controls exactly the subwords of its word;
- tokens of the same level see each other: IT-IT, SF-SF, response-response (END included);
- every position sees itself; nothing else (no CM-CM across slots, no CM-IT, CM-SF, IT-SF).
A level that a row does not give (inputs.free_levels) has no tokens, and its response positions belong to no sentence
(IT free) or no word (SF free): the same rules then leave them the context, CM and the levels that are given.
Padding: no position attends to a pad key; a pad query attends only to itself, so its softmax has one finite entry
(no NaN) and its output is never read.
mode "full" (the "w/o Mask" ablation): every non-pad position sees every non-pad position.
"""
from collections.abc import Sequence

import torch

from pipeline.diffusion.config import MASKS, SIGNALS
from pipeline.diffusion.inputs import SIGNAL_ROLE, Batch, Role
from pipeline.errors import PipelineError


def control_range_mask(batch: Batch, mode: str = "control_range", signals: Sequence[str] = SIGNALS) -> torch.Tensor:
    """Boolean attention mask [B, 1, L, L] (True = may attend) from batch.role / .sent / .word ([B, L] each).

    signals: the model's cfg.signals. Ablated signals have no tokens (encode_example drops them); a batch holding
    tokens of a signal the model was not configured with was encoded with another config, which is an error.
    """
    if mode not in MASKS:
        raise PipelineError(f"mask mode {mode!r} is not one of {MASKS}")
    role, sent, word = batch.role, batch.sent, batch.word
    stray = [s for s, r in SIGNAL_ROLE.items() if s not in signals and bool((role == r).any())]
    if stray:
        raise PipelineError(f"batch holds {stray} tokens but the model's signals are {list(signals)}: encode the "
                            "inputs with the model's config")
    L = role.shape[1]
    eye = torch.eye(L, dtype=torch.bool, device=role.device)  # [L, L]
    real = role != Role.PAD  # [B, L]
    both_real = real[:, :, None] & real[:, None, :]  # [B, L, L]
    if mode == "full":
        return (both_real | eye)[:, None]

    rq, rk = role[:, :, None], role[:, None, :]  # [B, L, 1], [B, 1, L]: query and key roles
    same_sent = sent[:, :, None] == sent[:, None, :]  # [B, L, L]
    same_word = word[:, :, None] == word[:, None, :]
    is_ctx = (role == Role.CONTEXT) | (role == Role.SEP)

    def pair(a: Role, b: Role) -> torch.Tensor:  # a-query with b-key, or b-query with a-key: [B, L, L]
        return ((rq == a) & (rk == b)) | ((rq == b) & (rk == a))

    allowed = (
        is_ctx[:, :, None] | is_ctx[:, None, :]  # context and separators: global
        | pair(Role.CM, Role.RESPONSE)  # CM <-> every response token
        | (pair(Role.IT, Role.RESPONSE) & same_sent)  # IT <-> its sentence (END has sent -1: no IT)
        | (pair(Role.SF, Role.RESPONSE) & same_word)  # SF <-> its word's subwords
        | ((rq == rk) & ((rq == Role.IT) | (rq == Role.SF) | (rq == Role.RESPONSE)))  # same level
    )
    return ((allowed & both_real) | eye)[:, None]  # [B, 1, L, L]
