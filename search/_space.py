"""The search space, and the one place an Optuna trial becomes a :class:`TrialConfig`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import optuna

from advhpo._errors import ConfigError
from advhpo.objectives._config import (
    PRESETS,
    NetConfig,
    TrialConfig,
    eps_curve_grid,
    family_net,
)
from advhpo.search._settings import StudySettings
from advhpo.storage import original_trial_number

BASELINE_ATTR = "baseline"  # user attribute naming the thesis preset a baseline trial trains

# A parameter is {"low", "high"[, "log"]} (int or float by the bounds' type) or {"choices"}.
ParamSpec = dict[str, Any]

_COMMON: dict[str, ParamSpec] = {
    "dropout": {"low": 0.0, "high": 0.5},
    "lr": {"low": 1e-3, "high": 0.1, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True},
    "adv_method": {"choices": ["none", "fgsm", "fgsm_rs"]},
    # Odd sizes: a majority vote between two labels cannot tie.
    "ensemble": {"choices": [1, 3, 5, 7]},
}
DEFAULT_SPACE: dict[str, dict[str, ParamSpec]] = {
    "mnist": {"layers": {"low": 1, "high": 3}, **_COMMON, "adv_eps": {"low": 0.01, "high": 0.3}},
    "cifar10": {"layers": {"low": 1, "high": 4}, **_COMMON, "adv_eps": {"low": 0.005, "high": 0.1}},
}


def load_space_file(path: Path) -> dict[str, ParamSpec]:
    """Read a ``--space`` TOML file: one table per parameter to override.

    Example::

        [layers]
        low = 1
        high = 2
        [ensemble]
        choices = [1, 3]

    Raises:
        ConfigError: The file is unreadable or names an unknown parameter.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not a readable TOML search space ({e})") from e
    return data


# Counts: a float range here would be sampled as floats and truncated without a word.
_INTEGER_PARAMS = ("layers", "ensemble")


def _check_domain(dataset: str, name: str, spec: ParamSpec) -> None:
    """Refuse, when the study is created, bounds or choices a trial's config would refuse.

    Each bound and choice is built into a config beside the default space's first values,
    so the bounds live in one place (:class:`TrialConfig`, :class:`NetConfig`), and a net
    too deep for the image is caught here rather than as every deep trial failing later.
    """
    base = _default_values(dataset)
    if name == "adv_eps":  # probed undefended: a range may start at 0 (never sampled exactly)
        base["adv_method"] = "none"
    values = list(spec["choices"]) if "choices" in spec else [spec["low"], spec["high"]]
    for v in values:
        if isinstance(v, bool) or (name in _INTEGER_PARAMS and not isinstance(v, int)):
            raise ConfigError(f"search parameter {name!r}: values must be integers, got {v!r}")
        try:
            _config(dataset, {**base, name: v})
        except (ConfigError, TypeError, ValueError) as e:
            raise ConfigError(f"search parameter {name!r}: {e}") from e
    if spec.get("log") and "low" in spec and spec["low"] <= 0:
        raise ConfigError(f"search parameter {name!r}: a log range needs low > 0")


def _default_values(dataset: str) -> dict[str, Any]:
    return {
        k: v["choices"][0] if "choices" in v else v["low"]
        for k, v in DEFAULT_SPACE[dataset].items()
    }


def _check_adversarial(dataset: str, space: dict[str, ParamSpec]) -> None:
    """Refuse an ``adv_eps`` that the adversarial methods searched beside it cannot train with.

    :func:`_check_domain` probes ``adv_eps`` undefended, one parameter at a time, so
    ``choices = [0.0]`` (or ``low = high = 0``) beside ``fgsm`` would pass, and every
    adversarial trial would then fail. A range starting at 0 is fine: 0 is never sampled.
    """
    methods = [m for m in space["adv_method"].get("choices", ()) if m != "none"]
    spec = space["adv_eps"]
    if "choices" in spec:
        radii = list(spec["choices"])
    else:
        radii = [v for v in (spec["low"], spec["high"]) if v > 0] or [spec["high"]]
    base = _default_values(dataset)
    for method in methods:
        for eps in radii:
            try:
                _config(dataset, {**base, "adv_method": method, "adv_eps": eps})
            except (ConfigError, TypeError, ValueError) as e:
                raise ConfigError(f"search parameter 'adv_eps': {e}") from e


