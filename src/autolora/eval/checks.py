"""Evaluation that checks itself: orderings that must hold and signs of gradient masking."""

from __future__ import annotations

MASKING_GAP = 0.10


def check_accuracies(clean: float | None, pgd: float | None, autoattack: float | None, n: int, eps: float) -> list[str]:
    """Warnings about accuracies measured on the same ``n`` examples.

    AutoAttack <= PGD <= clean must hold; PGD far above AutoAttack, or PGD finding no
    adversarial example at all, suggests the gradients the attack follows are unreliable.
    """
    warnings = []
    if clean is not None and pgd is not None:
        if pgd > clean:
            warnings.append(f"PGD accuracy {pgd:.4f} exceeds clean accuracy {clean:.4f}: the evaluation is broken")
        elif eps > 0 and n >= 20 and clean > 0 and pgd == clean:
            warnings.append(
                "PGD found no adversarial example at all: the attack may be failing (gradient masking?); "
                "trust AutoAttack's number, not PGD's"
            )
    if pgd is not None and autoattack is not None:
        if autoattack > pgd:
            warnings.append(
                f"AutoAttack accuracy {autoattack:.4f} is above PGD's {pgd:.4f} on the same examples: "
                "the evaluation is unreliable"
            )
        elif pgd - autoattack > MASKING_GAP:
            warnings.append(
                f"PGD accuracy is {100 * (pgd - autoattack):.1f} points above AutoAttack's on the same {n} "
                "examples (AutoAttack's subset, not the whole test split): "
                "possible gradient masking; report AutoAttack"
            )
    return warnings
