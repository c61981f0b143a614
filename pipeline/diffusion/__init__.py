"""The DiffusEmp model (paper sections 3.2-3.3): text diffusion with partial noising and control-range masking, in two
families (ModelConfig.family): the paper's continuous diffusion over embeddings, and masked (absorbing-state) discrete
diffusion over WordPieces.

Read in this order:
- config.py     ModelConfig / TrainConfig: the model and train sections of params.yaml.
- vocab.py      Vocab: WordPiece ids + our own control and special tokens; the (reduced) output vocabulary.
- inputs.py     encode_example / encode_rows / collate: context | SEP | CM IT.. SF.. | SEP | response END | pad, with
                per-position role, sentence and word ids.
- mask.py       control_range_mask: the boolean attention mask built from role / sentence / word ids.
- schedule.py   the forward processes: the sqrt noise schedule (q_sample, posterior, respacing), and `hide`.
- model.py      the denoisers of both families and build_model.
- sampler.py    sample / decode: ancestral (continuous) or confidence-ordered unmasking (masked); from noise or
                from a candidate response (retrieve-and-edit).
- generate.py   SampleConfig (the sample section); batched generation from control rows, several draws reranked
                (MBR or fluency); the scored test subset.
- checkpoint.py the training state on disk and the trained model folder (save_model / load_model).
Training only (inference imports none of these):
- losses.py     training_loss of each family.
- ema.py        the EMA of the weights (torch's AveragedModel).
- evaluate.py   held-out loss, one-shot accuracy per quarter of t, sampling accuracy of the EMA weights.
- trainer.py    the loop: data order, checkpoints, DDP.
- sweep.py      quality per training minute of candidate designs.
- bench.py      throughput figures (it times training steps, so it needs losses.py).
"""
