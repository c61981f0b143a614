"""The Table 2 metrics, each a pure function of token lists, labels or model scores (definitions: docs/metrics.md)."""
