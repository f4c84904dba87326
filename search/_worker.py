"""A long-lived worker process: loads the data once, then pulls trials until the budget is met."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from advhpo._errors import AdvhpoError, ConfigError, DivergenceError

if TYPE_CHECKING:  # torch is imported in the worker process only, after GPU pinning
    import torch

    from advhpo.objectives import DatasetSplits, EnsembleTrainer, EpochEnd
    from advhpo.storage import CheckpointStore, ResilientRDBStorage
from advhpo.search._budget import EARLY_STOP_ATTR, budget_counts, lineages_ahead
from advhpo.search._early_stop import EPOCH_VALUES_ATTR, EarlyStopRule, reference_points
from advhpo.search._fail_reason import FAIL_REASON_ATTR, LOST_REASON, fail_reason
from advhpo.search._requeue import requeue_dropped
from advhpo.search._sampler_state import load_sampler_state, save_sampler_state
from advhpo.search._settings import StudySettings, stored_settings
from advhpo.search._slot import SlotLease
from advhpo.search._space import suggest_config
from advhpo.storage import (
    GRACE_ATTR,
    INTERRUPTED_ATTR,
    RetryLostTrial,
    is_transient,
    original_trial_number,
    requeue_interrupted,
)

_MAX_REQUEUES = 100  # interruptions of one trial before it is left failed

# Trials in a row failed for a reason not of their parameters: the cause is this worker's
# setup (disk, GPU, a broken data copy), and going on would only turn the rest of the budget
# into failed trials.
_MAX_FAILURES_IN_A_ROW = 5
# Failures of the parameters, not the worker: a diverging loss, a config the space allows but
# the net refuses, a net or ensemble too big for the device (CUDA's OutOfMemoryError, the CPU
# allocator's RuntimeError). Samplers do not learn from failed trials, so these may repeat.
_PER_TRIAL_FAILURES = (
    f"{DivergenceError.__name__}:",
    f"{ConfigError.__name__}:",
    "OutOfMemoryError:",
)
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory")
# Failed trials of any kind in a row: a space whose every trial diverges, or a GPU another job
# has filled, would otherwise fail trials until the deadline (failed ones spend no budget).
_MAX_ANY_FAILURES_IN_A_ROW = 20

_POLL_SECONDS = 2.0  # how often an idle worker looks for freed budget or stale trials


class Interrupted(AdvhpoError):
    """The worker was asked to stop (Ctrl-C / SIGTERM) after a checkpoint."""


class WorkerGaveUp(AdvhpoError):
    """Trial after trial failed on this worker: for a reason not of their parameters, or so
    many in a row that the space or the device fails every trial."""


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


def make_sampler(settings: StudySettings, worker_id: int | str) -> optuna.samplers.BaseSampler:
    """The study's sampler for one worker.

    The seed derives from the study seed, this host's name and the worker's slot (its index,
    or a :class:`SlotLease` name while another live launcher on this host has that index): a
    study is reproducible with one worker, and parallel workers (on this host or others) do not
    replay each other's proposals. A resumed worker then continues its slot's stored stream
    (see :func:`load_sampler_state`) instead of starting this seed's stream again.
    """
    seed = zlib.crc32(f"{settings.seed}:{host_name()}:{worker_id}".encode())
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "tpe":
        with warnings.catch_warnings():
            # constant_liar: running trials count as bad guesses, so workers spread out. group
            # (experimental since Optuna 2.8): adv_eps exists only in adversarially trained
            # trials; without it, multivariate TPE samples that conditional parameter
            # independently.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, constant_liar=True
            )
    # The default (docs/results.md: the best front in 100 trials on 3 of 3 seeds). Since
    # Optuna 5 running trials enter its acquisition (qLogEHVI), so parallel workers spread out.
    # Its joint space leaves out the conditional adv_eps, which its random independent sampler
    # draws instead; GP won with that handicap, and a warning on every trial would bury others.
    return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)


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
        error, a storage outage longer than the retries, or trial after trial failing for a
        reason not of its parameters (printed as one line).
    """
    if spec.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.cuda_visible  # before torch sees the GPUs
    stop = _Stop()
    try:
        return _work(spec, stop)
    except AdvhpoError as e:
        print(f"worker {spec.worker_id}: error: {e}", flush=True)
        return 1
    except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as e:
        # An outage longer than the storage's retries: exit non-zero so a supervisor (the
        # compose restart policy, systemd) starts the worker again; its trial is retried.
        print(f"worker {spec.worker_id}: error: storage failed: {one_line(e.__cause__ or e)}")
        return 1


