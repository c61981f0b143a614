"""Declared Parquet schemas of every table the stages hand to each other. The contract between stages lives here.

Character spans are [start, end) offsets into the response text. Word lists are the word segmentation that every
consumer shares (spaCy tokens, `pipeline.segment`); WordPiece subwords are aligned to those words by index.
"""
import pyarrow as pa

_str, _i32, _f32, _bool = pa.string(), pa.int32(), pa.float32(), pa.bool_()
_strs, _i32s, _f32s = pa.list_(_str), pa.list_(_i32), pa.list_(_f32)

# data/prepared/dialogues.parquet: one row per listener turn. `turn` is the 0-based index of the response
# among the conversation's utterances; `context` holds the utterances before it, oldest first.
DIALOGUES = pa.schema([
    ("example_id", _str),  # f"{conv_id}:{turn}", unique across splits
    ("split", _str),  # train | valid | test
    ("conv_id", _str),
    ("turn", _i32),
    ("emotion", _str),  # gold ED emotion label of the conversation (pipeline.labels.EMOTIONS)
    ("situation", _str),
    ("context", _strs),
    ("response", _str),
])

# data/embeddings/texts.parquet: the distinct texts whose MiniLM vectors are row-aligned in data/embeddings/vectors.npy.
EMBEDDING_TEXTS = pa.schema([("text", _str)])

# The spaCy analysis of a response: words (with lemma and coarse POS) and sentences.
SEGMENT_FIELDS = [
    ("words", _strs),
    ("word_starts", _i32s),
    ("word_ends", _i32s),
    ("lemmas", _strs),
    ("pos", _strs),  # spaCy coarse (universal) POS
    ("sent_starts", _i32s),
    ("sent_ends", _i32s),
]
SEGMENTS = pa.schema([("example_id", _str), *SEGMENT_FIELDS])

# The control signals of one response, as every later stage reads them (training: gold; inference: a candidate's).
CONTROL_FIELDS = [
    ("words", _strs),
    ("word_sent", _i32s),  # sentence index of each word
    ("sf", _strs),  # one SF token per word: a FrameNet frame, a special token or "_" (pipeline.labels)
    ("sent_starts", _i32s),
    ("sent_ends", _i32s),
    ("intents", _strs),  # one intent per sentence (pipeline.labels.INTENTS)
    ("cm_er", _bool),
    ("cm_ip", _bool),
    ("cm_ex", _bool),
    ("subword_ids", _i32s),  # BERT-uncased WordPiece ids of the words, in order
    ("subword_word", _i32s),  # word index of each subword
]
CONTROL_NAMES = [name for name, _ in CONTROL_FIELDS]

# data/signals/tags.parquet: CM, IT and emotion tags of every dialogues row.
TAGS = pa.schema([
    ("example_id", _str),
    ("cm_er", _bool), ("cm_ip", _bool), ("cm_ex", _bool),
    ("p_er", _f32), ("p_ip", _f32), ("p_ex", _f32),
    ("sent_starts", _i32s),
    ("sent_ends", _i32s),
    ("intents", _strs),
    ("emotion_probs", _f32s),  # 32-way distribution over pipeline.labels.EMOTIONS, of the context
])

# data/signals/frames.parquet: SF token per word, plus the first-candidate frame (for the disambiguation metric).
FRAMES = pa.schema([
    ("example_id", _str),
    ("words", _strs),
    ("sf", _strs),
    ("sf_first", _strs),
    ("subword_ids", _i32s),
    ("subword_word", _i32s),
])

# data/signals/controls.parquet: the control-signal table, one row per dialogues row (all splits).
CONTROLS = pa.schema([
    ("example_id", _str),
    ("split", _str),
    ("conv_id", _str),
    ("emotion", _str),
    ("context", _strs),
    ("response", _str),
    *CONTROL_FIELDS,
    ("emotion_probs", _f32s),
])

# data/retrieval/{candidates,oracle}.parquet: control sources for sampling, one row per (query, rank).
CANDIDATES = pa.schema([
    ("example_id", _str),  # the query (a valid/test example)
    ("split", _str),
    ("rank", _i32),  # 0 = best
    ("score", _f32),
    ("cand_example_id", _str),  # the training example whose response supplies the controls (itself for oracle)
    ("cand_response", _str),
    *CONTROL_FIELDS,
])

# data/samples/<mode>.parquet: generated responses.
SAMPLES = pa.schema([
    ("example_id", _str),
    ("rank", _i32),
    ("control_sequence", _str),
    ("text", _str),
])

# data/scores/per_example.parquet: one row per (system, example) scored by stage `score` (definitions: docs/metrics.md).
SCORES = pa.schema([
    ("system", _str),  # human | retrieval | diffusemp | diffusemp_oracle
    ("example_id", _str),
    ("text", _str),
    ("n_tokens", _i32),  # lower-cased spaCy words
    ("bertscore_f1", _f32),
    ("mi_nll", _f32),  # mean NLL (nats) of the context tokens given the text; MIScore = exp(mi_nll)
    ("self_bleu", _f32),  # BLEU-5 against the system's other outputs, in [0, 1]
    ("cm_er_ok", _bool), ("cm_ip_ok", _bool), ("cm_ex_ok", _bool),
    ("it_correct", _i32), ("it_total", _i32),
    ("sf_overlap", _i32), ("sf_tagged", _i32), ("sf_control", _i32),
    ("p_er", _f32), ("p_ip", _f32), ("p_ex", _f32),
])
