"""The DiffusEmp model (paper sections 3.2-3.3): text diffusion with partial noising and control-range masking, in two
families (ModelConfig.family): the paper's continuous diffusion over embeddings, and masked (absorbing-state) discrete
diffusion over WordPieces.

A leaf: it imports nothing of the taggers, the judges or the metrics. Read in this order:
- config.py     ModelConfig / TrainConfig / SampleConfig: the model, train and sample sections of params.yaml.
- vocab.py      Vocab: WordPiece ids + our own control and special tokens; the (reduced) output vocabulary.
- inputs.py     encode_example / encode_rows / collate: context | SEP | CM IT.. SF.. | SEP | response END | pad, with
                per-position role, sentence and word ids; free_levels: a row that gives only some control levels.
- mask.py       control_range_mask: the boolean attention mask built from role / sentence / word ids.
- schedule.py   the forward processes: the sqrt noise schedule (q_sample, posterior, respacing), and `hide`.
- model.py      the denoisers of both families and build_model.
- sampler.py    sample / decode: ancestral (continuous) or confidence-ordered unmasking (masked); from noise or
                from a candidate response (retrieve-and-edit); classifier-free guidance on the given levels.
- generate.py   draw: several seeded draws per encoded control row, batched by length; complete: which rows hold
                their whole response.
- checkpoint.py the training state on disk and the trained model folder (save_model / load_model).
Training only (inference imports none of these):
- losses.py     training_loss of each family.
- ema.py        the EMA of the weights (torch's AveragedModel).
- evaluate.py   held-out loss, one-shot accuracy per quarter of t, sampling accuracy of the EMA weights.
- trainer.py    the loop: data order, condition dropout over the control levels, checkpoints, DDP.
Above it: pipeline/rerank.py (which draw is kept), pipeline/decoder.py (draw + rerank in one call), pipeline/subset.py
(the scored examples), pipeline/experiments/ (the benchmark and the sweeps).
"""