def _work(spec: WorkerSpec, stop: _Stop) -> int:
    import torch

    from advhpo.objectives import load_splits, resolve_device
    from advhpo.storage import CheckpointStore, open_storage

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    # Optuna logs every failed trial with its traceback at WARNING; the launcher prints one
    # line per failure from the trial's fail_reason instead, and an interrupted trial is no
    # failure to show at all.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(
        spec.storage_url,
        heartbeat_interval=spec.heartbeat_interval,
        grace_period=spec.grace_period,
    )
    settings = stored_settings(optuna.load_study(study_name=spec.study_name, storage=storage))
    study_id = storage.get_study_id_from_name(spec.study_name)
    splits = load_splits(settings.dataset, spec.data_dir, offline=spec.offline)
    device = resolve_device(spec.device)
    store = CheckpointStore(Path(spec.artifacts))
    # The CLI checked this before making the study; run_workers from Python did not.
    store.check_writable()
    objective = _Objective(spec, storage, settings, splits, device, store, stop)
    lease = SlotLease(storage, study_id, host_name(), spec.worker_id, spec.grace_period)
    lease.claim()
    try:
        return _pull_trials(spec, stop, storage, settings, lease, objective)
    finally:
        # Best effort: in an outage the lease goes stale after the grace period instead, and
        # the worker's own exit reason is what must surface.
        with contextlib.suppress(Exception):
            lease.release()


