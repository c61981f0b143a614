"""Measurements of the diffusion model off the default DAG's outputs: throughput (bench.py, stage `bench`), quality
per training minute of candidate designs (sweep.py) and the decoding settings (decoding_sweep.py)."""
