"""A long-lived worker process: loads the data once, then pulls trials until the budget is met."""

from __future__ import annotations

import os
import platform
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from advhpo._errors import AdvhpoError

if TYPE_CHECKING:  # torch is imported in the worker process only, after GPU pinning
    import torch

    from advhpo.objectives import DatasetSplits, EnsembleTrainer
    from advhpo.storage import CheckpointStore
from advhpo.search._settings import StudySettings, stored_settings
from advhpo.search._space import suggest_config
from advhpo.storage import original_trial_number

_MAX_REQUEUES = 100  # interruptions of one trial before it is left failed

_POLL_SECONDS = 2.0  # how often an idle worker looks for freed budget or stale trials


class Interrupted(AdvhpoError):
    """The worker was asked to stop (Ctrl-C / SIGTERM) after a checkpoint."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; picklable, so it crosses the spawn boundary.

    Attributes:
        study_name: The study to work on.
        storage_url: Its storage (unmasked: the worker must connect).
        artifacts: Checkpoint directory.
        data_dir: Dataset directory (``None``: $ADVHPO_DATA_DIR or the cache).
        offline: Never download datasets.
        device: ``"cpu"`` or ``"cuda"`` (the one GPU left visible).
        cuda_visible: Value for ``CUDA_VISIBLE_DEVICES`` (pins the worker to one GPU).
        threads: Intra-op CPU threads (``None``: torch's default).
        worker_id: Index of this worker on its host (varies the sampler seed).
        deadline: ``time.time()`` after which no new trial starts (``None``: no limit).
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds without a heartbeat before a trial counts as lost and is retried.
    """

    study_name: str
    storage_url: str
    artifacts: str
    data_dir: str | None
    offline: bool
    device: str
    cuda_visible: str | None
    threads: int | None
    worker_id: int
    deadline: float | None
    heartbeat_interval: int = 10
    grace_period: int = 60


def make_sampler(settings: StudySettings, worker_id: int) -> optuna.samplers.BaseSampler:
    """The study's sampler for one worker.

    Parallel workers share the study's history but not their random streams: the seed mixes
    the study seed, the worker index and the start time, so neither two workers of one run nor
    a worker of a later ``resume`` replays another's random proposals.
    """
    seed = settings.seed * 7919 + worker_id + int(time.time_ns() % 1_000_003)
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: running trials count as bad guesses, so workers spread out.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


class _Stop:
    """First SIGTERM: stop after the next checkpoint. Second: exit at once.

    SIGINT is ignored: a Ctrl-C in the terminal reaches every process of the group, and the
    launcher turns it into one SIGTERM per worker (and a second Ctrl-C into SIGKILL).
    """

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            # The trial stays RUNNING; its heartbeat stops and it is retried after the grace.
            os._exit(130)
        self.requested = True


def worker_main(spec: WorkerSpec) -> int:
    """Entry point of a worker process.

    Returns:
        0 when the budget is met, the deadline passed or a stop was requested; 1 on a setup
        error (printed as one line).
    """
    if spec.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.cuda_visible  # before torch sees the GPUs
    stop = _Stop()
    try:
        return _work(spec, stop)
    except AdvhpoError as e:
        print(f"worker {spec.worker_id}: error: {e}", flush=True)
        return 1


def _work(spec: WorkerSpec, stop: _Stop) -> int:
    import torch

    from advhpo.objectives import load_splits, resolve_device
    from advhpo.storage import CheckpointStore, open_storage, retry_callback

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(
        spec.storage_url,
        heartbeat_interval=spec.heartbeat_interval,
        grace_period=spec.grace_period,
    )
    settings = stored_settings(optuna.load_study(study_name=spec.study_name, storage=storage))
    study = optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=make_sampler(settings, spec.worker_id),
    )
    splits = load_splits(settings.dataset, spec.data_dir, offline=spec.offline)
    device = resolve_device(spec.device)
    objective = _Objective(
        spec, settings, splits, device, CheckpointStore(Path(spec.artifacts)), stop
    )
    retry = retry_callback(_MAX_REQUEUES)

    def requeue_interrupted(study: optuna.Study, trial: FrozenTrial) -> None:
        # An interrupted trial is not a failure of its parameters: queue it again so that a
        # later `advhpo run`/`resume` continues it from its checkpoint.
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"):
            retry(study, trial)

    while not stop.requested:
        fail_stale_trials(study)
        done, running = _counts(study)
        if done >= settings.budget or (spec.deadline and time.time() > spec.deadline):
            break
        if done + running >= settings.budget:
            time.sleep(_POLL_SECONDS)  # wait: a running trial may still fail and free budget
            continue
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[requeue_interrupted])
    return 0


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and so retry) trials whose worker stopped sending heartbeats."""
    with warnings.catch_warnings():
        # Experimental since Optuna 2.9 and stable in use; the warning would flood the logs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _counts(study: optuna.Study) -> tuple[int, int]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    return done, len(trials) - done


def one_line(e: BaseException) -> str:
    """``Type: message`` folded to one line, for the ``fail_reason`` user attribute."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]


