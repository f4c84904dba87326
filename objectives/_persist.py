"""Saving a trained ensemble to a directory and loading it back as one module."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from advhpo._errors import ConfigError, DataError
from advhpo._umask import umask
from advhpo.objectives._config import TrialConfig
from advhpo.objectives._evaluate import MeanLogits
from advhpo.objectives._net import make_net_for_loading

_FORMAT = 1  # bump when the directory layout changes
_MEMBER = re.compile(r"member_\d+\.pt")


def check_replaceable(path: str | os.PathLike[str]) -> None:
    """Refuse a save target that holds anything but an earlier saved ensemble.

    Saving replaces the target folder whole, so a folder with other files in it (``--save .``,
    a results folder) would be wiped; only a missing folder, an empty one, or one written by
    :func:`save_ensemble` may be replaced.

    Raises:
        ConfigError: ``path`` is a file, or a non-empty folder that is not a saved ensemble.
    """
    target = Path(path)
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder")
    names = {p.name for p in target.iterdir()}
    if not names:
        return
    others = sorted(n for n in names if n != "config.json" and not _MEMBER.fullmatch(n))
    try:
        is_save = "format" in json.loads((target / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        is_save = False
    if others or not is_save:
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        detail = f" (it holds {shown})" if others else ""
        raise ConfigError(
            f"{target} is a non-empty folder that is not a saved advhpo ensemble{detail}; "
            "refusing to replace it, pick a new or empty folder"
        )


def save_ensemble(
    path: str | os.PathLike[str], cfg: TrialConfig, members: Sequence[nn.Module]
) -> Path:
    """Write ``config.json`` and one ``member_K.pt`` state dict per member into ``path``.

    The files are written to a temporary sibling directory that is renamed into place, so an
    interrupted save never leaves a half-written ensemble behind. An earlier saved ensemble at
    ``path`` is replaced; any other non-empty folder is refused (see :func:`check_replaceable`).

    Returns:
        The directory written.

    Raises:
        ConfigError: ``path`` holds something other than a saved ensemble.
    """
    target = Path(path).absolute()
    check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    old: Path | None = None
    try:
        # A saved model is for sharing: the mode mkdir would give, not mkdtemp's private 0700.
        tmp.chmod(0o777 & ~umask())
        meta = {"format": _FORMAT, "members": len(members), "config": cfg.to_dict()}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        for k, m in enumerate(members):
            state = {name: t.detach().cpu() for name, t in m.state_dict().items()}
            torch.save(state, tmp / f"member_{k}.pt")
        if target.exists() and any(target.iterdir()):
            # Moved aside rather than deleted first, so a crash here loses no ensemble.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(old / "ensemble")
        tmp.rename(target)  # replaces an empty folder atomically
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            (old / "ensemble").rename(target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
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
        net = make_net_for_loading(cfg.net)
        try:
            net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise DataError(f"{file}: cannot load member weights ({str(e).splitlines()[0]})") from e
        members.append(net)
    return MeanLogits(members).to(device).eval()
