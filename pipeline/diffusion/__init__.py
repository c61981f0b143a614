"""The DiffusEmp model (paper sections 3.2-3.3): a continuous text diffusion model with partial noising and
control-range masking.

Read in this order:
- config.py   ModelConfig: every architecture / diffusion / ablation knob, from params.yaml.
- vocab.py    Vocab: WordPiece ids + our own control and special tokens; the (reduced) output vocabulary.
- inputs.py   encode_example / collate: context | SEP | CM IT.. SF.. | SEP | response END | pad, with per-position
              role, sentence and word ids.
- mask.py     control_range_mask: the boolean attention mask built from role / sentence / word ids.
- schedule.py Schedule: the sqrt noise schedule, q_sample, the x0-parameterised posterior, correct respacing.
- model.py    DiffusEmpModel: embedding, transformer denoiser predicting x0, rounding head tied to the embedding.
- losses.py   training_loss: paper Eq. 7 on response positions (+ rounding cross-entropy as an option).
- sampler.py  sample / decode: ancestral sampling over T or respaced steps.
"""
