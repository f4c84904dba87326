"""Device choice and the per-device settings that follow from it (AMP, memory format, malloc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

import torch

from advhpo._errors import ConfigError

# glibc mallopt parameters (malloc.h). Conv activations of a few MB each are freed and
# re-allocated every step; above the default mmap threshold each one is a fresh mmap whose pages
# fault in again, which costs ~20% of a CPU training step. Raising the thresholds keeps them
# on the heap, as MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ would at process start.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # bytes; glibc's upper bound for this setting
_TRIM_THRESHOLD = 64 * 1024**3  # bytes; effectively never give freed heap back


def restore_generator(generator: torch.Generator, state: torch.Tensor, reseed: int) -> None:
    """Restore ``generator`` from a state saved on any device.

    A CUDA generator's state (Philox) fits no CPU generator (Mersenne Twister), nor the reverse:
    a trial checkpointed on a GPU and resumed on the CPU, or the other way, reseeds it with
    ``reseed`` instead. What it drives (attacks' random starts) is then the one thing such a
    resume does not continue exactly.
    """
    try:
        generator.set_state(state)
    except RuntimeError:
        generator.manual_seed(reseed)


def restore_scaler(scaler: torch.amp.GradScaler, state: dict[str, Any]) -> None:
    """Restore a loss scaler from a state saved on any device.

    A disabled scaler (fp32 or bf16 training) saves an empty state, which an enabled one (fp16
    on a GPU) refuses: resumed there, it starts from a fresh scale. An enabled scaler's state
    loaded into a disabled one is ignored by torch.
    """
    if state:
        scaler.load_state_dict(state)


def resolve_device(spec: str) -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a usable device.

    Args:
        spec: The requested device; ``"auto"`` picks CUDA when available, else the CPU.

    Raises:
        ConfigError: The spec is malformed or names a GPU this process cannot see.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) visible"
            )
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``device``: bf16/fp16 on CUDA, ``None`` (fp32) on the CPU.

    CPU autocast to bf16 is slower than fp32 on CPUs without AMX, so it is never used there.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def memory_format(device: torch.device) -> torch.memory_format:
    """The activation layout conv kernels prefer on ``device``: channels_last on both.

    cuDNN needs it for tensor-core kernels under AMP; on the CPU, oneDNN's NHWC kernels trained
    the thesis MNIST net at ~1,900 img/s vs ~1,490 for NCHW (2 cores, with the HWC flatten of
    :mod:`advhpo.objectives._net`).
    """
    del device  # kept in the signature: the choice is per device by design
    return torch.channels_last


@functools.cache
def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds once per process (see module comment).

    Returns:
        Whether the allocator was tuned (False off glibc, e.g. on macOS).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(min(_TRIM_THRESHOLD, 2**31 - 1))) == 1
    return bool(ok_mmap and ok_trim)
