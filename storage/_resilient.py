"""Riding out a database outage: storage calls retried while the server is away.

A PostgreSQL restart, a fail-over or a dropped network link breaks every open connection;
Optuna's RDB storage turns that into an exception in whatever call was running — a trial's
``tell``, a heartbeat, a progress poll — and a worker that has trained for an hour dies with
its result. Here every storage call that reaches the database is retried, with back-off, for up
to :data:`OUTAGE_SECONDS`, when the error says the connection (not the query) failed; the
pool's pre-ping then hands the retry a fresh connection. SQLite's "database is locked" past the
busy timeout is retried the same way.

A write retried after a lost acknowledgement (the connection drops while the server commits)
applies twice. Attributes and heartbeats are idempotent, and a finished trial cannot be
finished again (the worker sees it finished and goes on). The two writes that are not
idempotent carry a fresh token, written in the same transaction: every new trial (empty, or made
from a template such as a queued retry or a baseline) and every claim of a WAITING trial. A
retried creation first looks for its token and a retried claim checks whose token the trial
holds, so a lost acknowledgement neither makes a second trial nor claims a second one. Should a
RUNNING trial still never record a heartbeat (a worker killed between ``ask`` and its first
beat), this storage's stale check returns it too, which Optuna's skips, so it is failed and
re-queued and cannot hold the study's budget forever.
"""

from __future__ import annotations

import copy
import functools
import json
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult

OUTAGE_SECONDS = 180.0  # a restart takes seconds; a fail-over or a node reboot, a minute or two
_FIRST_WAIT = 0.5
_MAX_WAIT = 10.0

# The methods of RDBStorage that open a session. Optuna's _CachedStorage, which wraps an
# RDBStorage inside every Study, calls some private ones directly, so those are listed too.
# create_new_trial and set_trial_state_values are absent: their overrides below retry them with
# one token per request (a retry of the outer create_new_trial would mint a second token);
# record_heartbeat too, retried by its override.
_RETRIED = (
    "_get_trials",
    "_get_best_trial_id",
    "_set_trial_param",
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "set_trial_param",
    "get_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
)

CREATE_TOKEN_ATTR = "advhpo:create_token"  # system attribute naming one creation request
CLAIM_TOKEN_ATTR = "advhpo:claim_token"  # system attribute naming the claim that started a trial
# System attribute: the grace period (s) of the worker running the trial, which judges it lost.
GRACE_ATTR = "advhpo:grace_period"
# System attribute: when a worker failed the trial as lost, written in the transaction that fails
# it. A trial failed without it or a reason of its own was failed from outside advhpo (e.g.
# optuna-dashboard's "Fail Trial" button, which writes only the state), and is not retried.
LOST_ATTR = "advhpo:judged_lost"

_F = TypeVar("_F", bound=Callable[..., Any])
_inside = threading.local()  # a retried call that calls another must not nest the waits
_request = threading.local()  # the token of the empty-trial creation this thread is making


def is_transient(error: BaseException) -> bool:
    """True if ``error`` means the database was unreachable, not that the request was wrong."""
    cause: BaseException | None = error
    if isinstance(error, optuna.exceptions.StorageInternalError):
        cause = error.__cause__
    if isinstance(cause, sa_exc.PendingRollbackError | sa_exc.DisconnectionError):
        return True
    if isinstance(cause, sa_exc.DBAPIError):
        if cause.connection_invalidated:
            return True
        if isinstance(cause, sa_exc.OperationalError | sa_exc.InterfaceError):
            text = str(cause.orig).lower()
            # SQLite reports a missing table as OperationalError too: only its lock is transient.
            return "sqlite" not in type(cause.orig).__module__ or "locked" in text or "busy" in text
    return False