def _check_shape(name: str, spec: Any) -> None:
    """Refuse a table that is not ``low``/``high`` numbers (``log`` true or false) or a
    non-empty ``choices`` list: a misspelt key or a quoted number would otherwise be ignored
    or fail deep inside a comparison."""
    shape = f"search parameter {name!r} needs low/high (and optionally log) or non-empty choices"
    if not isinstance(spec, dict):
        raise ConfigError(f"{shape}, got {spec!r}")
    keys = set(spec)
    if keys == {"choices"}:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{shape}; choices is {spec['choices']!r}")
        return
    if not {"low", "high"} <= keys or not keys <= {"low", "high", "log"}:
        raise ConfigError(f"{shape}, got the keys {', '.join(sorted(keys)) or 'none'}")
    for bound in ("low", "high"):
        v = spec[bound]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"search parameter {name!r}: {bound} must be a number, got {v!r}")
    if not isinstance(spec.get("log", False), bool):
        raise ConfigError(
            f"search parameter {name!r}: log must be true or false, got {spec['log']!r}"
        )


def resolve_space(dataset: str, overrides: dict[str, ParamSpec] | None) -> dict[str, ParamSpec]:
    """The dataset's default space with ``overrides`` applied, validated.

    Raises:
        ConfigError: An unknown parameter, a malformed range, or values the parameter cannot
            take (e.g. ``adv_eps`` outside [0, 1]).
    """
    space = {k: dict(v) for k, v in DEFAULT_SPACE[dataset].items()}
    for name, spec in (overrides or {}).items():
        if name not in space:
            raise ConfigError(f"unknown search parameter {name!r}; known: {', '.join(space)}")
        _check_shape(name, spec)
        if "low" in spec and spec["low"] > spec["high"]:
            raise ConfigError(f"search parameter {name!r}: low > high")
        _check_domain(dataset, name, spec)
        spec = dict(spec)
        if "low" in spec and name not in _INTEGER_PARAMS:
            # `low = 0` / `high = 1` in TOML are integers: a rate or radius would otherwise be
            # sampled as an integer, 0 or 1 and nothing between.
            spec["low"], spec["high"] = float(spec["low"]), float(spec["high"])
        space[name] = spec
    _check_adversarial(dataset, space)
    return space


def space_distributions(
    dataset: str, overrides: dict[str, ParamSpec] | None = None
) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space as Optuna distributions, as :func:`suggest_config` samples it (for building
    trials outside a worker, e.g. with ``optuna.trial.create_trial``)."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, spec in resolve_space(dataset, overrides).items():
        if "choices" in spec:
            out[name] = optuna.distributions.CategoricalDistribution(list(spec["choices"]))
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            out[name] = optuna.distributions.IntDistribution(
                spec["low"], spec["high"], log=spec.get("log", False)
            )
        else:
            out[name] = optuna.distributions.FloatDistribution(
                spec["low"], spec["high"], log=spec.get("log", False)
            )
    return out


def _suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    if "choices" in spec:
        return trial.suggest_categorical(name, list(spec["choices"]))
    if isinstance(spec["low"], int) and isinstance(spec["high"], int):
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
    return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))


def baseline_net(trial: optuna.Trial) -> NetConfig | None:
    """The preset net of a thesis baseline trial; ``None`` for a searched trial."""
    name = trial.user_attrs.get(BASELINE_ATTR)
    if name is None:
        return None
    return PRESETS[str(name).removesuffix("-fgsm")]()


def suggest_config(trial: optuna.Trial, settings: StudySettings) -> TrialConfig:
    """Sample a trial's hyperparameters from the study's space and build its config.

    ``adv_eps`` is sampled only when ``adv_method`` is not ``"none"``. The trial's seed is
    derived from its original number, so a retried trial trains the same members. A thesis
    baseline trial (see :func:`enqueue_baselines`) trains the thesis net.
    """
    space = resolve_space(settings.dataset, settings.space)
    values = {
        name: _suggest(trial, name, spec) for name, spec in space.items() if name != "adv_eps"
    }
    if values["adv_method"] != "none":
        values["adv_eps"] = _suggest(trial, "adv_eps", space["adv_eps"])
    return _config(
        settings.dataset,
        values,
        net=baseline_net(trial),
        epochs=settings.epochs,
        train_subset=settings.train_subset,
        seed=settings.seed + 1000 * original_trial_number(trial),
        eval_eps=settings.eval_eps,
        eval_split="val",
        eval_subset=settings.eval_subset,
        epoch_eval=settings.epoch_eval,
        eps_grid=eps_curve_grid(settings.eval_eps),
    )


def _config(
    dataset: str, values: dict[str, Any], net: NetConfig | None = None, **fields: Any
) -> TrialConfig:
    """The one mapping from searched values to a config (sampling and validation share it).

    ``net`` replaces the family net (a baseline's preset); ``adv_eps`` defaults to 0.
    """
    return TrialConfig(
        dataset=dataset,
        net=net or family_net(dataset, int(values["layers"]), float(values["dropout"])),
        lr=float(values["lr"]),
        weight_decay=float(values["weight_decay"]),
        adv_method=str(values["adv_method"]),
        adv_eps=float(values.get("adv_eps", 0.0)),
        ensemble=int(values["ensemble"]),
        **fields,
    )