def _pull_trials(
    spec: WorkerSpec,
    stop: _Stop,
    storage: ResilientRDBStorage,
    settings: StudySettings,
    lease: SlotLease,
    objective: _Objective,
) -> int:
    """Run trials of the study until its budget is met, the deadline passes or a stop."""
    study_id = lease.study_id
    study = optuna.load_study(study_name=spec.study_name, storage=storage)

    def take_slot(slot: int | str) -> None:
        study.sampler = make_sampler(settings, slot)
        load_sampler_state(storage, study_id, host_name(), slot, study.sampler)

    assert lease.slot is not None
    slot = lease.slot
    take_slot(slot)

    def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
        # An interrupted trial is not a failure of its parameters: queue it again so that a
        # later `advhpo run`/`resume` continues it from its checkpoint. Interruptions do not
        # count against the retries a lost trial gets.
        if trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED_ATTR):
            requeue_interrupted(study, trial, _MAX_REQUEUES)

    lost_retry = objective.lost_retry
    failures_in_a_row = any_failures_in_a_row = 0
    while not stop.requested:
        if lease.lost:
            # This process was suspended (or cut off) past its grace period and another one
            # took the slot over: go on in a slot of our own rather than share its stream.
            slot = lease.claim()
            take_slot(slot)
            print(
                f"worker {spec.worker_id}: its sampler slot was taken over; now slot {slot}",
                flush=True,
            )
        fail_stale_trials(study)
        requeue_dropped(study, lost_retry, _MAX_REQUEUES)
        done, running = budget_counts(study)
        if done >= settings.budget or (spec.deadline and time.time() > spec.deadline):
            break
        if done + running >= settings.budget:
            time.sleep(_POLL_SECONDS)  # wait: a running trial may still fail and free budget
            continue
        objective.current = None
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[requeue])
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            # Optuna's tell refuses a trial that is no longer RUNNING: another worker failed
            # ours for missed heartbeats (this process was suspended, or the database out of
            # reach for the grace period), and its retry continues from the checkpoint; or
            # someone failed it by hand (optuna-dashboard's Fail Trial); the objective stops
            # within a heartbeat interval of either (_settled_check). Or our own tell committed
            # but its acknowledgement was lost and the retry was refused. Either way the trial
            # is settled: go on.
            current = objective.current
            if current is None:
                raise
            settled = storage.get_trial(current._trial_id)
            if not settled.state.is_finished():
                raise
            if fail_reason(settled) == LOST_REASON:
                print(
                    f"worker {spec.worker_id}: trial {current.number} was failed for missed "
                    "heartbeats meanwhile; its retry continues from the checkpoint",
                    flush=True,
                )
            elif settled.state == TrialState.FAIL:
                print(
                    f"worker {spec.worker_id}: trial {current.number} was failed from outside "
                    "advhpo meanwhile (optuna-dashboard's Fail Trial?); stopped, not retried",
                    flush=True,
                )
        if lease.renew():  # a process suspended meanwhile may have lost the slot to another
            save_sampler_state(storage, study_id, host_name(), slot, study.sampler)
        ran = None if objective.current is None else storage.get_trial(objective.current._trial_id)
        # A trial this worker lost (it was suspended) or someone failed by hand carries no
        # reason of its own and says nothing about the next: the streaks skip it.
        if ran is not None and (ran.state != TrialState.FAIL or _own_reason(ran)):
            failures_in_a_row = failures_in_a_row + 1 if _failed_by_setup(ran) else 0
            failed = ran.state == TrialState.FAIL and not ran.user_attrs.get(INTERRUPTED_ATTR)
            any_failures_in_a_row = any_failures_in_a_row + 1 if failed else 0
            if (
                failures_in_a_row >= _MAX_FAILURES_IN_A_ROW
                or any_failures_in_a_row >= _MAX_ANY_FAILURES_IN_A_ROW
            ):
                n = max(failures_in_a_row, any_failures_in_a_row)
                raise WorkerGaveUp(
                    f"{n} trials in a row failed, the last (trial {ran.number}) with "
                    f"{ran.user_attrs.get(FAIL_REASON_ATTR)}; stopping this worker"
                )
    return 0


def _own_reason(trial: FrozenTrial) -> bool:
    """Whether the attempt's worker wrote why it ended (``FAIL_REASON_ATTR``)."""
    return bool(trial.user_attrs.get(FAIL_REASON_ATTR))


def _failed_by_setup(trial: FrozenTrial) -> bool:
    """Whether the trial failed for a reason that would fail any trial on this worker."""
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    return (
        trial.state == TrialState.FAIL
        and not trial.user_attrs.get(INTERRUPTED_ATTR)
        and isinstance(reason, str)
        and not reason.startswith(_PER_TRIAL_FAILURES)
        and not any(text in reason for text in _OUT_OF_MEMORY)
    )


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and so retry) trials whose worker is gone (see
    :meth:`advhpo.storage.ResilientRDBStorage._get_stale_trial_ids` for which)."""
    with warnings.catch_warnings():
        # Experimental since Optuna 2.9 and stable in use; the warning would flood the logs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _origin_started(trial: optuna.Trial, key: int) -> str | None:
    """When the first attempt of trial ``key`` (a retry's original) started, as ISO text."""
    storage = trial.storage
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    origin = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, key))
    return None if origin.datetime_start is None else origin.datetime_start.isoformat()


def host_name() -> str:
    """This host's name in trial records: ``$ADVHPO_HOST`` if set, else the machine's name.

    Containers get random hostnames; a deployment names its hosts so records stay readable.
    """
    return os.environ.get("ADVHPO_HOST") or platform.node()


