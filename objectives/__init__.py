"""advhpo.objectives: turn one trial config into numbers (data, nets, attacks, training, eval)."""

from __future__ import annotations

from advhpo.objectives._attacks import fgsm, fgsm_rs, fgsm_sweep, pgd
from advhpo.objectives._config import (
    ADV_METHODS,
    DATASETS,
    PRESET_DATASET,
    PRESETS,
    NetConfig,
    TrialConfig,
    default_eval_eps,
    eps_curve_grid,
    family_net,
    thesis_cifar10,
    thesis_mnist,
)
from advhpo.objectives._data import (
    DATA_DIR_ENV,
    DatasetSplits,
    ImageSet,
    load_raw,
    load_splits,
    resolve_data_dir,
)
from advhpo.objectives._device import resolve_device
from advhpo.objectives._ensemble import (
    EnsembleTrainer,
    LoopEnsemble,
    StackedEnsemble,
    ensemble_strategy,
    make_ensemble_trainer,
    restore_ensemble_trainer,
)
from advhpo.objectives._evaluate import MeanLogits, eps_curves, evaluate, vote, vote_scores
from advhpo.objectives._fidelity import Fidelity
from advhpo.objectives._net import count_parameters, forward_flops, make_net
from advhpo.objectives._objective import EpochEnd, TrialOutcome, run_trial
from advhpo.objectives._persist import check_replaceable, load_ensemble, save_ensemble
from advhpo.objectives._reproduce_gan import (
    GAN_SCHEDULES,
    gan_config,
    reproduce_gan,
    stepped_schedule,
)
from advhpo.objectives._reproduce_thesis import (
    THESIS_FIGURES,
    reproduce_thesis,
    thesis_configs,
    thesis_fidelity,
)
from advhpo.objectives._training import MemberTrainer

__all__ = [
    "ADV_METHODS",
    "DATASETS",
    "DATA_DIR_ENV",
    "GAN_SCHEDULES",
    "PRESETS",
    "PRESET_DATASET",
    "THESIS_FIGURES",
    "DatasetSplits",
    "EnsembleTrainer",
    "EpochEnd",
    "Fidelity",
    "ImageSet",
    "LoopEnsemble",
    "MeanLogits",
    "MemberTrainer",
    "NetConfig",
    "StackedEnsemble",
    "TrialConfig",
    "TrialOutcome",
    "check_replaceable",
    "count_parameters",
    "default_eval_eps",
    "ensemble_strategy",
    "eps_curve_grid",
    "eps_curves",
    "evaluate",
    "family_net",
    "fgsm",
    "fgsm_rs",
    "fgsm_sweep",
    "forward_flops",
    "gan_config",
    "load_ensemble",
    "load_raw",
    "load_splits",
    "make_ensemble_trainer",
    "make_net",
    "pgd",
    "reproduce_gan",
    "reproduce_thesis",
    "resolve_data_dir",
    "resolve_device",
    "restore_ensemble_trainer",
    "run_trial",
    "save_ensemble",
    "stepped_schedule",
    "thesis_cifar10",
    "thesis_configs",
    "thesis_fidelity",
    "thesis_mnist",
    "vote",
    "vote_scores",
]
