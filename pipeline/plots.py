"""Static PNG renderings of the plots' CSV data, so they can be seen offline (`dvc plots show` draws images without
the vega scripts it would otherwise load from a CDN)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # render to files, no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.io import atomic_path  # noqa: E402
from pipeline.labels import MECHANISMS  # noqa: E402


def save(fig, png) -> None:
    with atomic_path(png, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def render_cm(points: pd.DataFrame, png) -> None:
    """Figure 4: each system's mean ER, IP and EX tagger probabilities as a grouped bar chart (one group per system, one
    bar per mechanism, values printed on the bars), so no label sits on another.

    points: one row per system, columns system, er, ip, ex (mean tagger probabilities).
    """
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(points) + 2), 4.5))
    width = 0.8 / len(MECHANISMS)
    for j, m in enumerate(MECHANISMS):
        x = [i + (j - (len(MECHANISMS) - 1) / 2) * width for i in range(len(points))]
        bars = ax.bar(x, points[m], width=width, label=m.upper())
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(points)), list(points["system"]), rotation=20, ha="right")
    ax.set(ylim=(0, 1), ylabel="mean P(mechanism present)")
    ax.legend(title="mechanism", ncols=3, loc="upper left", fontsize=8)
    fig.suptitle("Communication mechanisms per system (paper Figure 4)")
    save(fig, png)


def render_steering(report: dict, png) -> None:
    """The steering benchmark (pipeline.steering): per request, the share of outputs that follow it when it is given
    alone (requested) beside the same share when nothing is given (base), with the interval of the difference; one
    panel for the CM requests, one for the IT requests. report: metrics/steering.json."""
    req = report["requests"]
    panels = [("communication mechanism given alone: share with it present", [n for n in req if n.startswith("cm_")]),
              ("intent given alone: share whose first sentence has it", [n for n in req if n.startswith("it_")])]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 5]})
    for ax, (title, names) in zip(axes, panels):
        x = range(len(names))
        base = [req[n]["base_rate"] for n in names]
        asked = [req[n]["adherence"] for n in names]
        ax.bar([i - 0.2 for i in x], base, width=0.4, label="nothing given (base)", color="0.7")
        ax.bar([i + 0.2 for i in x], asked, width=0.4, label="requested", color="tab:blue",
               yerr=[[a - (b + req[n]["low"]) for a, b, n in zip(asked, base, names)],
                     [(b + req[n]["high"]) - a for a, b, n in zip(asked, base, names)]], capsize=3)
        ax.set_xticks(list(x), [n.split("_", 1)[1] for n in names], rotation=20)
        ax.set(ylim=(0, 100), ylabel="% of outputs", title=title)
        ax.title.set_fontsize(10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)
    fig.suptitle(f"Steering: each control given alone ({report['examples']} {report.get('split', 'test')} examples, "
                 f"guidance w = {report.get('guidance', 1.0)}; error bars: 95% interval of requested - base)")
    save(fig, png)


# Columns of a curves table that are not on the loss scale (the training log's learning rate).
OFF_SCALE = ("lr",)


def read_step_metrics(folder) -> pd.DataFrame:
    """DVCLive's step metrics (`<folder>/<name>.tsv`, columns step and <name>) joined on step -> one row per step."""
    files = sorted(Path(folder).glob("*.tsv"))
    if not files:
        raise PipelineError(f"{folder} holds no DVCLive metric files (*.tsv): rebuild it with `dvc repro train_diffusion`")
    table = None
    for f in files:
        part = pd.read_csv(f, sep="\t")[["step", f.stem]]
        table = part if table is None else table.merge(part, on="step", how="outer")
    return table.sort_values("step", ignore_index=True)


def render_curves(table: pd.DataFrame, png, x: str = "step") -> None:
    """Every numeric column of `table` but OFF_SCALE against column `x` (the training log: step, loss, mse, ...)."""
    if x not in table.columns:
        raise PipelineError(f"plot data has no `{x}` column (columns: {list(table.columns)}): write one per row")
    fig, ax = plt.subplots(figsize=(6, 4))
    for y in [c for c in table.select_dtypes("number").columns if c != x and c not in OFF_SCALE]:
        ax.plot(table[x], table[y], label=y)
    ax.set(xlabel=x)
    ax.legend()
    save(fig, png)


def minutes_axis(table: pd.DataFrame) -> str:
    """The minutes column a sweep table is compared on: the estimated CPU minutes where every row has one (a GPU
    sweep placed on the CPU axis), else the measured training minutes."""
    return "cpu_minutes_est" if table["cpu_minutes_est"].notna().all() else "minutes"


def render_sweep(table: pd.DataFrame, png) -> None:
    """Quality against training minutes, one line per design (and decoder, where the table has that column):
    sampling accuracy (left) and fluency PPL (right).

    table: plots/quality_vs_minutes.csv rows (design, minutes, cpu_minutes_est, sampling_accuracy, fluency_ppl, ...);
    the x axis is the estimated CPU minutes where every row has one (a GPU sweep), else the measured minutes."""
    x = minutes_axis(table)
    label = "estimated 2-core CPU training minutes" if x == "cpu_minutes_est" else "training minutes"
    keys = ["design", "decoder"] if "decoder" in table else ["design"]
    colour = {d: f"C{i % 10}" for i, d in enumerate(table["design"].unique())}  # one colour per design
    style = {d: s for d, s in zip(table["decoder"].unique(), ("-", "--", ":", "-."))} if "decoder" in table else {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, rows in table.groupby(keys, sort=False):
        name = " / ".join(map(str, key))
        look = {"marker": "o", "label": name, "color": colour[key[0]], "linestyle": style.get(key[-1], "-")}
        left.plot(rows[x], rows["sampling_accuracy"], **look)
        right.plot(rows[x], rows["fluency_ppl"], **look)
    left.set(xlabel=label, ylabel="held-out sampling token accuracy")
    right.set(xlabel=label, ylabel="SmolLM2 fluency PPL (lower is better)", yscale="log")
    left.legend(fontsize=8)
    save(fig, png)
