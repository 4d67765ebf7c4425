"""The report's figures, drawn with matplotlib's Agg backend from plain numbers (no run folders here).

Every function writes one PNG and returns a `Figure`: its file name, title and a caption that says
what it shows. Each has a title and labelled axes with units. genpt.study.report gathers the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, the same pixels on every machine
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import EngFormatter, FuncFormatter  # noqa: E402

from genpt.metrics import standard_error  # noqa: E402

DPI = 110
MARKERS = "osD^vP*Xph"
TOKENS = EngFormatter(sep="")  # 150k, 1.2M: token counts that fit under their ticks


@dataclass(frozen=True)
class Figure:
    file: str  # beside report.md
    title: str
    caption: str


@dataclass
class Curve:
    """A pre-training run's logged rows, as the figures need them."""

    name: str
    train: list[dict]  # step, tokens, loss, lr, tokens_per_s
    val: list[dict]  # step, tokens, loss, perplexity


def _save(fig, path: Path, legend_right: bool = False) -> None:
    fig.tight_layout()
    if legend_right:  # one legend for every panel, outside them (the saved image widens to it): it hides no line
        handles = {label: h for ax in fig.axes for h, label in zip(*ax.get_legend_handles_labels(), strict=True)}
        fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _colors(n: int) -> list:
    return [plt.get_cmap("tab10")(i % 10) for i in range(n)]