class _Objective:
    """Trains and scores one trial, checkpointing every epoch."""

    def __init__(
        self,
        spec: WorkerSpec,
        settings: StudySettings,
        splits: DatasetSplits,
        device: torch.device,
        store: CheckpointStore,
        stop: _Stop,
    ) -> None:
        self.spec, self.settings, self.splits = spec, settings, splits
        self.device, self.store, self.stop = device, store, stop

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        from advhpo.objectives import make_ensemble_trainer, run_trial

        self._claim_budget(trial)
        trial.set_user_attr("interrupted", False)
        trial.set_user_attr("host", platform.node())
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("worker_pid", os.getpid())
        try:
            cfg = suggest_config(trial, self.settings)
            key = original_trial_number(trial)
            trainer = make_ensemble_trainer(cfg, self.device)
            saved = self.store.load(self.spec.study_name, key)
            # Training seconds of earlier attempts, so a resumed trial's cost is its full cost.
            prior_seconds = 0.0
            if saved is not None and saved[1].get("config") == cfg.to_dict():
                trainer.load_state_dict(saved[1]["trainer"])
                prior_seconds = float(saved[1].get("train_seconds", 0.0))
                trial.set_user_attr("resumed_from_epoch", saved[0])
            start = time.perf_counter()

            def on_epoch(epoch: int, trainer: EnsembleTrainer) -> None:
                state = {
                    "config": cfg.to_dict(),
                    "trainer": trainer.state_dict(),
                    "train_seconds": prior_seconds + time.perf_counter() - start,
                }
                self.store.save(self.spec.study_name, key, epoch, state)
                trial.set_user_attr("epoch_history", trainer.history())
                if self.stop.requested:
                    raise Interrupted(f"stopped after the checkpoint of epoch {epoch}")

            def progress(phase: str, done: int, total: int) -> None:
                if self.stop.requested and phase == "eval":
                    raise Interrupted("stopped during evaluation; training is checkpointed")

            m = run_trial(
                cfg,
                self.splits,
                self.device,
                trainer=trainer,
                on_epoch=on_epoch,
                progress=progress,
            ).metrics
        except Exception as e:
            trial.set_user_attr("fail_reason", one_line(e))
            trial.set_user_attr("interrupted", isinstance(e, Interrupted))
            raise
        train_seconds = prior_seconds + m["train_seconds"]
        trial.set_user_attr("train_seconds", train_seconds)
        for name in (
            "pgd_acc",
            "transfer_acc",
            "member_clean_acc",
            "eps_curve",
            "eval_seconds",
            "n_eval",
            "n_train",
            "torch_threads",
        ):
            trial.set_user_attr(name, m[name])
        trial.set_user_attr("epoch_history", m["epochs"])
        trial.set_user_attr("fail_reason", None)
        if self.settings.cost:
            return m["clean_acc"], m["fgsm_acc"], train_seconds
        return m["clean_acc"], m["fgsm_acc"]

    def _claim_budget(self, trial: optuna.Trial) -> None:
        """Prune this trial if earlier trials already cover the budget (no overshoot).

        Two workers may ask for a trial at the same moment; the one with the higher number
        steps back, so the study never holds more than ``budget`` COMPLETE trials.
        """
        ahead = [
            t
            for t in trial.study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)
            )
            if t.number < trial.number
        ]
        if len(ahead) >= self.settings.budget:
            trial.set_user_attr("skipped", "budget already taken by other trials")
            raise optuna.TrialPruned()