def _retrying(method: _F) -> _F:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        if getattr(_inside, "active", False):
            return method(*args, **kwargs)
        _inside.active = True
        try:
            deadline = time.monotonic() + OUTAGE_SECONDS
            wait = _FIRST_WAIT
            warned = False
            while True:
                try:
                    return method(*args, **kwargs)
                except Exception as e:
                    if not is_transient(e) or time.monotonic() + wait > deadline:
                        raise
                    if not warned:
                        reason = " ".join(str(e.__cause__ or e).split())[:200]
                        print(
                            f"storage unreachable ({reason}); retrying for up to "
                            f"{OUTAGE_SECONDS:.0f} s",
                            file=sys.stderr,
                            flush=True,
                        )
                        warned = True
                    time.sleep(wait * random.uniform(0.8, 1.2))
                    wait = min(2 * wait, _MAX_WAIT)
        finally:
            _inside.active = False

    return call  # type: ignore[return-value]


class ResilientRDBStorage(RDBStorage):
    """:class:`optuna.storages.RDBStorage` whose database calls survive an outage.

    Calls that fail because the connection failed are retried with back-off for up to
    :data:`OUTAGE_SECONDS`; other errors surface at once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._judged_lost: set[int] = set()  # trials whose next FAIL here marks them lost
        self._finished: set[int] = set()  # running here, found finished by a heartbeat

    def judge_lost(self, trial_id: int) -> None:
        """Have the next FAIL of this trial through this storage mark it lost (:data:`LOST_ATTR`).

        The mark and the state are written in one transaction, so no trial carries the mark
        without having been failed by it: a trial judged lost whose FAIL never came (the
        judging process died in between) and that someone fails by hand later reads as failed
        from outside, and a trial failed by hand between the judgement and the FAIL keeps no
        mark (the FAIL is refused: it is finished).
        """
        self._judged_lost.add(trial_id)

    def finished_elsewhere(self, trial_id: int) -> bool:
        """Whether a heartbeat of this running trial found it finished meanwhile.

        The trial's worker asks between training steps (a set lookup, no database call):
        another process failed the trial, by hand (optuna-dashboard's Fail Trial) or as lost
        while this one was suspended, and training it further is wasted.
        """
        return trial_id in self._finished

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat, retried; it also reads the trial's state for
        :meth:`finished_elsewhere`, in the heartbeat's own thread.

        An outage longer than the retries is reported and survived: Optuna's heartbeat thread
        would end at the first exception, and the trial go on without beats once the database
        is back.
        """
        try:
            _retrying(type(self)._beat)(self, trial_id)
        except Exception as e:
            if not is_transient(e):
                raise
            print(f"heartbeat of trial {trial_id} missed: storage unreachable", file=sys.stderr)

    def _beat(self, trial_id: int) -> None:
        RDBStorage.record_heartbeat(self, trial_id)
        query = sqlalchemy.text("SELECT state FROM trials WHERE trial_id = :trial")
        with self.engine.connect() as conn:
            state = conn.execute(query, {"trial": trial_id}).scalar()
        if state is not None and TrialState[str(state)].is_finished():
            self._finished.add(trial_id)

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        """Optuna's trial creation, retried, and tagged with a token so it is made only once.

        A retry's token names the attempt it retries: however many workers queue a retry of
        one failed attempt (a lost trial found by two hosts, an interrupted one swept up after
        its worker died before queueing it), the study gets one.
        """
        token = uuid.uuid4().hex
        if template_trial is not None:
            history = template_trial.system_attrs.get("retry_history")
            if template_trial.state == TrialState.WAITING and isinstance(history, list) and history:
                token = f"retry-of:{history[-1]}"
            template_trial = copy.copy(template_trial)
            # A retry's template copies the failed trial's system attributes, tokens included;
            # the new trial is a new request and nobody has claimed it yet.
            attrs = {k: v for k, v in template_trial.system_attrs.items() if k != CLAIM_TOKEN_ATTR}
            template_trial.system_attrs = {**attrs, CREATE_TOKEN_ATTR: token}
            _request.found = None
            made = _retrying(RDBStorage._create_new_trial)(self, study_id, template_trial)
            if _request.found is not None:
                # Another request made it (maybe long ago, and run it since): what Optuna's
                # trial cache keeps must be the row as it is, not this request's template.
                return self.get_trial(_request.found)
            return made
        # An empty trial has no template to carry the token into _get_prepared_new_trial.
        _request.token = token
        try:
            trial = _retrying(RDBStorage._create_new_trial)(self, study_id, None)
        finally:
            _request.token = None
        trial.system_attrs = {CREATE_TOKEN_ATTR: token}
        return trial

    def _get_prepared_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None, session: Any
    ) -> Any:
        """The new trial's row, or the row an earlier attempt of the same creation committed.

        Runs inside the creating transaction, which holds the study's row lock, so both this
        storage's retries and Optuna's own (after a lost acknowledgement) find the first copy.
        """
        if template_trial is None:
            token = getattr(_request, "token", None)
        else:
            token = template_trial.system_attrs.get(CREATE_TOKEN_ATTR)
        if token is not None:
            query = sqlalchemy.text(
                "SELECT a.trial_id FROM trial_system_attributes a JOIN trials t "
                "ON t.trial_id = a.trial_id WHERE t.study_id = :study AND a.key = :key "
                "AND a.value_json = :value"
            )
            params = {"study": study_id, "key": CREATE_TOKEN_ATTR, "value": json.dumps(token)}
            made = session.execute(query, params).first()
            if made is not None:
                _request.found = int(made[0])
                return session.get(models.TrialModel, int(made[0]))
        trial = RDBStorage._get_prepared_new_trial(self, study_id, template_trial, session)
        if template_trial is None and token is not None:
            self._set_trial_attr_without_commit(
                session, models.TrialSystemAttributeModel, trial.trial_id, CREATE_TOKEN_ATTR, token
            )
        return trial

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's state change, retried; a claim (WAITING to RUNNING) made at most once.

        Returns:
            ``False`` if the change is a claim and another request claimed the trial first.
        """
        if state == TrialState.FAIL and values is None and trial_id in self._judged_lost:
            try:
                return bool(_retrying(type(self)._fail_lost)(self, trial_id))
            finally:
                self._judged_lost.discard(trial_id)
        if state != TrialState.RUNNING or values is not None:
            return _retrying(RDBStorage.set_trial_state_values)(self, trial_id, state, values)
        return _retrying(type(self)._claim)(self, trial_id, uuid.uuid4().hex)

    def _fail_lost(self, trial_id: int) -> bool:
        """Fail a RUNNING trial and mark it lost, in one transaction (see :meth:`judge_lost`)."""
        with _create_scoped_session(self.scoped_session) as session:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
            self.check_trial_is_updatable(trial_id, trial.state)
            now = datetime.now()
            self._set_trial_attr_without_commit(
                session, models.TrialSystemAttributeModel, trial_id, LOST_ATTR, now.isoformat()
            )
            trial.state = TrialState.FAIL
            trial.datetime_complete = now
        return True

    def _claim(self, trial_id: int, token: str) -> bool:
        """Start a WAITING trial under ``token``; True also if this token already started it."""
        with _create_scoped_session(self.scoped_session) as session:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
            self.check_trial_is_updatable(trial_id, trial.state)
            # The state test sits in the UPDATE itself, so the claim is atomic even where the
            # SELECT above locks nothing: SQLite ignores FOR UPDATE, and an engine not set up
            # by open_storage (see _serialise_sqlite) reads outside any transaction.
            started = session.execute(
                sqlalchemy.update(models.TrialModel)
                .where(models.TrialModel.trial_id == trial_id)
                .where(models.TrialModel.state == TrialState.WAITING)
                .values(state=TrialState.RUNNING, datetime_start=datetime.now())
                .execution_options(synchronize_session=False)
            )
            if cast("CursorResult[Any]", started).rowcount == 1:
                self._set_trial_attr_without_commit(
                    session, models.TrialSystemAttributeModel, trial_id, CLAIM_TOKEN_ATTR, token
                )
                return True
            # Claimed by another request, or by an earlier attempt of this one that committed
            # just before its connection dropped.
            held = models.TrialSystemAttributeModel.find_by_trial_and_key(
                trial, CLAIM_TOKEN_ATTR, session
            )
            return held is not None and json.loads(held.value_json) == token

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials, judged by each trial's own grace period (see
        :data:`GRACE_ATTR`), and RUNNING trials that never recorded a heartbeat and started
        more than twice the grace period ago, which Optuna's check skips.

        ``optuna.storages.fail_stale_trials`` (and every ``study.optimize``) fails and re-queues
        what this returns; each is judged lost (:meth:`judge_lost`), so its FAIL marks it as
        such. Trials started without heartbeats (e.g. by ``optuna ask``) count as gone too.
        """
        stale = self._find_stale_trial_ids(study_id)
        for trial_id in stale:
            self.judge_lost(trial_id)
        return stale

    @_retrying
    def _find_stale_trial_ids(self, study_id: int) -> list[int]:
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        stale = self._silent_too_long(study_id, grace)
        # datetime_start is the creating host's naive local time. A live trial records its
        # first heartbeat within milliseconds of starting, so clock skew between hosts can only
        # misjudge a trial in those milliseconds; twice the grace leaves room for a slow one.
        cutoff = datetime.now() - timedelta(seconds=2 * grace)
        query = sqlalchemy.text(
            "SELECT t.trial_id FROM trials t WHERE t.study_id = :study AND t.state = 'RUNNING' "
            "AND t.datetime_start < :cutoff AND NOT EXISTS "
            "(SELECT 1 FROM trial_heartbeats h WHERE h.trial_id = t.trial_id)"
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query, {"study": study_id, "cutoff": cutoff})
            return stale + [int(row[0]) for row in rows]

    def swap_study_system_attr(
        self,
        study_id: int,
        key: str,
        value: Any,
        replaceable: Callable[[Any], bool],
        *,
        retry: bool = True,
    ) -> bool:
        """Set a study system attribute only if ``replaceable(current value)``, atomically.

        The read and the write share one transaction holding the study's row lock (SQLite:
        the write lock), so of two processes swapping one key at once, the second sees the
        first's value. A missing attribute reads as ``None``.

        Args:
            value: The new value, or a function returning it, called only when it is written
                (so a value that holds a time is fresh however long the call waited).
            retry: Retry through an outage like other calls (a retry after a lost
                acknowledgement sees its own value, so ``replaceable`` must accept that).
                ``False`` for calls that must not hold up an exiting process.

        Returns:
            Whether the value was written.
        """
        swap = _retrying(type(self)._swap) if retry else type(self)._swap
        return bool(swap(self, study_id, key, value, replaceable))

    def _swap(
        self, study_id: int, key: str, value: Any, replaceable: Callable[[Any], bool]
    ) -> bool:
        with _create_scoped_session(self.scoped_session, True) as session:
            study = models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            row = models.StudySystemAttributeModel.find_by_study_and_key(study, key, session)
            if not replaceable(None if row is None else json.loads(row.value_json)):
                return False
            if row is None:
                row = models.StudySystemAttributeModel(study_id=study_id, key=key)
                session.add(row)
            row.value_json = json.dumps(value() if callable(value) else value)
            return True

    def _silent_too_long(self, study_id: int, grace: float) -> list[int]:
        """RUNNING trials whose last heartbeat is older than their grace period.

        Optuna judges every trial by the grace period of the process that looks; a host
        started with a longer one (heartbeats every grace/6 s) would then see its live trials
        failed by every host with a shorter one. A trial that declared its worker's period is
        judged by that; others by ``grace``.
        """
        with _create_scoped_session(self.scoped_session, True) as session:
            now = session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
            assert now is not None
            now = now.replace(tzinfo=None)  # PostgreSQL's is aware, the stored beats naive
            running = (
                session.query(models.TrialModel)
                .options(
                    sqlalchemy.orm.selectinload(models.TrialModel.heartbeats),
                    sqlalchemy.orm.selectinload(models.TrialModel.system_attributes),
                )
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(models.TrialModel.study_id == study_id)
                .all()
            )
            stale = []
            for trial in running:
                if not trial.heartbeats:
                    continue
                declared = {a.key: a.value_json for a in trial.system_attributes}.get(GRACE_ATTR)
                limit = _seconds(declared) or grace
                if now - trial.heartbeats[0].heartbeat > timedelta(seconds=limit):
                    stale.append(trial.trial_id)
            return stale


def _seconds(value_json: str | None) -> float | None:
    """A declared grace period, or ``None`` if absent or unreadable."""
    try:
        value = json.loads(value_json) if value_json is not None else None
    except ValueError:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None
    return float(value)


for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retrying(getattr(RDBStorage, _name)))
