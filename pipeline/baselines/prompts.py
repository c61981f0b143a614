"""The text a baseline reads: the dialogue with speaker markers and, for the controlled LM, its control signals.

ED's conversations alternate between a speaker, who tells of a situation, and a listener, who answers; the response
is the listener's, so the newest context turn is the speaker's and the roles alternate backwards from it.
"""
from collections.abc import Mapping, Sequence

from pipeline.labels import MECHANISMS, SIGNALS
from pipeline.metrics.control import CM_COLUMNS

ROLES = ("Speaker", "Listener")
MECHANISM_WORDS = dict(zip(MECHANISMS, ("emotional reaction", "interpretation", "exploration")))


def dialogue_text(context: Sequence[str]) -> str:
    """['I lost my job.'] -> 'Speaker: I lost my job.\\nListener:' (the response follows after a space)."""
    turns = [f"{ROLES[(len(context) - 1 - i) % 2]}: {turn}" for i, turn in enumerate(context)]
    return "\n".join([*turns, f"{ROLES[1]}:"])


def controls_text(row: Mapping) -> str:
    """A control row (cm_er/cm_ip/cm_ex, intents, sf: schema CONTROL_FIELDS; `given`: the levels it gives, all when
    absent) -> one line naming the given levels only, e.g. 'Controls: mechanisms exploration; intents acknowledging,
    questioning; frames _ PRONOUN Desiring ?', or 'Controls: none'."""
    given = set(row.get("given", SIGNALS))
    mechanisms = [MECHANISM_WORDS[m] for m, c in zip(MECHANISMS, CM_COLUMNS) if row[c]] or ["none"]
    clauses = {"cm": f"mechanisms {', '.join(mechanisms)}", "it": f"intents {', '.join(row['intents'])}",
               "sf": f"frames {' '.join(row['sf'])}"}
    return "Controls: " + ("; ".join(clauses[s] for s in SIGNALS if s in given) or "none")


def prompt_text(context: Sequence[str], controls: Mapping | None = None) -> str:
    """The prompt of the causal LM: the controls line first when given, then the dialogue."""
    dialogue = dialogue_text(context)
    return dialogue if controls is None else f"{controls_text(controls)}\n{dialogue}"
