"""The one source of truth for every label set and special token of the control signals."""

# The 32 EmpatheticDialogues emotions, in the alphabetical order used by ED tools (afraid=0 ... trusting=31).
EMOTIONS: tuple[str, ...] = (
    "afraid", "angry", "annoyed", "anticipating", "anxious", "apprehensive", "ashamed", "caring",
    "confident", "content", "devastated", "disappointed", "disgusted", "embarrassed", "excited", "faithful",
    "furious", "grateful", "guilty", "hopeful", "impressed", "jealous", "joyful", "lonely",
    "nostalgic", "prepared", "proud", "sad", "sentimental", "surprised", "terrified", "trusting",
)

# The 9 EmpatheticIntents classes (8 empathetic intents + neutral).
INTENTS: tuple[str, ...] = (
    "acknowledging", "agreeing", "consoling", "encouraging", "neutral",
    "questioning", "suggesting", "sympathizing", "wishing",
)

# The three control signals, coarse to fine: communication mechanism, intent, semantic frame.
SIGNALS: tuple[str, ...] = ("cm", "it", "sf")

# Communication mechanisms (EPITOME), in the paper's slot order for the CM control tokens.
MECHANISMS: tuple[str, ...] = ("er", "ip", "ex")
MECHANISM_NAMES: dict[str, str] = {"er": "EMOTIONAL_REACTION", "ip": "INTERPRETATION", "ex": "EXPLORATION"}

# Semantic-frame special tokens (paper section 3.1 / the authors' code): words with no FrameNet frame
# but a clear dialogue function get their own token; everything else without a signal gets SF_NULL.
SF_NULL = "_"
SF_PRONOUN = "PRONOUN"
SF_YES = "YES"
SF_NO = "NO"
SF_QUESTION = "?"
SF_WH = {w: w.upper() for w in ("why", "when", "who", "what", "where", "which", "how")}
SF_SPECIAL: tuple[str, ...] = (SF_NULL, SF_PRONOUN, SF_YES, SF_NO, SF_QUESTION, *SF_WH.values())

# The null token of a control slot that carries no signal (a CM slot whose mechanism is absent).
CONTROL_NULL = "NONE"
