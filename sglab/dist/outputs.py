"""The run directory of a multi-process run: the in-process trainer's files, with a checkpoint per rank.

A distributed run writes what :func:`sglab.training.train` writes (:class:`~sglab.training.RunDir`):

=====================  =================================================================================
``config.json``        the loop's record (config, seed, device, data, versions, provenance) plus ``processes``
``metrics.csv``        the loop's tidy rows: ``train`` at ``log_every`` (from the last rank), ``eval`` at
                       ``eval_every`` (rank 0, on every stage's weights gathered at that step)
``summary.json``       the loop's summary keys (``status``, ``steps``, ``final_test_error``, ``train_time_s`` ...)
``checkpoint.pt``      the *manifest*: the loop's checkpoint record (task, config, step, elapsed, metrics,
                       history) without the session; written by rank 0 once every rank's file of that
                       step is on disk, so it always names a complete checkpoint
``checkpoints/``       ``step00000020/rank{r}.pt``: rank ``r``'s modules, optimizers, batch order and
                       generators (the in-process session's ``state_dict`` restricted to its stages)
``trace.csv``          the measured trace of every op of every rank on one clock (:mod:`sglab.dist.measured_trace`)
``trace.json``         the same as a Chrome trace (Perfetto)
=====================  =================================================================================

Every file is written atomically (:mod:`sglab.io`). Rank ``r`` writes its own checkpoint file;
after a barrier rank 0 writes the manifest and only then removes older step directories, so a
crash at any moment leaves the manifest naming a step whose every rank file exists.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from sglab.errors import SglabError, UsageError
from sglab.io import atomic_write_bytes, remove_temporaries
from sglab.training.classify import ClassifySession
from sglab.training.run_dir import RunDir

#: ``format`` of a distributed run's manifest (``checkpoint.pt``).
MANIFEST_FORMAT = "sglab.dist/1"
_STEP_DIR = re.compile(r"^step(\d{8})$")


class DistRunDir(RunDir):
    """A :class:`RunDir` whose checkpoint is a manifest plus one file per rank and step."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self.checkpoints = self.path / "checkpoints"
        self.trace = self.path / "trace.csv"
        self.chrome_trace = self.path / "trace.json"

    def step_dir(self, step: int) -> Path:
        """Where every rank's checkpoint of ``step`` lives."""
        return self.checkpoints / f"step{step:08d}"

    def rank_checkpoint(self, step: int, rank: int) -> Path:
        """Rank ``rank``'s checkpoint file of ``step``."""
        return self.step_dir(step) / f"rank{rank}.pt"

    def save_rank_checkpoint(self, step: int, rank: int, state: dict[str, Any]) -> None:
        """Write rank ``rank``'s state of ``step`` atomically."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._write(self.rank_checkpoint(step, rank), atomic_write_bytes, buffer.getvalue())

    def load_rank_checkpoint(self, step: int, rank: int) -> dict[str, Any]:
        """Rank ``rank``'s state of ``step``, with a clear error when it is missing or unreadable."""
        path = self.rank_checkpoint(step, rank)
        if not path.exists():
            raise SglabError(f"cannot resume: {path} is missing (the manifest {self.checkpoint} names step {step}); "
                             "the run directory was changed by hand?")
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # torch raises several kinds for corrupt files
            raise SglabError(f"{path}: cannot read checkpoint ({err})") from None

    def complete_steps(self, processes: int) -> list[int]:
        """The steps whose checkpoint every one of ``processes`` ranks wrote, in order."""
        found = []
        for step, folder in self._step_dirs():
            if all((folder / f"rank{rank}.pt").exists() for rank in range(processes)):
                found.append(step)
        return found

    def prune(self, keep: int | None) -> None:
        """Remove every step directory but ``keep``'s, and the temporaries a killed write left."""
        for step, folder in self._step_dirs():
            if step != keep:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                remove_temporaries(folder)

    def _step_dirs(self) -> list[tuple[int, Path]]:
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
        return sorted(found)


