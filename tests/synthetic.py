"""A tiny but valid synthetic data mirror, in the layout of ../shared/data, for tests and the DVC smoke test.

`write_mirror(root)` writes:
  empatheticdialogues/empatheticdialogues.tar.gz   ED release format (`_comma_`, stray quotes, extra fields, non-ASCII)
  epitome_reddit/{emotional-reactions,interpretations,explorations}-reddit.csv   60 pairs, CRLF, quoted CSV, levels 0-2
  empathetic_intents/lexically_extended_intent_data/{train,validation,test}/<intent>.txt   9 intents x 8 lines per split
  empathetic_intents/empatheticdialogues_annotated/<emotion>.csv   the ED conversations below with silver labels
  framenet17/*.json   43 real FrameNet 1.7 LUs (ambiguous and multi-word ones included) in the real files' structure
Every file is deterministic (fixed tar/gzip timestamps), so its digest is stable. The digests differ from the pins in
pipeline/datasets.py: download it with `download.verify: record`.

`ED_CONVERSATIONS` holds the conversations and `expected_dialogues()` the rows stage prepare must produce from them.
"""
import csv
import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.datasets import INTENT_SPLITS
from pipeline.labels import EMOTIONS


@dataclass(frozen=True)
class Conversation:
    conv_id: str
    emotion: str
    situation: str
    utterances: tuple[str, ...]  # speaker first, then alternating speaker / listener


ED_CONVERSATIONS: dict[str, tuple[Conversation, ...]] = {
    "train": (
        Conversation("hit:1_conv:1", "sad", "My dog passed away last week after fourteen years with us.", (
            "My old dog died last week. I still can't believe she's gone.",
            "I'm so sorry to hear that. How old was she?",
            "She was fourteen. We grew up together, really.",
            "That is a long time to share with a friend. I hope you can remember the good days.")),
        Conversation("hit:2_conv:3", "proud", "My daughter graduated from college with honors, the first in our family.", (
            "My daughter just graduated from college! She worked so hard for it.",
            "Congratulations! You must be very proud of her.",
            "I am. She's the first one in our family to finish a degree.",
            "That's amazing. What is she going to do next?",
            "She already has a job lined up in Boston.",
            "Wow, I wish her the best of luck.")),
        Conversation("hit:3_conv:5", "afraid", "I heard someone walking around outside my window at night.", (
            "Last night I heard footsteps outside my window, and I was home alone.",
            "That sounds terrifying. Did you call anyone?",
            "No, I didn't. I just hid under the blanket until morning.",
            "I don't blame you. Maybe you should get a camera or a light by the window.")),
        Conversation("hit:4_conv:7", "angry", "My neighbor keeps parking in my spot, even after I asked him not to.", (
            "My neighbor parked in my spot again, for the third time this week!",
            "Ugh, that's so annoying. Have you talked to him about it?",
            'I have, twice. He says "sorry" and does it again.',
            "That's not fair to you. You could talk to your landlord.")),
        Conversation("hit:5_conv:9", "excited", "We are going to Japan for our honeymoon next month.", (
            "We booked our honeymoon to Japan! We leave next month.",
            "That's wonderful! Where in Japan are you going?",
            "Tokyo and Kyoto. I want to eat ramen and visit a café in every town.",
            "Sounds like a perfect trip. I’ve always wanted to go there 😊")),
        Conversation("hit:6_conv:11", "lonely", "I moved to a new city and I don't know anyone here.", (
            "I moved to a new city for work and I don't know a single person.",
            "That must be hard. Are there any clubs or groups you could join?",
            "Maybe. I'm not very good at meeting new people though.",
            "Don't be too hard on yourself. It takes time, but you will find friends.")),
        Conversation("hit:7_conv:13", "grateful", "My friend helped me move all my furniture on a rainy Sunday.", (
            "My best friend spent his whole Sunday helping me move, in the rain.",
            "What a good friend! Did you thank him?",
            "I bought him dinner and a six-pack. It was the least I could do.",
            "That's a nice way to say thanks. Friends like that are rare.")),
        Conversation("hit:8_conv:15", "anxious", "I have a big exam tomorrow and I don't feel ready.", (
            "I have my final exam tomorrow and I feel like I know nothing.",
            "Oh no, that's stressful. How long have you been studying?",
            "About two weeks. But I still can't remember half of the formulas.",
            "I'm sure you know more than you think. Try to get some sleep tonight.",
            "Thanks. I'll try, but I'm so nervous.")),
        # A conversation with no listener turn (the real release has three).
        Conversation("hit:9_conv:17", "disappointed", "My team lost the final game of the season.", (
            "My team lost the championship by one point.",)),
    ),
    "valid": (
        Conversation("hit:10_conv:19", "joyful", "I found twenty dollars in an old jacket pocket.", (
            'I found "$20" in my winter jacket today!',
            "Nice! What are you going to spend it on?",
            "Probably pizza, honestly.",
            "Good choice. Pizza makes every day better.")),
        Conversation("hit:11_conv:21", "guilty", "I forgot my mother's birthday this year.", (
            "I completely forgot my mom's birthday yesterday. I feel terrible.",
            "Oh no. Did you call her today?",
            "I did. She said it's fine, but I could tell she was hurt.",
            "Maybe you could take her out for lunch this weekend to make it up to her.")),
        Conversation("hit:12_conv:23", "surprised", "My coworkers threw me a surprise party for my birthday.", (
            "My coworkers threw me a surprise party today. I had no idea!",
            "That's so sweet of them. Were you shocked?")),
    ),
    "test": (
        Conversation("hit:13_conv:25", "devastated", "I lost my job after ten years at the company.", (
            "I got laid off today after ten years at the company.",
            "I'm really sorry. That's a huge shock. Do you know why?",
            "They said it was budget cuts. I don't know what to do now.",
            "Take some time for yourself first. Things will get better, I promise.")),
        Conversation("hit:14_conv:27", "hopeful", "I applied for my dream job and I have an interview on Friday.", (
            "I have an interview for my dream job on Friday!",
            "Good luck! What's the job?",
            "It's a design position at a game studio. I've wanted this for years.",
            "That sounds great. I hope you get it.")),
        Conversation("hit:15_conv:29", "embarrassed", "I tripped in front of the whole class during my presentation.", (
            "I tripped on the stage right before my presentation. Everyone saw it.",
            "Oh no! Did you get hurt?",
            "Only my pride. I couldn't stop blushing.",
            "Everyone trips sometimes. I bet nobody remembers it by now.")),
    ),
}


