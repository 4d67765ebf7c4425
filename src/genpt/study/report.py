"""`genpt report`: figures and a Markdown page from pre-training runs and fine-tuned folders.

A pre-training run is read from its `metrics.jsonl` (train and validation rows) and, where
`genpt zeroshot --every-checkpoint` wrote one, its `zeroshot.jsonl`. A fine-tuned folder is read from
`finetune.json` (task and settings), `metrics.jsonl` (dev metrics per epoch) and its checkpoint's
`config.json` (the architecture). Runs a `genpt study` made carry their stage record (`study_stage.json`:
when, on which CPU, for how long), which the report sums up. The setting of a fine-tuned run follows from
its settings: full, no aux LM (lm_coef 0), no pre-training (scratch), transfer k (the first k blocks), LSTM.
Confusion matrices need the dev labels: `dev_files` maps a task's name to its dev file, and each
classifier is run on it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from genpt import checkpoint as ckpt
from genpt import io
from genpt.data.readers import read_examples
from genpt.data.tasks import TaskSpec
from genpt.errors import GenptError
from genpt.load import inference_device, load_finetuned
from genpt.metrics import standard_error
from genpt.predict import predict
from genpt.study import figures, stages
from genpt.study.zeroshot import CORRECTED, MIN_GAIN, REWORDED, base_task, normalised, read_curve

REPORT = "report.md"
METRICS = "metrics.jsonl"  # genpt.train.metrics_log writes it
SETTINGS = ("full", "no aux LM", "no pre-training", "LSTM", "LSTM, no aux LM", "LSTM, no pre-training")


@dataclass
class PretrainRun:
    path: Path
    name: str
    curve: figures.Curve
    zeroshot: list[dict]  # its zero-shot curve as stored; write_report puts it on the full runs' scale
    config: dict
    stage: dict | None  # the study's record of the stage that made it; None outside a study


@dataclass
class FinetunedRun:
    path: Path
    name: str
    task: TaskSpec
    setting: str
    transferred: int | None  # blocks transferred, for the transfer curve (None: not a transfer point)
    n_layer: int
    seed: int
    lr: float
    epochs: list[dict]  # dev metrics after each epoch
    stage: dict | None

    @property
    def metric(self) -> str:
        return self.task.metrics[0]

    @property
    def final(self) -> float:
        """The last epoch's dev score: no choice made on the dev set, unlike the kept best epoch."""
        return self.epochs[-1][self.metric]


def _metrics(path: Path) -> list[dict]:
    """The run's metric rows; a last line cut short (a run killed while writing it) is left out."""
    file = path / METRICS
    try:
        lines = file.read_text().splitlines()
    except FileNotFoundError:
        raise GenptError(f"{file}: missing; expected a run folder written by genpt") from None
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if n < len(lines):
                raise GenptError(f"{file}:{n}: not JSON ({e.msg}); expected one metrics row a line") from None
    return rows


def read_pretrain(path: Path) -> PretrainRun:
    rows = _metrics(path)
    train = [r for r in rows if r["split"] == "train"]
    if not train:
        raise GenptError(f"{path / 'metrics.jsonl'}: no training rows; has the run taken a logged step?")
    tokens_at = {r["step"]: r["tokens"] for r in train}
    per_step = train[-1]["tokens"] / train[-1]["step"]
    val = [{**r, "tokens": tokens_at.get(r["step"], r["step"] * per_step)} for r in rows if r["split"] == "val"]
    config = io.read_json(path / "config.json") if (path / "config.json").is_file() else {}
    return PretrainRun(path, path.name, figures.Curve(path.name, train, val), read_curve(path), config,
                       stages.finished(path))


def setting_of(arch: str, scratch: bool, transfer: int, n_layer: int, lm_coef: float) -> str:
    if scratch:
        setting = "no pre-training"
    elif 0 <= transfer < n_layer:
        setting = f"transfer {transfer}"
    elif lm_coef == 0:
        setting = "no aux LM"
    else:
        setting = "full"
    if arch == "lstm":
        return "LSTM" if setting == "full" else f"LSTM, {setting}"
    return setting