class NoRunDir(DistRunDir):
    """A run without a directory: the same protocol, nothing written (``train_distributed(run)`` alone)."""

    def __init__(self):
        super().__init__("(no run directory)")

    def open(self) -> "NoRunDir":
        return self

    def _write(self, path: Path, write, *args) -> None:
        pass

    def prune(self, keep: int | None) -> None:
        pass


def read_manifest(run_dir: DistRunDir, processes: int) -> dict[str, Any]:
    """The manifest of ``run_dir``, checked to be a distributed run's of ``processes`` ranks."""
    manifest = run_dir.load_checkpoint()
    if manifest.get("format") != MANIFEST_FORMAT:
        raise UsageError(f"cannot resume {run_dir.path} with processes: its checkpoint was written by the in-process "
                         "trainer; resume it without --processes")
    if manifest["processes"] != processes:
        raise UsageError(f"cannot resume: the checkpoint in {run_dir.path} was written by {manifest['processes']} "
                         f"process(es), not {processes}; resume with --processes {manifest['processes']}")
    return manifest


def owned_names(session: ClassifySession, stages: range) -> list[str]:
    """The session's module and optimizer names that belong to ``stages``: each stage, the
    gradient synthesizer it uses (interface ``i`` after stage ``i``) and its input model (interface ``i-1``)."""
    names = []
    for i in stages:
        names.append(f"stage{i}")
        names.append(f"synthesizer{i}")
        names.append(f"input_model{i - 1}")
    known = set(session.modules()) | set(session.optimizers())
    return [name for name in names if name in known]


def owned_state(session: ClassifySession, names: list[str]) -> dict[str, Any]:
    """:meth:`Session.state_dict` restricted to ``names``: merged over ranks it is the in-process session's."""
    modules, optimizers = session.modules(), session.optimizers()
    return {"modules": {k: modules[k].state_dict() for k in names if k in modules},
            "optimizers": {k: optimizers[k].state_dict() for k in names if k in optimizers},
            "extra": session.extra_state(), "torch_rng": torch.get_rng_state()}


def load_owned_state(session: ClassifySession, state: dict[str, Any]) -> None:
    """Restore an :func:`owned_state` into ``session`` (its other modules are left as they are)."""
    modules, optimizers = session.modules(), session.optimizers()
    for key, value in state["modules"].items():
        modules[key].load_state_dict(value)
    for key, value in state["optimizers"].items():
        optimizers[key].load_state_dict(value)
    session.load_extra_state(state["extra"])
    torch.set_rng_state(state["torch_rng"])


def merge_rank_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Every rank's :func:`owned_state` of one step as one in-process session ``state_dict``."""
    merged = {"modules": {}, "optimizers": {}, "extra": states[0]["extra"], "torch_rng": states[0]["torch_rng"]}
    for state in states:
        merged["modules"].update(state["modules"])
        merged["optimizers"].update(state["optimizers"])
    return merged


class SummaryOf:
    """What :func:`sglab.training.loop._summary` reads of a session: the classify session's summary
    (which reads only the config, so the launcher, holding no session, can write one too) plus ``extra``
    (a pipeline's schedule: :meth:`sglab.dist.pipeline_worker.PipelineWorker.describe`)."""

    def __init__(self, config, extra: dict[str, Any] | None = None):
        self.config, self.extra = config, dict(extra or {})

    def summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The in-process summary's keys of ``rows``, then the extra ones."""
        return {**ClassifySession.summary(self, rows), **self.extra}


class MetricValues:
    """What every rank's worker shares: its fields of the metric rows, handed to the loop step by step.

    A worker fills ``self.values[step]``; the loop takes them at each meeting (:meth:`take_values`).
    """

    values: dict[int, dict]

    def take_values(self) -> dict[int, dict]:
        """This rank's fields of the metric rows of the steps since the last call, by step."""
        values, self.values = self.values, {}
        return values

    def describe(self) -> dict:
        """What the run's records add to the in-process ones (config, manifest, summary): nothing."""
        return {}