def one_line(e: BaseException) -> str:
    """``Type: message`` folded to one line, for the ``fail_reason`` user attribute."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]


class _Objective:
    """Trains and scores one trial, checkpointing every epoch."""

    def __init__(
        self,
        spec: WorkerSpec,
        storage: ResilientRDBStorage,
        settings: StudySettings,
        splits: DatasetSplits,
        device: torch.device,
        store: CheckpointStore,
        stop: _Stop,
    ) -> None:
        self.spec, self.storage, self.settings, self.splits = spec, storage, settings, splits
        self.device, self.store, self.stop = device, store, stop
        self.early_stop = (
            None
            if settings.early_stop is None
            else EarlyStopRule(settings.early_stop, settings.early_stop_min_trials)
        )
        self.current: optuna.Trial | None = None  # the trial being run
        callback = storage.get_heartbeat_stale_trial_callback()
        self.lost_retry = callback if isinstance(callback, RetryLostTrial) else None

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        self.current = trial
        try:
            return self._attempt(trial)
        except (optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError):
            raise  # pruned on purpose, or failed by another process: nothing more to record
        except Exception as e:
            self._record_failure(trial, e)
            raise

    def _record_failure(self, trial: optuna.Trial, e: Exception) -> None:
        """Say why the attempt failed, before Optuna tells it failed."""
        if is_transient(e):
            # The database stayed out of reach past the outage window: no fault of the trial.
            # Failed as lost, it is retried from its checkpoint.
            self.storage.judge_lost(trial._trial_id)
            return
        try:
            # Interrupted first: a reason without it would read as a failure of its own.
            trial.set_user_attr(INTERRUPTED_ATTR, isinstance(e, Interrupted))
            trial.set_user_attr(FAIL_REASON_ATTR, one_line(e))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed by another process meanwhile: Optuna's tell will find it so
        except Exception:
            # The database stayed out of reach past the outage window. The FAIL Optuna tells
            # next (it retries too) marks the attempt lost, so it is retried from its
            # checkpoint rather than read as failed from outside.
            self.storage.judge_lost(trial._trial_id)

    def _attempt(self, trial: optuna.Trial) -> tuple[float, ...]:
        from advhpo.objectives import make_ensemble_trainer, restore_ensemble_trainer, run_trial

        # Other workers judge this trial lost by our grace period, not theirs: our heartbeats
        # come every grace/6 s, which a host with a shorter one would take for silence.
        trial.storage.set_trial_system_attr(trial._trial_id, GRACE_ATTR, self.spec.grace_period)
        # A retry inherits its predecessor's attributes; only this attempt's own end may say
        # why it failed (an attempt that dies without a word is told as lost, fail_reason()),
        # whether it stopped early, or where it resumed from.
        trial.set_user_attr(FAIL_REASON_ATTR, None)
        trial.set_user_attr(INTERRUPTED_ATTR, False)
        trial.set_user_attr(EARLY_STOP_ATTR, None)
        trial.set_user_attr("early_stop_share", None)
        trial.set_user_attr("resumed_from_epoch", None)
        self._claim_budget(trial)  # after the reset: an inherited early stop would spend budget
        trial.set_user_attr("host", host_name())
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("worker_pid", os.getpid())
        cfg = suggest_config(trial, self.settings)
        key = original_trial_number(trial)
        origin = _origin_started(trial, key)
        saved = self.store.load(self.spec.study_name, key)
        # Training seconds of earlier attempts, so a resumed trial's cost is its full cost.
        prior_seconds = 0.0
        epoch_values: list[dict[str, Any]] = []
        # Checkpoint files are named by study name and trial number only: a study deleted
        # and made again under its name, or another database's study of that name sharing
        # the artifact folder, finds files that are not its own. The original attempt's
        # start time tells them apart; the config alone does not, it is seeded the same.
        if (
            saved is not None
            and saved[1].get("config") == cfg.to_dict()
            and saved[1].get("origin_started") == origin
        ):
            # In the checkpoint's own strategy: the attempt before may have run on a GPU.
            trainer = restore_ensemble_trainer(cfg, self.device, saved[1]["trainer"])
            prior_seconds = float(saved[1].get("train_seconds", 0.0))
            epoch_values = list(saved[1].get("epoch_values", []))
            trial.set_user_attr("resumed_from_epoch", saved[0])
        else:
            trainer = make_ensemble_trainer(cfg, self.device)

        def on_epoch(end: EpochEnd, trainer: EnsembleTrainer) -> None:
            if end.scores is not None:
                epoch_values.append(end.scores)
            state = {
                "config": cfg.to_dict(),
                "origin_started": origin,
                "trainer": trainer.state_dict(),
                "train_seconds": prior_seconds + end.train_seconds,
                "epoch_values": epoch_values,
            }
            # So far: a trial stopped early or interrupted still shows what it cost. First,
            # because it raises if another worker has failed the trial meanwhile, and the
            # checkpoint then belongs to that trial's retry.
            trial.set_user_attr("train_seconds", state["train_seconds"])
            self.store.save(self.spec.study_name, key, end.epoch, state)
            trial.set_user_attr("epoch_history", trainer.history())
            trial.set_user_attr(EPOCH_VALUES_ATTR, epoch_values)
            if end.scores is not None:
                self._maybe_stop_early(trial, end.epoch, end.scores)
            if self.stop.requested:
                raise Interrupted(f"stopped after the checkpoint of epoch {end.epoch}")

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
            poll=self._settled_check(trial),
        ).metrics
        train_seconds = prior_seconds + m["train_seconds"]
        trial.set_user_attr("train_seconds", train_seconds)
        trial.set_user_attr("epoch_eval_seconds", m["epoch_eval_seconds"])
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
        trial.set_user_attr(FAIL_REASON_ATTR, None)
        if self.settings.cost:
            return m["clean_acc"], m["fgsm_acc"], train_seconds
        return m["clean_acc"], m["fgsm_acc"]

    def _settled_check(self, trial: optuna.Trial) -> Callable[[], None]:
        """A ``run_trial`` poll that abandons the trial once a heartbeat found it finished.

        Failed by hand (optuna-dashboard's Fail Trial) or as lost while this process was
        suspended, the trial has nothing left to gain from this worker, and an epoch end,
        where the first write would find out, can be many minutes away. The heartbeat thread
        reads the state (:meth:`ResilientRDBStorage.finished_elsewhere`); training steps never
        wait on the database.
        """

        def check() -> None:
            if self.storage.finished_elsewhere(trial._trial_id):
                raise optuna.exceptions.UpdateFinishedTrialError(
                    f"trial {trial.number} was finished by another process"
                )

        return check

    def _maybe_stop_early(self, trial: optuna.Trial, epoch: int, scores: dict[str, Any]) -> None:
        """Prune the trial if enough completed trials dominated its point at this epoch."""
        if self.early_stop is None:
            return
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        reference = reference_points(done, epoch)
        point = (float(scores["clean_acc"]), float(scores["fgsm_acc"]))
        if self.early_stop.should_stop(point, reference):
            share = self.early_stop.share_dominating(point, reference)
            trial.set_user_attr(EARLY_STOP_ATTR, epoch)
            trial.set_user_attr("early_stop_share", share)
            raise optuna.TrialPruned(
                f"epoch {epoch}: dominated by {share:.0%} of {len(reference)} completed trials"
            )

    def _claim_budget(self, trial: optuna.Trial) -> None:
        """Prune this trial if earlier trials already cover the budget (no overshoot).

        Two workers may ask for a trial at the same moment; the one with the higher number
        steps back, so the study never holds more than ``budget`` trials that spend it. A
        retry ranks by its original's number and a queued trial ahead (a retry, a baseline)
        counts too: workers take queued trials first, so it will run, and a new trial that ran
        beside it would overshoot (``lineages_ahead``).
        """
        trials = trial.study.get_trials(deepcopy=False)
        ahead = lineages_ahead(trials, original_trial_number(trial), self.lost_retry, _MAX_REQUEUES)
        if len(ahead) >= self.settings.budget:
            trial.set_user_attr("skipped", "budget already taken by other trials")
            raise optuna.TrialPruned()