def _one_turn_conversations(taken: set[str], first_hit: int) -> tuple[Conversation, ...]:
    """One short conversation for every emotion not in `taken`, so that every emotion class occurs in train."""
    missing = [e for e in EMOTIONS if e not in taken]
    return tuple(
        Conversation(f"hit:{first_hit + i}_conv:{2 * (first_hit + i) - 1}", emotion,
                     f"Something happened at work that left me {emotion}.", (
                         f"I have been feeling {emotion} since my meeting with my boss on Monday.",
                         f"Why do you feel {emotion}? I hope you can talk to someone about it."))
        for i, emotion in enumerate(missing))


ED_CONVERSATIONS["train"] += _one_turn_conversations(
    {c.emotion for c in ED_CONVERSATIONS["train"] if len(c.utterances) > 1}, first_hit=100)


def expected_dialogues() -> list[dict]:
    """The DIALOGUES rows of the conversations above: one per listener turn (odd 0-based position), split order."""
    return [
        {"example_id": f"{c.conv_id}:{turn}", "split": split, "conv_id": c.conv_id, "turn": turn, "emotion": c.emotion,
         "situation": c.situation, "context": list(c.utterances[:turn]), "response": c.utterances[turn]}
        for split, convs in ED_CONVERSATIONS.items() for c in convs for turn in range(1, len(c.utterances), 2)
    ]


def write_mirror(root: Path) -> None:
    """Write the whole synthetic mirror under `root` (created if needed)."""
    root = Path(root)
    write_ed(root / "empatheticdialogues")
    write_epitome(root / "epitome_reddit")
    write_intents(root / "empathetic_intents")
    write_framenet(root / "framenet17")


