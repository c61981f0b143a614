"""Static PNG renderings of the plots' CSV data, so they can be seen offline (`dvc plots show` draws images without
the vega scripts it would otherwise load from a CDN)."""
import itertools
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
    """Figure 4: systems as points in ER/IP/EX space, drawn as its three 2-D projections.

    points: one row per system, columns system, er, ip, ex (mean tagger probabilities).
    """
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, (a, b) in zip(axes, itertools.combinations(MECHANISMS, 2)):
        for _, row in points.iterrows():
            ax.scatter(row[a], row[b])
            ax.annotate(row["system"], (row[a], row[b]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xlabel=f"mean P({a.upper()})", ylabel=f"mean P({b.upper()})", xlim=(0, 1), ylim=(0, 1))
    fig.suptitle("Communication mechanisms per system (paper Figure 4)")
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


def render_sweep(table: pd.DataFrame, png) -> None:
    """Quality against training minutes, one line per design (and decoder, where the table has that column):
    sampling accuracy (left) and fluency PPL (right).

    table: plots/quality_vs_minutes.csv rows (design, minutes, cpu_minutes_est, sampling_accuracy, fluency_ppl, ...);
    the x axis is the estimated CPU minutes where every row has one (a GPU sweep), else the measured minutes."""
    x = "cpu_minutes_est" if table["cpu_minutes_est"].notna().all() else "minutes"
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