def read_finetuned(path: Path) -> FinetunedRun:
    settings = io.read_json(path / "finetune.json")
    task = TaskSpec.from_dict(settings["task"])
    cfg = settings["finetune"]
    model = ckpt.read_info(ckpt.resolve_checkpoint(path)).model
    arch, n_layer = model.arch, model.n_layer
    epochs = [{k: v for k, v in r.items() if k not in ("step", "split")} for r in _metrics(path) if r["split"] == "val"]
    if not epochs:
        raise GenptError(f"{path}: no dev metrics in metrics.jsonl; fine-tune with --dev to report on it")
    setting = setting_of(arch, cfg["scratch"], cfg["transfer_layers"], n_layer, cfg["lm_coef"])
    transferred = None
    if arch == "transformer" and not cfg["scratch"] and cfg["lm_coef"] > 0:
        transferred = cfg["transfer_layers"] if 0 <= cfg["transfer_layers"] < n_layer else n_layer
    return FinetunedRun(path, path.name, task, setting, transferred, n_layer, cfg["seed"], cfg["lr"], epochs,
                        stages.finished(path))


def read_run(path: str | Path) -> PretrainRun | FinetunedRun:
    path = Path(path)
    if (path / "finetune.json").is_file():
        return read_finetuned(path)
    if (path / "metrics.jsonl").is_file():
        return read_pretrain(path)
    raise GenptError(f"{path}: neither a pre-training run (metrics.jsonl) nor a fine-tuned folder (finetune.json)")


