"""Where computation runs, and what a run records about its own provenance."""

from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import logging
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .errors import ConfigError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
# torch.compile's backend for --compile. Tests and the benchmarks' smoke runs select "eager" or
# "aot_eager" (the same tracing, no code generation) by patching this name; nothing else changes it.
COMPILE_BACKEND = "inductor"
# A training run calls the model in about five ways (attack, both AutoLoRa paths, validation, the
# scalars), each compiled once for its first batch size and once with a dynamic batch dimension:
# torch's default limit of 8 graphs per module would send the last ones back to eager.
COMPILE_RECOMPILE_LIMIT = 16


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


def compile_problem(device: torch.device, backend: str | None = None) -> str | None:
    """Why ``torch.compile`` with ``backend`` (``COMPILE_BACKEND``) cannot run on ``device`` here, or None."""
    backend = backend or COMPILE_BACKEND
    if not hasattr(nn.Module, "compile"):
        return f"torch {torch.__version__} has no nn.Module.compile (torch 2.2 or later)"
    if not torch._dynamo.is_dynamo_supported():
        return f"torch {torch.__version__} cannot compile under Python {platform.python_version()}"
    if backend != "inductor":
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "inductor needs Triton on CUDA (pip install triton)"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # an older torch: look for g++ on the PATH, as it does
        return None if shutil.which("g++") else "inductor needs a C++ compiler on CPU (g++) and none was found"
    try:
        get_cpp_compiler()
    except RuntimeError:
        return "inductor needs a C++ compiler on CPU (g++, or $CXX) and none was found"
    return None


def compile_model(model: nn.Module, device: torch.device) -> bool:
    """Compile ``model``'s forward in place (``nn.Module.compile``); False, with a warning, where it cannot.

    In place, not ``torch.compile(model)``: the module, its parameters and its state-dict keys stay
    the same (no ``_orig_mod.`` prefix can reach a checkpoint), every caller (attacks, both AutoLoRa
    paths, validation) gets the compiled forward, and a deep copy is a plain module again (torch
    drops the compiled call from a module's pickled state), which is how the export is made.
    The training and evaluation modes, the natural path and no-grad calls are separate graphs,
    compiled the first time each is met; a second batch size compiles once more, with a dynamic batch.
    """
    problem = compile_problem(device)
    if problem is not None:
        log.warning("--compile: %s; training runs eagerly", problem)
        return False
    options: dict[str, Any] = {"backend": COMPILE_BACKEND}
    if "recompile_limit" in inspect.signature(torch.compile).parameters:  # recent torch; else the global 8
        options["recompile_limit"] = COMPILE_RECOMPILE_LIMIT
    model.compile(**options)
    return True


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
        "cpu": cpu_model(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_model() -> str:
    """The CPU's model name where the OS reports one (CPU results can differ between models in
    the last bits, so a run or a row records it), else the architecture."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


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
