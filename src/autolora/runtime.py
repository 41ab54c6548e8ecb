"""Where computation runs, and what a run records about its own provenance."""

from __future__ import annotations

import contextlib
import datetime as _dt
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is refused with a clear message."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ConfigError("device", name, f"choose one of: {', '.join(DEVICES)}")
    wants_cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if not wants_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device", name, "no CUDA GPU is visible here; use --device cpu (or auto)")
    if name.startswith("cuda:"):
        return torch.device(name)
    return torch.device("cuda", local_rank)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is None (fp32)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def git_commit() -> str | None:
    """The commit of the autolora source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    """A short description of the machine, for benchmark and run records."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def provenance(seed: int, command: str | None = None) -> dict[str, Any]:
    """The command (``command``, or this process's own arguments), code version, seed and time of a run."""
    return {
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "autolora": __version__,
        "git_commit": git_commit(),
        "seed": seed,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }
