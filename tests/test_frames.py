"""SF tagging on hand-checked sentences, with a tiny FrameNet written here (no real FrameNet, no ED)."""
import json

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.frames import FrameTagger, frame_metrics, load_inventory, lu_parts, segment_sentences
from pipeline.segment import segment_texts, wordpiece_align

# (frame, lu) in LU-id order: the first listed frame of an LU string is its "first candidate".
LUS = [
    ("Stimulus_focus", "sad.a"), ("Emotion_directed", "sad.a"), ("Emotion_directed", "heartbroken.a"),
    ("Kinship", "mom.n"), ("Quitting", "give up.v"), ("Quantified_mass", "a lot.n"), ("Possibility", "could.v"),
    ("Firing", "can.v"), ("Capability", "can.v"), ("Awareness", "know.v"), ("Desiring", "will.v"),
    ("Intentionally_act", "do.v"), ("Animals", "dog.n"), ("Animals", "chicken.n"), ("Food", "chicken.n"),
    ("Evidence", "lead (to).v"),
]
DEFINITIONS = {
    "Animals": "Words for animals such as dogs, cats, cows and birds kept on a farm.",
    "Food": "Words for food and dishes that people cook and eat for dinner.",
}


def write_framenet(folder) -> None:
    lus = [{"lu_id": i, "frame": f, "lu": lu, "word": lu.split()[0].split(".")[0], "pos": lu.rsplit(".", 1)[1],
            "frame_id": i} for i, (f, lu) in enumerate(LUS, start=2)]
    defs = {f: DEFINITIONS.get(f, f"Definition of {f}.") for f, _ in LUS} | {"Non_lexical": "A frame with no LU."}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "FN17_enlu_id.json").write_text(json.dumps(lus))
    (folder / "fn1.7_frame_definitions.json").write_text(json.dumps(defs))


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """A tagger whose 'encoder' puts a sentence with "feel" on Emotion_directed and every other one on Stimulus_focus."""
    folder = tmp_path_factory.mktemp("framenet")
    write_framenet(folder)
    inventory = load_inventory(folder)
    eye = np.eye(len(inventory.frames), dtype=np.float32)  # frame i's definition vector = e_i
    row = {f: i for i, f in enumerate(inventory.frames)}
    embed = lambda texts: np.stack([eye[row["Emotion_directed" if "feel" in t else "Stimulus_focus"]] for t in texts])  # noqa: E731
    return FrameTagger(inventory, eye, embed)


CASES = {
    # pronouns; an ambiguous LU (sad.a) chosen by the sentence; a word with no LU (feel, so) -> "_"
    "I feel so sad.": ["PRONOUN", "_", "_", "Emotion_directed", "_"],
    # wh-word; the same LU where the sentence favours the first candidate
    "What a sad story.": ["WHAT", "_", "Stimulus_focus", "_", "_"],
    # negation n't; auxiliary do -> "_" (do.v exists); phrasal verb: both words take the frame; "?"
    "Why didn't she give up?": ["WHY", "_", "NO", "PRONOUN", "Quitting", "Quitting", "?"],
    # "no" -> NO; modal could -> Possibility; possessive pronoun
    "No, you could ask my mom.": ["NO", "_", "PRONOUN", "Possibility", "_", "PRONOUN", "Kinship", "_"],
    # yes-word; auxiliary can keeps only its modal frame (never Firing); will has no modal frame; never -> NO
    "Yeah, I can't. I will never know.": ["YES", "_", "PRONOUN", "Capability", "NO", "_", "PRONOUN", "_", "NO",
                                          "Awareness", "_"],
    # heartbroken is tagged VERB by spaCy and backs off to heartbroken.a; the emoji -> "_"
    "I am heartbroken 😢": ["PRONOUN", "_", "Emotion_directed", "_"],
    # multi-word LU "a lot"; not -> NO; "who" -> WHO
    "Who knows? It is not a lot.": ["WHO", "Awareness", "?", "PRONOUN", "_", "NO", "Quantified_mass", "Quantified_mass", "_"],
    "Where is the dog? Which one? How? When?": ["WHERE", "_", "_", "Animals", "?", "WHICH", "_", "?", "HOW", "?",
                                                "WHEN", "?"],
    "": [],
}


def test_hand_checked_sentences(tagger):
    texts = list(CASES)
    segments = segment_texts(texts)
    assert tagger.tag(segments) == list(CASES.values())
    assert tagger.tag(segments, texts) == list(CASES.values())  # exact sentence strings give the same choice


def test_first_candidate_and_candidate_counts(tagger):
    [a] = tagger.analyse(segment_texts(["I feel so sad."]))
    assert a.sf[3] == "Emotion_directed" and a.sf_first[3] == "Stimulus_focus" and a.n_candidates == [0, 0, 0, 2, 0]


def test_every_subword_of_a_word_points_to_it():
    ids, word = wordpiece_align(["I", "am", "heartbroken", "😢"])
    assert word == [0, 1, 2, 2, 3]  # heart ##broken share word 2, hence its SF token; the emoji is [UNK]
    assert ids[-1] == 100


def test_lu_names_are_normalised():
    assert lu_parts("give up.v") == (("give", "up"), "v")
    assert lu_parts("lead (to).v") == (("lead",), "v")
    assert lu_parts("punishment [act].n") == (("punishment",), "n")


def test_sentences_rebuilt_from_words_keep_spacing():
    [seg] = segment_texts(["I can't  go.\nSo sad!"])
    assert segment_sentences(seg, None) == ["I can't go.", "So sad!"]
    assert segment_sentences(seg, "I can't  go.\nSo sad!") == ["I can't  go.\n", "So sad!"]  # spans as spaCy cut them


def test_metrics_count_what_they_say(tagger):
    texts = ["I feel so sad.", "What a sad story."]
    segments = segment_texts(texts)
    m = frame_metrics(segments, tagger.analyse(segments))
    # content words: feel so sad | sad story -> 5, framed: sad, sad
    assert (m["words"], m["content_words"], m["content_words_with_frame"]) == (10, 5, 0.4)
    assert m["words_with_nonnull_sf"] == 0.4  # PRONOUN, sad, WHAT, sad
    assert (m["ambiguous_words"], m["disambiguation_changed_first_candidate"]) == (2, 0.5)
    assert m["top_30_frames"] == {"Emotion_directed": 1, "Stimulus_focus": 1} and m["distinct_frames"] == 2


def test_minilm_definitions_disambiguate_and_cache(tmp_path):
    framenet, models = tmp_path / "framenet", tmp_path / "models"
    write_framenet(framenet)
    built = FrameTagger.build(framenet, models)
    texts = ["We ate roast chicken for dinner.", "The chicken ran around the farm with the cows."]
    assert built.tag(segment_texts(texts)) == [["PRONOUN", "_", "_", "Food", "_", "_", "_"],
                                               ["_", "Animals", "_", "_", "_", "_", "_", "_", "_", "_"]]
    loaded = FrameTagger.load(framenet, models)
    assert np.array_equal(loaded.frame_vectors, built.frame_vectors)
    (framenet / "fn1.7_frame_definitions.json").write_text(json.dumps({f: "x" for f in {f for f, _ in LUS}}))
    with pytest.raises(PipelineError, match="dvc repro tag_frames"):
        FrameTagger.load(framenet, models)


def test_missing_definition_is_an_input_error(tmp_path):
    write_framenet(tmp_path)
    (tmp_path / "fn1.7_frame_definitions.json").write_text(json.dumps({"Animals": "x"}))
    with pytest.raises(PipelineError, match="without a definition"):
        load_inventory(tmp_path)
