"""Saving a trained ensemble to a directory and loading it back as one module."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from advhpo._errors import DataError
from advhpo.objectives._config import TrialConfig
from advhpo.objectives._evaluate import MeanLogits
from advhpo.objectives._net import make_net

_FORMAT = 1  # bump when the directory layout changes


def save_ensemble(
    path: str | os.PathLike[str], cfg: TrialConfig, members: Sequence[nn.Module]
) -> Path:
    """Write ``config.json`` and one ``member_K.pt`` state dict per member into ``path``.

    The files are written to a temporary sibling directory that is renamed into place, so an
    interrupted save never leaves a half-written ensemble behind.

    Returns:
        The directory written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        meta = {"format": _FORMAT, "members": len(members), "config": cfg.to_dict()}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        for k, m in enumerate(members):
            state = {name: t.detach().cpu() for name, t in m.state_dict().items()}
            torch.save(state, tmp / f"member_{k}.pt")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_ensemble(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> MeanLogits:
    """Load a saved ensemble as a module mapping images in [0, 1] to mean member logits.

    Args:
        path: A directory written by :func:`save_ensemble` (``advhpo train --save DIR``).
        device: Where to put the weights. Default ``"cpu"``.

    Returns:
        The ensemble in eval mode; its members are in ``.members``.

    Raises:
        DataError: The directory is missing, incomplete or corrupt.
    """
    root = Path(path)
    meta_path = root / "config.json"
    try:
        meta = json.loads(meta_path.read_text())
        cfg = TrialConfig.from_dict(meta["config"])
        n = int(meta["members"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{meta_path}: not a saved advhpo ensemble ({e})") from e
    members = []
    for k in range(n):
        file = root / f"member_{k}.pt"
        net = make_net(cfg.net)
        try:
            net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise DataError(f"{file}: cannot load member weights ({str(e).splitlines()[0]})") from e
        members.append(net)
    return MeanLogits(members).to(device).eval()