def dev_confusion(run: FinetunedRun, dev_file: Path) -> np.ndarray:
    """Counts of (true, predicted) labels of the run's kept model on `dev_file`."""
    examples = read_examples(run.task, dev_file)
    predicted = predict(load_finetuned(run.path, inference_device()), examples).predicted
    n = len(run.task.label_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    for example, guess in zip(examples, predicted, strict=True):
        matrix[example.label, guess] += 1
    return matrix


def _output_folder(output: Path) -> None:
    """A new folder, or one holding an earlier report: nothing else of the user's is overwritten."""
    if output.exists() and any(output.iterdir()) and not (output / REPORT).is_file():
        raise GenptError(f"{output}: exists and holds files but no {REPORT}; choose a new --output folder")
    output.mkdir(parents=True, exist_ok=True)


def _full_scores(fine: Sequence[FinetunedRun]) -> dict[str, float]:
    """Each task's full model (pre-trained, L3) score: the final epoch's, the mean over seeds; the 1 of the paper's
    zero-shot scale."""
    scores: dict[str, list[float]] = defaultdict(list)
    for r in fine:
        if r.setting == "full":
            scores[r.task.name].append(r.final)
    return {task: sum(values) / len(values) for task, values in scores.items()}


def _order(names: Sequence[str]) -> list[str]:
    return sorted(set(names), key=lambda s: (SETTINGS.index(s) if s in SETTINGS else len(SETTINGS), s))


def write_report(runs: Sequence[str | Path], output: str | Path,
                 dev_files: Mapping[str, str | Path] | None = None, *, own_folder: bool = False) -> Path:
    """Draw every figure the given runs allow into `output` and write `output/report.md` embedding them.

    `own_folder`: the caller made `output` and checked it is its own (a study folder holds its runs too)."""
    output = Path(output)
    read = [read_run(path) for path in runs]
    pre = [r for r in read if isinstance(r, PretrainRun)]
    fine = [r for r in read if isinstance(r, FinetunedRun)]
    for group in (pre, fine):
        if len({r.name for r in group}) < len(group):  # two runs named alike: add their parent folders
            for r in group:
                r.name = f"{r.path.parent.name}/{r.path.name}"
                if isinstance(r, PretrainRun):
                    r.curve.name = r.name
    best = _full_scores(fine)
    for r in pre:  # the zero-shot curves' scale: these full runs where they are given, else what the curve stored
        r.zeroshot = [{**row, "best": (top := best.get(base_task(row["task"]), row.get("best"))),
                       "normalised": normalised(row["task"], row["value"], top)} for row in r.zeroshot]
    if not own_folder:
        _output_folder(output)
    shown: list[figures.Figure] = []
    if pre:
        shown.append(figures.loss_curves([r.curve for r in pre], output / "pretraining_loss.png"))
        shown.append(figures.throughput([r.curve for r in pre], output / "throughput.png"))
        with_zeroshot = {r.name: r.zeroshot for r in pre if r.zeroshot}
        if with_zeroshot:
            shown.append(figures.zeroshot_curves(with_zeroshot, output / "zeroshot.png", MIN_GAIN,
                                                 list(CORRECTED.values()), REWORDED, base_task))
    tables: list[tuple[str, str]] = []  # (heading, Markdown table)
    if fine:
        metric_names = {r.task.name: r.metric for r in fine}
        settings = _order([r.setting for r in fine])
        epochs: dict[str, dict[str, list]] = defaultdict(dict)
        for r in fine:
            epochs[r.task.name][f"{r.setting}/{r.name}"] = [(i + 1, e[r.metric]) for i, e in enumerate(r.epochs)]
        shown.append(figures.finetune_epochs(epochs, metric_names, settings, output / "finetuning_epochs.png"))
        table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in fine:
            if not r.setting.startswith("transfer"):
                table[r.task.name][r.setting].append(r.final)
        if table:
            shown.append(figures.ablation_bars(table, metric_names, settings, output / "ablations.png"))
            tables.append(("Settings compared (final epoch, over seeds)", _ablation_table(table, metric_names)))
            if compared := _comparison_table(table, metric_names):
                tables.append(("Table 5's comparisons (full against each other setting)", compared))
        points: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in fine:
            if r.transferred is not None:
                points[r.task.name][r.transferred].append(r.final)
        points = {task: by_k for task, by_k in points.items() if len(by_k) > 1}
        if points:
            n_layer = max(r.n_layer for r in fine if r.transferred is not None)
            shown.append(figures.transfer_curve(points, metric_names, n_layer, output / "transfer.png"))
            tables.append(("Blocks transferred (final epoch, over seeds)", _transfer_table(points, metric_names)))
        for (task, setting), (matrix, count) in _confusions(fine, dev_files or {}).items():
            spec = next(r.task for r in fine if r.task.name == task)
            slug = f"confusion_{task}_{setting}".replace(" ", "_").replace(",", "")
            shown.append(figures.confusion(matrix, spec.label_names, f"{task}, {setting}: confusion on dev", count,
                                           output / f"{slug}.png"))
    with_zeroshot = [r for r in pre if r.zeroshot]
    if with_zeroshot:
        tables.append(("Zero-shot scores at each checkpoint", _zeroshot_table(with_zeroshot)))
    if where := _where_table(pre, fine):
        tables.append(("Where it ran and how long", where))
    if not shown:
        raise GenptError("nothing to report: give pre-training runs or fine-tuned folders")
    path = output / REPORT
    io.write_text(path, _markdown(pre, fine, shown, tables))
    return path


def dev_files_from(items: Sequence[str]) -> dict[str, str]:
    """`TASK=FILE` items (the command's --dev) as a task -> dev file mapping."""
    found = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise GenptError(f"--dev expects TASK=FILE (e.g. sst2=glue/SST-2/dev.tsv), got {item!r}")
        found[task] = path
    return found


def _confusions(fine: Sequence[FinetunedRun], dev_files: Mapping[str, str | Path]
                ) -> dict[tuple[str, str], tuple[np.ndarray, int]]:
    """One matrix per (task, setting) of the classifiers with a dev file, summed over seeds, and the run count."""
    matrices: dict[tuple[str, str], tuple[np.ndarray, int]] = {}
    for r in fine:
        if r.task.target != "class" or r.task.name not in dev_files or r.setting.startswith("transfer"):
            continue
        matrix = dev_confusion(r, Path(dev_files[r.task.name]))
        key = (r.task.name, r.setting)
        total, count = matrices.get(key, (0, 0))
        matrices[key] = (total + matrix, count + 1)
    return matrices


def _ablation_table(table: Mapping[str, Mapping[str, list[float]]], metric_names: Mapping[str, str]) -> str:
    lines = ["| task | metric | setting | mean ± std | seeds |", "|---|---|---|---|---|"]
    for task, by_setting in table.items():
        for setting in _order(list(by_setting)):
            values = by_setting[setting]
            std = np.std(values, ddof=1) if len(values) > 1 else 0.0
            lines.append(f"| {task} | {metric_names[task]} | {setting} | {np.mean(values):.4f} ± {std:.4f} | "
                         f"{len(values)} |")
    return "\n".join(lines)


def _comparison_table(table: Mapping[str, Mapping[str, list[float]]], metric_names: Mapping[str, str]) -> str:
    """Full against each other setting, per task: the difference of the means, how many of the larger
    standard deviation it spans, and Welch's t-test, so "pre-training helps" is read off, not eyeballed."""
    import scipy.stats

    lines = ["| task | metric | full against | difference | larger std | difference / larger std | Welch p |",
             "|---|---|---|---|---|---|---|"]
    for task, by_setting in table.items():
        full = by_setting.get("full", [])
        if len(full) < 2:
            continue
        for other in _order([s for s in by_setting if s != "full"]):
            values = by_setting[other]
            if len(values) < 2:
                continue
            difference = np.mean(full) - np.mean(values)
            spread = max(np.std(full, ddof=1), np.std(values, ddof=1))
            ratio = f"{difference / spread:.1f}" if spread > 0 else "-"
            p = scipy.stats.ttest_ind(full, values, equal_var=False).pvalue if spread > 0 else float("nan")
            lines.append(f"| {task} | {metric_names[task]} | {other} | {difference:+.4f} | {spread:.4f} | {ratio} | "
                         + ("-" if np.isnan(p) else f"{p:.3f}") + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _transfer_table(points: Mapping[str, Mapping[int, list[float]]], metric_names: Mapping[str, str]) -> str:
    lines = ["| task | metric | blocks transferred | mean ± std | seeds |", "|---|---|---|---|---|"]
    for task, by_k in points.items():
        for k in sorted(by_k):
            values = by_k[k]
            std = np.std(values, ddof=1) if len(values) > 1 else 0.0
            lines.append(f"| {task} | {metric_names[task]} | {k} | {np.mean(values):.4f} ± {std:.4f} | {len(values)} |")
    return "\n".join(lines)


def _zeroshot_table(runs: Sequence[PretrainRun]) -> str:
    lines = ["| run | step | tokens | task | metric | score ± one standard error | examples "
             "| normalised (0 chance, 1 best fine-tuned) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for row in r.zeroshot:
            normalised = "-" if row.get("normalised") is None else f"{row['normalised']:.3f}"
            n = row.get("examples", 0)
            error = f" ± {standard_error(row['metric'], row['value'], n):.4f}" if n >= 2 else ""
            step, tokens = (f"{row['reference']} reference", "-") if row.get("reference") else (
                row["step"], f"{row['tokens']:,}")
            lines.append(f"| {r.name} | {step} | {tokens} | {row['task']} | {row['metric']} | "
                         f"{row['value']:.4f}{error} | {n or '-'} | {normalised} |")
    return "\n".join(lines)


def _where_table(pre: Sequence[PretrainRun], fine: Sequence[FinetunedRun]) -> str:
    """The study stages' machines and times, by kind and machine; empty when no run has a stage record."""
    groups: dict[tuple[str, str, str, int], list[dict]] = defaultdict(list)
    unrecorded = 0  # stages a genpt made before stages recorded their times
    for kind, runs in (("pre-training", pre), ("fine-tuning", fine)):
        for r in runs:
            if r.stage and "seconds" in r.stage:
                m = r.stage["machine"]
                groups[(kind, m["cpu"], m["torch"], m["threads"])].append(r.stage)
            elif r.stage:
                unrecorded += 1
    if not groups:
        return ""
    lines = ["| stages | count | CPU | PyTorch | threads a process | compute | first started | last finished |",
             "|---|---|---|---|---|---|---|---|"]
    for (kind, cpu, version, threads), records in groups.items():
        first, last = min(s["started"] for s in records), max(s["finished"] for s in records)
        lines.append(f"| {kind} | {len(records)} | {cpu} | {version} | {threads} | "
                     f"{sum(s['seconds'] for s in records) / 60:.1f} min | {_when(first)} | {_when(last)} |")
    every = [s for records in groups.values() for s in records]
    span = (datetime.fromisoformat(max(s["finished"] for s in every))
            - datetime.fromisoformat(min(s["started"] for s in every))).total_seconds()
    resumed = sum(s["resumed"] for s in every)
    lines += ["", f"Stages ran for **{_busy_seconds(every) / 60:.1f} minutes** of wall clock (their intervals merged: "
              "stages of several processes at once counted once, pauses between invocations not at all; "
              f"{span / 60:.1f} minutes from the first stage's start to the last one's finish). Preparing the shards, "
              "the zero-shot curves and this report are not counted."]
    if resumed:
        lines.append(f"{resumed} stage(s) resumed after an interruption: only the attempt that finished each is "
                     "counted.")
    if unrecorded:
        lines.append(f"{unrecorded} more stage(s) were made by a genpt that did not yet record times: "
                     "not counted above.")
    return "\n".join(lines)


def _busy_seconds(stages: Sequence[dict]) -> float:
    """Seconds inside at least one stage's [started, finished]: a study stopped and resumed hours later, or run
    by two workers, is timed by what ran."""
    busy, end = 0.0, None
    for start, finish in sorted((datetime.fromisoformat(s["started"]), datetime.fromisoformat(s["finished"]))
                                for s in stages):
        if end is None or start > end:
            busy, end = busy + (finish - start).total_seconds(), finish
        elif finish > end:
            busy, end = busy + (finish - end).total_seconds(), finish
    return busy


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z")


def _markdown(pre: Sequence[PretrainRun], fine: Sequence[FinetunedRun], shown: Sequence[figures.Figure],
              tables: Sequence[tuple[str, str]]) -> str:
    out = ["# genpt report", ""]
    if pre:
        out += ["## Pre-training runs", "", "| run | steps | tokens | last train loss | last validation perplexity |",
                "|---|---|---|---|---|"]
        for r in pre:
            last, val = r.curve.train[-1], r.curve.val[-1] if r.curve.val else None
            ppl = f"{val['perplexity']:.2f}" if val else "-"
            out.append(f"| {r.name} | {last['step']} | {last['tokens']:,} | {last['loss']:.4f} | {ppl} |")
        out.append("")
    if fine:
        out += ["## Fine-tuned runs", "", "| run | task | setting | seed | rate | epochs | final dev score |",
                "|---|---|---|---|---|---|---|"]
        for r in fine:
            out.append(f"| {r.name} | {r.task.name} | {r.setting} | {r.seed} | {r.lr:g} | {len(r.epochs)} | "
                       f"{r.metric} {r.final:.4f} |")
        out.append("")
    for heading, table in tables:
        out += [f"## {heading}", "", table, ""]
    out += ["## Figures", ""]
    for n, figure in enumerate(shown, 1):
        out += [f"### Figure {n}. {figure.title}", "", f"![{figure.title}]({figure.file})", "",
                f"*Figure {n}. {figure.caption}*", ""]
    return "\n".join(out)


__all__ = ["FinetunedRun", "PretrainRun", "dev_files_from", "read_run", "setting_of", "write_report"]
