"""Which device and precision a run uses, and a check that the devices asked for exist.

:func:`best_precision` is the ``${attnlab.precision:<accelerator>}`` config resolver of the
trainer configs (:mod:`attnlab.system.resolvers`). torch is imported only when a value is
resolved or checked, so entry points answer ``--help`` at once.
"""

from __future__ import annotations

from typing import Any

from attnlab.checks import require_int
from attnlab.errors import ConfigError

CUDA_ACCELERATORS = ("gpu", "cuda")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (x86 AVX-512 BF16 or AMX; read from Linux's
    /proc/cpuinfo). Without it bf16 is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def best_precision(accelerator: str = "auto") -> str:
    """Lightning precision for ``accelerator``: bf16 mixed on a CUDA GPU with native bf16
    (Ampere and later), fp16 mixed on an older one; on the CPU bf16 mixed where it has native
    bf16 (about 1.45x faster at the default config; loss and norm statistics stay fp32), else
    full fp32; fp32 on MPS."""
    import torch

    if str(accelerator) in ("auto", *CUDA_ACCELERATORS) and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"
    if str(accelerator) in ("auto", "cpu") and cpu_has_bf16():
        return "bf16-mixed"
    return "32-true"


def check_devices(trainer: dict[str, Any]) -> None:
    """Fail in one line when the trainer config names devices this machine does not have."""
    import torch

    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", "auto")
    require_int(trainer.get("num_nodes", 1), "trainer.num_nodes")
    if accelerator in CUDA_ACCELERATORS:
        visible = torch.cuda.device_count()
        if visible == 0:
            raise ConfigError(
                f"trainer.accelerator={accelerator} but this machine has no CUDA GPU that torch can see; "
                "use trainer=cpu (or the default trainer, which picks the best device present)"
            )
        if isinstance(devices, int) and devices > visible:
            raise ConfigError(
                f"trainer.devices={devices} but only {visible} GPU(s) are visible; "
                f"use trainer.devices={visible} or trainer.devices=-1 (all)"
            )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "trainer.accelerator=mps but Apple's Metal (MPS) backend is not available here; use trainer=cpu"
        )


def pick_device(name: str):
    """A ``torch.device``: ``auto`` is CUDA, else Apple's MPS, else the CPU; a named device must be present."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device={name!r}; use auto, cpu, cuda, cuda:<index> or mps") from None
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present.get(device.type, False):
        raise ConfigError(f"device={name} is not available on this machine; use device=auto or device=cpu")
    return device