def _grid(n: int, width: float = 4.6, height: float = 3.4, extra: float = 0.0):
    """n panels, up to three a row; `extra` inches on the right for a shared legend."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + extra, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def loss_curves(curves: Sequence[Curve], path: Path) -> Figure:
    """Training and validation loss against tokens, the learning rate on a twin axis; validation perplexity."""
    fig, (ax, pp) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    lr_ax = ax.twinx()
    for color, c in zip(_colors(len(curves)), curves, strict=True):
        ax.plot([r["tokens"] for r in c.train], [r["loss"] for r in c.train], color=color, lw=1.2,
                label=f"{c.name}: train")
        if c.val:
            ax.plot([r["tokens"] for r in c.val], [r["loss"] for r in c.val], color=color, ls="--", marker="o",
                    ms=3.5, label=f"{c.name}: validation")
            pp.plot([r["tokens"] for r in c.val], [r["perplexity"] for r in c.val], color=color, marker="o",
                    ms=3.5, label=c.name)
        lr_ax.plot([r["tokens"] for r in c.train], [r["lr"] for r in c.train], color=color, ls=":", lw=1,
                   alpha=0.7)
    ax.set(title="Pre-training loss (dotted: learning rate)", xlabel="tokens seen", ylabel="loss (nats/token)")
    lr_ax.set_ylabel("learning rate (dotted)")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.legend(fontsize=8)
    pp.set(title="Validation perplexity", xlabel="tokens seen", ylabel="perplexity (per token, log scale)",
           yscale="log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 150, not 1.5 x 10^2
    pp.yaxis.set_major_formatter(plain)
    pp.yaxis.set_minor_formatter(plain)
    if any(c.val for c in curves):
        pp.legend(fontsize=8)
    for a in (ax, pp):
        a.grid(alpha=0.3)
        a.xaxis.set_major_formatter(TOKENS)
    _save(fig, path)
    return Figure(path.name, "Pre-training loss and validation perplexity",
                  "Left: the language-modelling loss L1 (mean over the steps since the previous log line) and "
                  "the loss on the fixed validation windows, against tokens seen; the learning-rate schedule is "
                  "dotted on the right axis. Right: validation perplexity (exp of the validation loss).")


def throughput(curves: Sequence[Curve], path: Path) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for color, c in zip(_colors(len(curves)), curves, strict=True):
        ax.plot([r["step"] for r in c.train], [r["tokens_per_s"] for r in c.train], color=color, marker=".",
                label=c.name)
    ax.set(title="Pre-training throughput", xlabel="optimizer step", ylabel="tokens per second")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return Figure(path.name, "Pre-training throughput",
                  "Training tokens processed per second of wall-clock time between log lines, against the "
                  "optimizer step (evaluation and checkpoint time included in the interval that holds them).")


def finetune_epochs(tasks: Mapping[str, Mapping[str, list[tuple[int, float]]]], metric_names: Mapping[str, str],
                    settings: Sequence[str], path: Path) -> Figure:
    """tasks[task][run name] = [(epoch, dev score)]; a run's setting is the part of its name before '/'."""
    fig, axes = _grid(len(tasks), extra=2.0)
    colors = dict(zip(settings, _colors(len(settings)), strict=True))
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(settings)}  # lines that coincide stay apart
    for ax, (task, runs) in zip(axes, tasks.items(), strict=True):
        shown = set()
        for name, points in sorted(runs.items(), key=lambda item: (settings.index(item[0].split("/")[0]), item[0])):
            setting = name.split("/")[0]
            ax.plot([e for e, _ in points], [v for _, v in points], color=colors[setting], marker=markers[setting],
                    ms=6, mfc="none", alpha=0.85, label=None if setting in shown else setting)
            shown.add(setting)
        ax.set(title=f"{task}: dev {metric_names[task]} per epoch", xlabel="epoch",
               ylabel=f"dev {metric_names[task]} (fraction)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    _save(fig, path, legend_right=True)
    return Figure(path.name, "Fine-tuning: dev score per epoch",
                  "Each line is one fine-tuning run (one seed of one setting), scored on the dev set after every "
                  "epoch with the task's main metric; colours mark the setting.")


def ablation_bars(table: Mapping[str, Mapping[str, list[float]]], metric_names: Mapping[str, str],
                  settings: Sequence[str], path: Path) -> Figure:
    """table[task][setting] = final-epoch dev scores over seeds; bars are means, error bars standard deviations.
    `settings` fixes the order and colours (the same as in `finetune_epochs`)."""
    fig, axes = _grid(len(table), width=4.2)
    colors = dict(zip(settings, _colors(len(settings)), strict=True))
    for ax, (task, by_setting) in zip(axes, table.items(), strict=True):
        names = [s for s in settings if s in by_setting]
        means = [float(np.mean(by_setting[s])) for s in names]
        stds = [float(np.std(by_setting[s], ddof=1)) if len(by_setting[s]) > 1 else 0.0 for s in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=[colors[s] for s in names])
        for i, s in enumerate(names):
            ax.scatter([i] * len(by_setting[s]), by_setting[s], color="black", s=9, zorder=3)
            ax.annotate(f"{means[i]:.3f}\nn={len(by_setting[s])}", (i, means[i] + stds[i]), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set(title=f"{task}: settings compared", ylabel=f"dev {metric_names[task]} (fraction)")
        ax.margins(y=0.2)
        ax.grid(alpha=0.3, axis="y")
    _save(fig, path)
    return Figure(path.name, "Ablations (the paper's Table 5)",
                  "Each bar is the mean of the final epoch's dev score over seeds (dots: the seeds; error bar: "
                  "sample standard deviation; n: seeds) for each setting: full = pre-trained with the auxiliary "
                  "LM (L3), no aux LM = L2 only, no pre-training = random initialisation, LSTM = the LSTM "
                  "language model pre-trained and fine-tuned the same way.")


def transfer_curve(points: Mapping[str, Mapping[int, list[float]]], metric_names: Mapping[str, str],
                   n_layer: int, path: Path) -> Figure:
    """points[task][blocks transferred] = final-epoch dev scores over seeds (the paper's Figure 2, left)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for color, (task, by_k) in zip(_colors(len(points)), points.items(), strict=True):
        ks = sorted(by_k)
        means = np.array([np.mean(by_k[k]) for k in ks])
        stds = np.array([np.std(by_k[k], ddof=1) if len(by_k[k]) > 1 else 0.0 for k in ks])
        ax.errorbar(ks, means, yerr=stds, color=color, marker="o", capsize=3, label=f"{task} ({metric_names[task]})")
    ax.set(title="Transfer: dev score against pre-trained blocks transferred",
           xlabel=f"Transformer blocks transferred (of {n_layer}; 0 = embeddings only)",
           ylabel="dev score (fraction, the task's metric)")
    ax.set_xticks(range(0, n_layer + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return Figure(path.name, "Transfer curve (the paper's Figure 2, left)",
                  "Fine-tuned dev score (final epoch, mean over seeds, error bar one standard deviation) when the "
                  "embeddings and the first k pre-trained blocks are transferred and the rest initialised at "
                  "random; k = all blocks is the full model.")


ZEROSHOT_STYLES = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D")]  # runs that overlap stay apart by marker


def _counted(rows: Sequence[dict]) -> bool:
    """Whether every row records how many examples it scored (rows written before genpt recorded it have no error)."""
    return all(r.get("examples", 0) >= 2 for r in rows)


def _zeroshot_errors(rows: Sequence[dict], key: str) -> np.ndarray | None:
    """One standard error of each row's score from the number of examples scored, on the scale of `key`;
    None for rows that do not record that number."""
    if not _counted(rows):
        return None
    errors = np.array([standard_error(r["metric"], r["value"], r["examples"]) for r in rows])
    if key == "normalised":
        errors = errors / np.array([r["best"] - r["chance"] for r in rows])
    return errors


def _zeroshot_panel(ax, runs: Mapping[str, Sequence[dict]], tasks: Sequence[str], colors: Mapping[str, object],
                    key: str) -> None:
    """One line per run and task of `key` ("normalised" or the raw "value") against tokens seen; each task's
    reference rows (a unigram model's score) as one dash-dotted level in its colour."""
    for (style, marker), (name, rows) in zip(ZEROSHOT_STYLES * 4, runs.items(), strict=False):
        for task in tasks:
            mine = sorted((r for r in rows if r["task"] == task and not r.get("reference")), key=lambda r: r["tokens"])
            if mine:
                tokens, centre = [r["tokens"] for r in mine], np.array([r[key] for r in mine])
                ax.plot(tokens, centre, color=colors[task], ls=style,
                        marker=marker, ms=5, mfc="none", label=f"{name}: {task} ({mine[0]['metric']})")
                if (errors := _zeroshot_errors(mine, key)) is not None:
                    ax.fill_between(tokens, centre - errors, centre + errors, color=colors[task], alpha=0.12, lw=0)
    references = {(r["task"], r["reference"]): r[key] for rows in runs.values() for r in rows
                  if r.get("reference") and r["task"] in tasks and r[key] is not None}
    for (task, kind), level in sorted(references.items()):  # the runs of one study share their shards: drawn once
        ax.axhline(level, color=colors[task], lw=1.2, ls="-.", label=f"{task}: {kind} reference")
    if key == "normalised":
        ax.axhline(0.0, color="gray", lw=0.8, label="chance")
    else:  # each task's chance level, dotted in its colour
        for task in tasks:
            chance = next(r["chance"] for rows in runs.values() for r in rows if r["task"] == task)
            ax.axhline(chance, color=colors[task], lw=0.8, ls=":")
    ax.set_xlabel("pre-training tokens seen")
    ax.xaxis.set_major_formatter(TOKENS)
    ax.grid(alpha=0.3)


def zeroshot_curves(runs: Mapping[str, Sequence[dict]], path: Path, min_gain: float,
                    corrected: Sequence[str] = (), reworded: Mapping[str, str] | None = None,
                    task_of: Callable[[str], str] = lambda heuristic: heuristic) -> Figure:
    """runs[name] = zero-shot rows (tokens, task, value, normalised) of one pre-training run's checkpoints;
    `min_gain`: how far fine-tuning had to beat chance for a task to be normalised (genpt.study.zeroshot);
    `corrected`: the heuristics corrected for word frequency, and `reworded`: those asking in other words than
    the paper's, with what they ask; the caption names both. `task_of` gives a heuristic's task: one panel a
    task, its heuristics together, on the normalised scale where every one of them has it, else in its metric."""
    every = sorted({r["task"] for rows in runs.values() for r in rows})
    groups: dict[str, list[str]] = {}
    for heuristic in every:
        groups.setdefault(task_of(heuristic), []).append(heuristic)
    normalisable = {task for task, heuristics in groups.items()
                    if all(r.get("normalised") is not None for rows in runs.values() for r in rows
                           if r["task"] in heuristics)}
    raw = [h for task, heuristics in groups.items() if task not in normalisable for h in heuristics]
    colors = dict(zip(every, _colors(len(every)), strict=True))
    fig, axes = _grid(len(groups), height=3.8)
    for ax, (task, heuristics) in zip(axes, groups.items(), strict=True):
        key = "normalised" if task in normalisable else "value"
        _zeroshot_panel(ax, runs, heuristics, colors, key)
        metric = next(r["metric"] for rows in runs.values() for r in rows if r["task"] == heuristics[0])
        ax.set(title=f"{task}: normalised" if key == "normalised" else f"{task}: {metric}",
               ylabel="0 = chance, 1 = best fine-tuned" if key == "normalised" else f"zero-shot {metric} "
               "(dotted: chance)")
    fig.suptitle("Zero-shot behaviour during pre-training")
    _save(fig, path, legend_right=True)
    if not normalisable:
        scale = "as fractions (no best fine-tuned score was given to normalise them)"
    else:
        scale = "normalised between chance (0) and the best fine-tuned score (1), as in the paper's Figure 2 (right)"
        if raw:
            scale += (f"; in its own metric with its chance level dotted: {', '.join(raw)}, whose fine-tuned "
                      f"score did not beat chance by {min_gain:g}, so there is no scale to normalise it by")
    if any(r.get("reference") for rows in runs.values() for r in rows):
        scale += ("; dash-dotted, each task's heuristic scored by a unigram model of the pre-training tokens (word "
                  "frequencies alone, nothing read in context): a curve below it has not yet learnt more than them")
    if drawn := [t for t in every if t in corrected]:
        scale += (f"; {', '.join(drawn)}: the heuristic corrected for word frequency (not the paper's; "
                  "genpt.study.zeroshot), which a unigram model scores at chance, so it has no reference line")
    for task in every:
        if task in (reworded or {}):
            scale += f"; {task}: {reworded[task]} (not the paper's; genpt.study.zeroshot)"
    shaded = any(_counted([r for r in rows if r["task"] == t]) for rows in runs.values() for t in every)
    band = (" Shaded: one standard error of each score from the number of dev examples scored (binomial for "
            "accuracy, (1 - r^2)/sqrt(n - 1) for the MCC): a rise inside the shading is noise."
            if shaded else "")
    return Figure(path.name, "Zero-shot curves (the paper's Figure 2, right)",
                  "The zero-shot heuristics of genpt.study.zeroshot scored at each checkpoint of each "
                  f"pre-training run (a panel a task; line style: run; colour: heuristic), {scale}.{band}")


def confusion(matrix: np.ndarray, labels: Sequence[str], title: str, runs: int, path: Path) -> Figure:
    """matrix[true][predicted] = count, summed over `runs` fine-tuned runs (seeds)."""
    fig, ax = plt.subplots(figsize=(3.2 + 0.5 * len(labels), 2.8 + 0.5 * len(labels)))
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    for (i, j), count in np.ndenumerate(matrix):
        dark = image.norm(count) > 0.5  # white on the dark half of the scale, black on the light half
        ax.text(j, i, str(int(count)), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(title=title, xlabel="predicted label", ylabel="true label")
    fig.colorbar(image, ax=ax, label="dev examples")
    _save(fig, path)
    over = f", summed over {runs} runs (seeds)" if runs > 1 else ""
    return Figure(path.name, title, f"{title}: dev examples counted by true label (rows) and predicted label "
                  f"(columns){over}; {int(matrix.sum())} predictions, {int(np.trace(matrix))} on the diagonal.")


__all__ = ["Curve", "Figure", "ablation_bars", "confusion", "finetune_epochs", "loss_curves", "throughput",
           "transfer_curve", "zeroshot_curves"]
