"""RoLI (Hua, Gu, Xue, Carlini, Wong and Qin, CVPR 2024, "Initialization Matters for Adversarial
Transfer Learning"): robust linear initialisation, then adversarial full fine-tuning.

The head is first trained alone by adversarial linear probing (``train/head_start.py``); the
whole network is then fine-tuned from that head with the PGD-AT loss. The head start is also
available to every other method: ``--head-init robust-linear``.
"""

from __future__ import annotations

from dataclasses import replace

from ..method import FIXED_FINETUNE
from .pgd_at import PgdAt


class RoLI(PgdAt):
    name = "roli"
    description = "RoLI: robust linear probing first, then adversarial full fine-tuning (PGD-AT)"
    trains = "head alone (probe), then everything"
    defaults = replace(FIXED_FINETUNE, head_init="robust-linear")
