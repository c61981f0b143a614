"""Table 2's baselines, trained on the same ED pairs and scored like every system (docs/baselines.md).

- trs: a transformer encoder-decoder trained from scratch (pipeline.baselines.seq2seq), greedy decoding;
- transfertransfo: SmolLM2-135M fine-tuned on (context, response) (pipeline.baselines.causal_lm), nucleus sampling;
- transfertransfo_controls: the same fine-tune with the response's control signals written as a text prefix
  (CTRL-style), given the retrieved candidate's controls at inference, as diffusemp is.
"""
SYSTEMS: tuple[str, ...] = ("trs", "transfertransfo", "transfertransfo_controls")
