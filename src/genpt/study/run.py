"""`genpt study`: the paper's analyses (Table 5, Figure 2) as one resumable job described by a recipe.

A recipe (TOML) names the pre-training data and settings, the LSTM pre-training for Table 5's fourth row,
the tasks, the settings compared and the seeds. Each stage runs into its own folder under the output
and is finished when its result file (`study_stage.json`, or `meta.json` for the shards) exists: a
second invocation reuses finished stages, and an interrupted one resumes through pretrain's and
finetune's `resume`. Relative paths in the recipe are resolved against `data_root`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from genpt import io
from genpt.config import FinetuneConfig, PretrainConfig, from_dict
from genpt.data.corpus import prepare, train_tokenizer
from genpt.data.readers import read_examples, story_cloze_split
from genpt.data.tasks import Example, builtin_task
from genpt.errors import GenptError
from genpt.kernels import select
from genpt.study import stages
from genpt.study import zeroshot as zs
from genpt.study.claims import Claims, Later
from genpt.study.report import write_report
from genpt.study.unigram import shards_of_run
from genpt.train.finetune import finetune
from genpt.train.pretrain import pretrain

log = logging.getLogger("genpt")

RECIPES = Path(__file__).parent / "recipes"  # `--recipe NAME` means recipes/NAME.toml (tiny, cpu, gpu)
RECIPE_COPY = "recipe.toml"  # marks a study folder, so a second invocation may write into it
SETTINGS = {"full": {}, "no_aux_lm": {"lm_coef": 0.0}, "scratch": {"scratch": True}, "lstm": {}}
THRESHOLD_EXAMPLES = 1_000  # of a task's (already sampled) training examples choose a zero-shot threshold


@dataclass
class Task:
    name: str
    train: Path
    dev: Path
    train_size: int = 0  # N training examples drawn with a fixed seed (0: all)
    dev_size: int = 0
    zeroshot: bool = False  # draw its zero-shot curve over the pre-training checkpoints (sst2, cola, ...)
    transfer: bool = True  # run the recipe's transfer_layers settings on it (the transfer curve)
    finetune: dict[str, Any] = field(default_factory=dict)  # over the recipe's [finetune], for this task only

    def examples(self) -> tuple[list[Example], list[Example]]:
        """Its training and dev examples, cut to the recipe's sizes. One file named as both is split the
        way GPT-1 split it (the Story Cloze Test's validation stories: 1,497 to train, 374 to evaluate)."""
        spec = builtin_task(self.name)
        if self.train == self.dev:
            if self.name != "story_cloze":
                raise GenptError(f"task {self.name}: train and dev are one file ({self.train}); give two files")
            train, dev = story_cloze_split(read_examples(spec, self.train))
        else:
            train, dev = read_examples(spec, self.train), read_examples(spec, self.dev)
        return _sample(train, self.train_size), _sample(dev, self.dev_size)


@dataclass
class Recipe:
    path: Path
    pretrain: dict[str, Any]
    lstm: dict[str, Any] | None
    finetune: dict[str, Any]
    tasks: list[Task]
    settings: list[str]
    transfer_layers: list[int]
    seeds: int
    text: str = field(repr=False, default="")


def recipe_path(name: str | Path) -> Path:
    """A recipe file, or the name of one shipped in `study/recipes/`."""
    path = Path(name)
    if path.suffix == ".toml" or path.is_file():  # a folder named like a shipped recipe (cpu/) is not one
        if not path.is_file():
            raise GenptError(f"--recipe {name}: no such file")
        return path
    shipped = RECIPES / f"{name}.toml"
    if not shipped.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.toml")))
        raise GenptError(f"--recipe {name}: no such recipe; shipped: {known}, or give a .toml file")
    return shipped


def _sample(examples: list[Example], size: int) -> list[Example]:
    """`size` examples drawn with a fixed seed (all when `size` is 0): data files are often sorted by
    source (CoLA's by the paper each sentence came from), so their first lines are not a fair sample."""
    if not size or size >= len(examples):
        return examples
    return random.Random(0).sample(examples, size)


def load_recipe(name: str | Path, data_root: str | Path = ".") -> Recipe:
    path = recipe_path(name)
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GenptError(f"{path}: not valid TOML ({e})") from None
    known = {"seeds", "pretrain", "lstm", "finetune", "tasks", "settings", "transfer_layers"}
    if extra := sorted(set(data) - known):
        raise GenptError(f"{path}: unknown key(s) {extra}; a recipe has {sorted(known)}")
    root = Path(data_root)

    def where(p: str) -> Path:
        return root / p

    tasks = []
    for n, t in enumerate(data.get("tasks", []), 1):
        if not {"name", "train", "dev"} <= set(t):
            raise GenptError(f"{path}: [[tasks]] number {n} needs name, train and dev")
        tasks.append(Task(t["name"], where(t["train"]), where(t["dev"]), t.get("train_size", 0), t.get("dev_size", 0),
                          t.get("zeroshot", False), t.get("transfer", True), t.get("finetune", {})))
        # Refused now, naming the task, rather than when its first fine-tuning run starts.
        from_dict(FinetuneConfig, tasks[-1].finetune, f"{path}: task {t['name']}: finetune.")
    if not tasks:
        raise GenptError(f"{path}: no [[tasks]]; a study fine-tunes at least one task")
    settings = data.get("settings", ["full", "no_aux_lm", "scratch", "lstm"])
    if bad := [s for s in settings if s not in SETTINGS]:
        raise GenptError(f"{path}: unknown setting(s) {bad}; known: {', '.join(SETTINGS)}")
    pre = dict(data.get("pretrain", {}))
    for key in ("shards", "init"):
        if key in pre:
            pre[key] = [str(where(p)) for p in pre[key]] if isinstance(pre[key], list) else str(where(pre[key]))
    if "corpus" in pre:
        pre["corpus"] = [str(where(p)) for p in pre["corpus"]]
    if not {"shards", "corpus", "init"} & set(pre):
        raise GenptError(f"{path}: [pretrain] needs shards, corpus (with vocab_size) or init = [existing runs]")
    lstm = data.get("lstm")
    if "lstm" in settings and lstm is None and "init" not in pre:
        raise GenptError(f"{path}: the lstm setting needs an [lstm] table (its model settings)")
    return Recipe(path, pre, lstm, data.get("finetune", {}), tasks, settings, data.get("transfer_layers", []),
                  data.get("seeds", 3), text)


def _shards(recipe: Recipe, out: Path) -> Path:
    """The recipe's shards, or the ones this study prepares from its corpus (out/shards)."""
    pre = recipe.pretrain
    if "shards" in pre:
        return Path(pre["shards"])
    folder = out / "shards"
    if (folder / "meta.json").is_file():
        log.info("reusing %s", folder)
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted preparation: shards are cheap to redo
    strip = pre.get("strip_gutenberg", False)
    tokenizer = train_tokenizer(pre["corpus"], pre.get("vocab_size", 16384), strip_gutenberg=strip)
    prepare(pre["corpus"], tokenizer, folder, val_fraction=pre.get("val_fraction", 0.01), workers=1,
            strip_gutenberg=strip, progress=False)
    return folder


def _pretrain_stage(folder: Path, settings: dict[str, Any], shards: Path) -> Path:
    if _done(folder):
        log.info("reusing %s", folder)
        return folder
    config = from_dict(PretrainConfig, {**settings, "data": {**settings.get("data", {}), "shards": str(shards)}})
    log.info("pre-training into %s", folder)
    started, resume = time.time(), folder.is_dir()
    # An interrupted stage continues; a new one starts (--resume refuses a folder that does not exist).
    result = pretrain(config, folder, resume=resume, progress=False)
    stages.finish(folder, {"step": result.step, "tokens": result.tokens_seen, **result.last_eval}, started, resume)
    return folder


def _arch(run: Path) -> str:
    return io.read_json(run / "config.json", "expected a pre-training run")["model"].get("arch", "transformer")


def _given_runs(recipe: Recipe) -> dict[str, Path] | None:
    """The runs a recipe's `[pretrain] init` names, by architecture; None when the study pre-trains its own."""
    pre = recipe.pretrain
    if "init" not in pre:
        return None
    runs = {_arch(Path(p)): Path(p) for p in ([pre["init"]] if isinstance(pre["init"], str) else pre["init"])}
    if "transformer" not in runs or ("lstm" in recipe.settings and "lstm" not in runs):
        raise GenptError(f"{recipe.path}: [pretrain] init needs a Transformer run"
                         + (" and an LSTM run (the lstm setting)" if "lstm" in recipe.settings else ""))
    return runs


def _pretrain_stages(recipe: Recipe) -> dict[str, tuple[str, dict[str, Any]]]:
    """The study's own pre-training stages by architecture: (folder name, settings)."""
    pre = recipe.pretrain
    base = {k: pre[k] for k in ("model", "train") if k in pre}
    stages = {"transformer": ("pretrain", base)}
    if "lstm" in recipe.settings:
        lstm = {k: {**base.get(k, {}), **recipe.lstm.get(k, {})} for k in ("model", "train")}
        lstm["model"]["arch"] = "lstm"
        stages["lstm"] = ("pretrain-lstm", lstm)
    return stages


def pretrained_runs(recipe: Recipe, out: Path, later: Later | None = None) -> dict[str, Path]:
    """The Transformer run (`transformer`) and, for the LSTM row, the LSTM run (`lstm`): pre-trained here,
    or left to the process that claimed them (`later` waits for those)."""
    if (given := _given_runs(recipe)) is not None:
        return given
    own = later is None
    later = later or Later(Claims(out))
    with later.claims.hold("shards", wait=True):  # every stage needs them: the first process makes them
        shards = _shards(recipe, out)
    stages = _pretrain_stages(recipe)
    for name, settings in stages.values():
        later.run(name, partial(_done, out / name), partial(_pretrain_stage, out / name, settings, shards))
    if own:
        later.finish()
    return {arch: out / name for arch, (name, _) in stages.items()}


def _finetune_stage(init: Path, task: Task, folder: Path, cfg: FinetuneConfig) -> Path:
    if _done(folder):
        log.info("reusing %s", folder)
        return folder
    spec = builtin_task(task.name)
    started, resume = time.time(), folder.is_dir()
    train, dev = task.examples()
    log.info("fine-tuning %s into %s", task.name, folder)
    result = finetune(init, spec, task.train, task.dev, folder, cfg, train_examples=train, dev_examples=dev,
                      resume=resume, progress=False)
    stages.finish(folder, {"epochs": result.epochs, "best_epoch": result.best_epoch, "best": result.best}, started,
                  resume)
    return folder


def _jobs(recipe: Recipe, task: Task, seeds: int) -> list[tuple[str, str, dict[str, Any], int]]:
    """(folder name, init run key, fine-tuning settings, seed) of every fine-tuning run of `task`."""
    variants = [(s, "lstm" if s == "lstm" else "transformer", SETTINGS[s]) for s in recipe.settings]
    if task.transfer:
        variants += [(f"transfer{k}", "transformer", {"transfer_layers": k}) for k in recipe.transfer_layers]
    return [(f"{name}-seed{seed}", init, values, seed) for name, init, values in variants
            for seed in range(1, seeds + 1)]


def finetune_config(recipe: Recipe, task: Task, values: dict[str, Any], seed: int) -> FinetuneConfig:
    """One run's fine-tuning settings: the recipe's, then the task's own (CoLA wants more epochs than
    SST-2 at this size), then the setting's (no aux LM, scratch, ...), then the seed."""
    return from_dict(FinetuneConfig, {**recipe.finetune, **task.finetune, **values, "seed": seed}, "finetune.")


def _check_output(out: Path) -> None:
    """A new or empty folder, or an earlier study's: nothing else of the user's is written over."""
    if out.exists() and any(out.iterdir()) and not (out / RECIPE_COPY).is_file():
        raise GenptError(f"{out}: exists and holds files but no {RECIPE_COPY} (not a study folder); "
                         "choose a new --output")


ONLY = ("shards", "report")  # run_study's partial modes


def run_study(recipe_name: str | Path, output: str | Path, *, seeds: int | None = None,
              data_root: str | Path = ".", workers: int = 1, report: bool = True,
              only: str | None = None) -> Path | None:
    """Run (or finish) the study the recipe describes in `output`; returns the path of its report.md.

    `workers` > 1 starts that many processes in all, each with its share of the CPU's threads, which
    claim the stages between them (`genpt.study.claims`); `report=False` runs stages only (a worker).
    `only="shards"` makes the tokenizer and token shards and stops (here, before the folder is carried to
    a GPU machine that runs the rest); `only="report"` runs no stage and reports the finished ones (of a
    study stopped part way)."""
    if workers < 1:
        raise GenptError(f"--workers {workers}: expected 1 or more processes")
    if only is not None and only not in ONLY:
        raise GenptError(f"--only {only}: expected one of {', '.join(ONLY)}")
    recipe = load_recipe(recipe_name, data_root)
    out = Path(output)
    _check_output(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / RECIPE_COPY).is_file() and (out / RECIPE_COPY).read_text() != recipe.text:
        raise GenptError(f"{out}: holds a study of another recipe ({out / RECIPE_COPY}); choose a new --output")
    io.write_text(out / RECIPE_COPY, recipe.text)
    seeds = seeds or recipe.seeds
    if only == "shards":
        if _given_runs(recipe) is None:
            with Claims(out).hold("shards", wait=True):
                log.info("shards ready in %s", _shards(recipe, out))
        return None
    if only == "report":
        with study_kernels(out):
            return _report_so_far(recipe, out, seeds)
    threads = torch.get_num_threads()
    try:
        with study_kernels(out):
            return _run(recipe, out, seeds, data_root, workers, report)
    finally:
        torch.set_num_threads(threads)  # --workers gave this process a share of them


def study_kernels(out: Path) -> AbstractContextManager[None]:
    """Every stage of the study in `out` runs the same kernel for the same call, in whichever process, session or
    load it runs (`select.recorded_in` OUT/kernels.json, which takes the machine's choice for a call when first asked).

    Measured choices may otherwise change between stages (one measured on a busy machine is measured again once
    it is quiet), and a kernel that sums in another order changes a fine-tuning run's result, so a study resumed
    in another session would not repeat its tables. Copying kernels.json into a new study folder repeats it."""
    return select.recorded_in(out / select.KERNELS_FILE)


def _run(recipe: Recipe, out: Path, seeds: int, data_root: str | Path, workers: int, report: bool) -> Path | None:
    helpers = _start_workers(recipe.path, out, seeds, data_root, workers) if workers > 1 else []
    later = Later(Claims(out))
    runs = pretrained_runs(recipe, out, later)
    # The zero-shot curves as soon as their run is pre-trained (a study stopped part way still has them); the
    # report puts them on the fine-tuned scale with whichever full runs have finished.
    tasks = [t for t in recipe.tasks if t.zeroshot]
    for arch, run in runs.items():
        later.run(f"zeroshot-{arch}", partial(_zeroshot_done, run, tasks), partial(_zeroshot_stage, run, tasks),
                  ready=_pretrained(recipe, run))
    finetuned: list[tuple[Task, str, Path]] = []
    jobs = [(task, *job) for task in recipe.tasks for job in _jobs(recipe, task, seeds)]
    # Seed by seed: a study stopped part way has every task and setting at one seed before any at three.
    for task, name, init, values, seed in sorted(jobs, key=lambda job: job[-1]):
        cfg = finetune_config(recipe, task, values, seed)
        folder = out / task.name / name
        finetuned.append((task, name, folder))
        stage = partial(_finetune_stage, runs[init], task, folder, cfg)
        # A run whose pre-training another process is still doing waits for it, at the end.
        later.run(f"{task.name}/{name}", partial(_done, folder), stage, ready=_pretrained(recipe, runs[init]))
    later.finish()
    for helper in helpers:  # a worker that failed left its stages to `later`, which ran them here
        helper.wait()
    if not report:
        return None
    dev_files = {t.name: t.dev for t in recipe.tasks}
    with later.claims.hold("report", wait=True):
        return write_report([*runs.values(), *(folder for _, _, folder in finetuned)], out, dev_files,
                            own_folder=True)


def _report_so_far(recipe: Recipe, out: Path, seeds: int) -> Path:
    """The report of the stages that have finished, running none."""
    given = _given_runs(recipe)
    own = [out / name for name, _ in _pretrain_stages(recipe).values()] if given is None else []
    finetuned = [out / task.name / job[0] for task in recipe.tasks for job in _jobs(recipe, task, seeds)]
    finished = [f for f in [*own, *finetuned] if _done(f)]
    if not finished:
        raise GenptError(f"{out}: no stage of the study has finished yet; nothing to report")
    log.info("reporting the %d of %d stages that have finished", len(finished), len(own) + len(finetuned))
    folders = [*(given or {}).values(), *finished]
    with Claims(out).hold("report", wait=True):
        return write_report(folders, out, {t.name: t.dev for t in recipe.tasks}, own_folder=True)


def _start_workers(recipe: Path, out: Path, seeds: int, data_root: str | Path, workers: int) -> list[subprocess.Popen]:
    """`workers` - 1 more `genpt study` processes on the same folder; this one and each of them get an equal
    share of the CPU's threads (two processes of one thread beat one of two on a shared or small machine)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "genpt", "study", "--recipe", str(recipe), "--output", str(out),
               "--data", str(data_root), "--seeds", str(seeds), "--worker"]
    log.info("%d processes of %d thread(s) each share the stages", workers, threads)
    return [subprocess.Popen(command, env=env) for _ in range(workers - 1)]


def _done(folder: Path) -> bool:
    return stages.finished(folder) is not None


def _pretrained(recipe: Recipe, run: Path) -> Callable[[], bool]:
    """When a fine-tuning run from `run` may start: a run the recipe gives (`init`) is ready as it is (it has
    no stage file to wait for), one this study pre-trains once its stage has finished."""
    return (lambda: True) if "init" in recipe.pretrain else partial(_done, run)


def _zeroshot_heuristics(run: Path, tasks: Sequence[Task]) -> list[tuple[Task, str]]:
    """The heuristics a curve scores, with their task: each task's, and its variants where it has them
    (zeroshot.VARIANTS; cola_slor only where the run's shards are there to count: a given run's may not be)."""
    try:
        shards_of_run(run)
        counted = True
    except GenptError:
        counted = False
    return [(t, name) for t in tasks for name in (t.name, *zs.VARIANTS.get(t.name, ()))
            if counted or name not in zs.COUNTED]


def _zeroshot_done(run: Path, tasks: Sequence[Task]) -> bool:
    """The run's curve has every heuristic's rows (a given run may hold a curve `genpt zeroshot` drew of others;
    a curve drawn before a variant heuristic joined is scored again)."""
    return {name for _, name in _zeroshot_heuristics(run, tasks)} <= {row["task"] for row in zs.read_curve(run)}


def _zeroshot_stage(run: Path, tasks: Sequence[Task]) -> None:
    """Figure 2 (right): each task's zero-shot score over the run's checkpoints (the report normalises them)."""
    curve = run / zs.CURVE_FILE
    if _zeroshot_done(run, tasks):
        return
    specs = []
    for t, heuristic in _zeroshot_heuristics(run, tasks):
        if heuristic in zs.THRESHOLDED:
            train, dev = t.examples()
            # One threshold on a line needs no more: scoring 5,000 sentences at every checkpoint would cost
            # more than the curve's dev sets.
            specs.append(zs.ZeroShotData(heuristic, t.dev, t.train, examples=dev,
                                         train_examples=train[:THRESHOLD_EXAMPLES]))
        else:
            # A heuristic with nothing to choose holds no example back: the whole training split is scored
            # too (the Story Cloze Test's 1,871 stories instead of its 374 for dev), which halves the noise.
            train, dev = dataclasses.replace(t, train_size=0).examples()
            specs.append(zs.ZeroShotData(heuristic, t.dev, examples=[*train, *dev]))
    log.info("zero-shot curves into %s", curve)
    zs.write_curve(run, zs.zeroshot_curve(run, specs))


__all__ = ["RECIPES", "Recipe", "load_recipe", "recipe_path", "run_study"]