# --- EmpatheticDialogues -------------------------------------------------------------------------------------------

ED_HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags"


def ed_release_csv(convs: tuple[Conversation, ...]) -> str:
    """The release format: commas as `_comma_`, no quoting; the first line of each conversation carries a selfeval, and
    every other conversation a free-text `tags` field with raw commas (extra fields, as in the real files)."""
    lines = [ED_HEADER]
    for n, c in enumerate(convs):
        for i, text in enumerate(c.utterances):
            selfeval = "5|5|5_2|2|5" if i == 0 else ""
            tags = "odd one,check,later" if n % 2 and i == 1 else ""
            fields = [c.conv_id, str(i + 1), c.emotion, c.situation.replace(",", "_comma_"), str(100 + i % 2),
                      text.replace(",", "_comma_"), selfeval, tags]
            lines.append(",".join(fields))
    return "\n".join(lines) + "\n"


def write_ed(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for split, convs in ED_CONVERSATIONS.items():
            data = ed_release_csv(convs).encode("utf-8")
            info = tarfile.TarInfo(f"empatheticdialogues/{split}.csv")
            info.size, info.mtime, info.mode = len(data), 1556668800, 0o644
            tar.addfile(info, io.BytesIO(data))
    with open(folder / "empatheticdialogues.tar.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(tar_bytes.getvalue())


# --- EPITOME -------------------------------------------------------------------------------------------------------

SEEKER_POSTS = (
    "I can't sleep anymore. Every night my mind just races.",
    "Lost my job today, and I don't know how to tell my wife.",
    "Does anyone else feel completely alone even around friends?",
    "My anxiety is through the roof before every exam.",
    'My therapist says I\'m "making progress" but I don\'t feel it.',
    "I've been crying all day and I don't even know why.",
    "Moving to a new city was supposed to help.\nIt didn't.",
    "I feel like a burden to everyone around me.",
    "Nothing I do at work is ever good enough for my boss.",
    "I’m so tired of pretending I'm okay.",
)
# (level 1 phrasings, level 2 phrasings) of each mechanism; a response joins one part per mechanism.
MECHANISM_PARTS = {
    "er": (("That sucks.", "Ugh, that's rough."),
           ("I'm so sorry you are going through this, it breaks my heart.", "I feel really sad reading this, sending you a hug.")),
    "ip": (("I think I get it.", "Sounds familiar."),
           ("I've been there too and I know how exhausting it feels.", "I understand, I went through the same thing last year.")),
    "ex": (("What's up?", "Why?"),
           ("How long have you been feeling this way?", "What do you think started all of this?")),
}
EPITOME_FILES = {"er": "emotional-reactions-reddit.csv", "ip": "interpretations-reddit.csv", "ex": "explorations-reddit.csv"}


def epitome_pairs(n: int = 60) -> list[dict]:
    """n (seeker, response) pairs with ER/IP/EX levels cycling through all 27 combinations; rationales are the parts."""
    pairs = []
    for i in range(n):
        levels = {"er": i % 3, "ip": (i // 3) % 3, "ex": (i // 9) % 3}
        parts = {m: MECHANISM_PARTS[m][lv - 1][i % 2] if lv else "" for m, lv in levels.items()}
        response = " ".join(p for p in (parts["er"], parts["ip"], parts["ex"]) if p) or "Have you tried going for a walk, maybe?"
        pairs.append({"sp_id": f"{i // 2:05x}s", "rp_id": f"r{i:05x}", "seeker_post": SEEKER_POSTS[i % len(SEEKER_POSTS)],
                      "response_post": response, "levels": levels,
                      "rationales": {m: f"{p}|" if p else "" for m, p in parts.items()}})
    return pairs


def write_epitome(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pairs = epitome_pairs()
    for mechanism, name in EPITOME_FILES.items():
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\r\n")
            writer.writerow(["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"])
            for p in pairs:
                writer.writerow([p["sp_id"], p["rp_id"], p["seeker_post"], p["response_post"], p["levels"][mechanism],
                                 p["rationales"][mechanism]])


# --- EmpatheticIntents ---------------------------------------------------------------------------------------------

# file name (upstream typo kept) -> (label id, templates); each template is filled with 6 topics: 24 lines, 8 per split.
INTENT_TEMPLATES = {
    "agreeing": (32, ("i totally agree, {} is the best.", "yes, you are right about {}.", "exactly, {} is always like that.",
                      "same here, i feel the same about {}.")),
    "acknowleding": (33, ("i see, so it was {}.", "oh, that makes sense about {}.", "yeah, {} can be like that.",
                          "right, i get it about {}.")),
    "encouraging": (34, ("you can do it, {} will go great!", "keep going, you will nail {}.", "don't give up on {}!",
                         "you've got this, good job with {}!")),
    "consoling": (35, ("it will be okay, {} will work out.", "don't worry, {} is not your fault.",
                       "everything will be fine with {}.", "i'm sure {} will get better soon.")),
    "sympathizing": (36, ("i'm so sorry about {}.", "that must be awful, {} sounds hard.",
                          "oh no, i'm sorry to hear about {}.", "that's terrible about {}.")),
    "suggesting": (37, ("you should talk to someone about {}.", "maybe try a different approach to {}.",
                        "why not take a break from {}?", "you could ask for help with {}.")),
    "questioning": (38, ("what happened with {}?", "how do you feel about {}?", "did you tell anyone about {}?",
                         "when did you find out about {}?")),
    "wishing": (39, ("good luck with {}!", "i hope {} goes well.", "best wishes for {}.", "i wish you the best with {}.")),
    "neutral": (40, ("i went to {} yesterday.", "{} was on tuesday.", "i have not thought about {}.",
                     "my cousin mentioned {} once.")),
}
INTENT_TOPICS = ("the new job", "your sister", "the trip", "the exam", "your dog", "the party")


def write_intents(folder: Path) -> None:
    for name, (label, templates) in INTENT_TEMPLATES.items():
        lines = [f"{label} <SEP> {t.format(topic)}" for t in templates for topic in INTENT_TOPICS]
        for k, split in enumerate(INTENT_SPLITS):
            path = folder / "lexically_extended_intent_data" / split / f"{name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines[k::3]) + "\n", encoding="utf-8")
    annotated = folder / "empatheticdialogues_annotated"
    annotated.mkdir(parents=True, exist_ok=True)
    convs = [c for split in ED_CONVERSATIONS.values() for c in split]
    for emotion in EMOTIONS:
        with open(annotated / f"{emotion}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["Dialog_ID", "Type", "Actor", "Text", "Label"])
            for c in (c for c in convs if c.emotion == emotion):
                writer.writerow([c.conv_id, "situation", "none", c.situation, emotion])
                for i, text in enumerate(c.utterances):
                    actor = "listener" if i % 2 else "speaker"
                    writer.writerow([c.conv_id, "utterance", actor, text, silver_intent(text) if i % 2 else emotion])


def silver_intent(text: str) -> str:
    """A keyword stand-in for the EI classifier's label of a listener utterance."""
    t = text.lower()
    rules = (("?", "questioning"), ("sorry", "sympathizing"), ("hope", "wishing"), ("luck", "wishing"),
             ("should", "suggesting"), ("could", "suggesting"), ("congratulations", "encouraging"),
             ("will", "consoling"))
    return next((label for key, label in rules if key in t), "acknowledging")


# --- FrameNet ------------------------------------------------------------------------------------------------------

# (lu_id, frame, lu, frame_id), taken from the real FN17_enlu_id.json: ambiguous LU strings (feel.v, sad.a, lose.v ...)
# and multi-word LUs (give up.v, pass away.v) included.
FRAMENET_LUS = (
    (160, "Awareness", "know.v", 19), (924, "Death", "die.v", 53), (1531, "Perception_experience", "feel.v", 70),
    (2143, "Kinship", "mother.n", 104), (2177, "Personal_relationship", "friend.n", 102),
    (2211, "Examination", "exam.n", 107), (2307, "Kinship", "family.n", 104), (2521, "Social_event", "party.n", 125),
    (2668, "Memory", "remember.v", 135), (2966, "Commerce_buy", "buy.v", 171), (3012, "Buildings", "home.n", 173),
    (3876, "Measure_duration", "week.n", 224), (4049, "Death", "pass away.v", 53), (4345, "Motion", "go.v", 7),
    (5780, "Being_employed", "work.v", 282), (5785, "Being_employed", "job.n", 282), (6064, "Travel", "trip.n", 343),
    (6316, "Desirability", "great.a", 354), (6447, "Stimulus_focus", "sad.a", 364), (6604, "Desiring", "hope.v", 366),
    (6605, "Desiring", "hope.n", 366), (6816, "Contrition", "sorry.a", 382), (6945, "Emotion_directed", "sad.a", 46),
    (7041, "Assistance", "help.v", 391), (7221, "Emotion_directed", "happy.a", 46), (7257, "Feeling", "feel.v", 396),
    (768, "Emotion_active", "worry.v", 45), (7808, "Vehicle", "car.n", 429), (8009, "Surrendering", "give up.v", 502),
    (880, "Experiencer_focus", "love.v", 48), (8945, "Judgment_direct_address", "thank.v", 711),
    (9177, "Telling", "tell.v", 750), (11024, "Remembering_information", "forget.v", 1220),
    (12563, "Age", "new.a", 972), (12566, "Familiarity", "new.a", 1597), (13255, "Familiarity", "know.v", 1597),
    (13629, "Luck", "happy.a", 1811), (14520, "Commemorative", "birthday.n", 261),
    (15587, "Losing_someone", "lose.v", 2196), (15588, "Losing", "lose.v", 2197),
    (15397, "Measure_duration", "time.n", 224), (17627, "Animals", "dog.n", 2840),
    (11261, "People_by_residence", "neighbor.n", 1143),
)
NON_LEXICAL_FRAMES = (("Reciprocality", 9), ("Transitive_action", 10))  # frames with no LU, as in the real inventory
FRAME_ELEMENTS = ("Agent", "Experiencer", "Place", "Theme", "Time")


def write_framenet(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lus = sorted(FRAMENET_LUS)
    frame_ids = dict(sorted({(frame, fid) for _, frame, _, fid in lus} | set(NON_LEXICAL_FRAMES), key=lambda x: x[1]))
    frame_idx = {frame: i for i, frame in enumerate(sorted(frame_ids))}
    lu_idx = {lu: i for i, lu in enumerate(sorted({lu for _, _, lu, _ in lus}))}
    files = {
        "FN17_enlu_id.json": [{"lu_id": i, "frame": frame, "lu": lu, "word": lu.split(" ")[0].rsplit(".", 1)[0],
                               "pos": lu.rsplit(".", 1)[1], "frame_id": fid} for i, frame, lu, fid in lus],
        "FN17_frame2id.json": frame_ids,
        "FN17_frame_lu.json": [{"f_id": fid, "frame": frame,
                                "lus": [{"lu": lu, "lu_id": i} for i, fr, lu, _ in lus if fr == frame]}
                               for frame, fid in frame_ids.items()],
        "fn1.7_frame2idx.json": frame_idx,
        "fn1.7_lu2idx.json": lu_idx,
        "fn1.7_lufrmap.json": {str(k): sorted({frame_idx[fr] for _, fr, l, _ in lus if l == lu}) for lu, k in lu_idx.items()},
        "fn1.7_fe2idx.json": {fe: i for i, fe in enumerate(FRAME_ELEMENTS)},
        "fn1.7_frargmap.json": {str(i): [i % len(FRAME_ELEMENTS), (i + 1) % len(FRAME_ELEMENTS)] for i in frame_idx.values()},
        "fn1.7_frame_definitions.json": {frame: frame_definition(frame, [lu for _, fr, lu, _ in lus if fr == frame])
                                         for frame in frame_idx},
    }
    for name, obj in files.items():
        (folder / name).write_text(json.dumps(obj, indent=4, ensure_ascii=False), encoding="utf-8")


def frame_definition(frame: str, lus: list[str]) -> str:
    words = ", ".join(lu.rsplit(".", 1)[0] for lu in lus) or "no lexical unit"
    return f"A situation of the kind {frame.replace('_', ' ').lower()}. Words that evoke it: {words}.  'An example.'"
