"""How often issue 13's robustness criterion passes when AutoLoRa is as good as vanilla, or better.

The criterion: AutoLoRa's worst of n seeds is at least vanilla's mean over its n seeds minus one
standard error of that mean. Both methods' per-seed accuracies are drawn from normal
distributions with the same spread (one unit); AutoLoRa's mean is ``advantage`` units higher.
The pass rate says how much better a method must be before the criterion expects it to pass.

    python benchmarks/criterion_power.py [--seeds 3] [--draws 200000]
"""

from __future__ import annotations

import argparse

import numpy as np

ADVANTAGES = (0.0, 0.5, 1.0, 1.5, 2.0)  # AutoLoRa's mean above vanilla's, in per-seed standard deviations


def pass_rate(advantage: float, seeds: int, draws: int, rng: np.random.Generator) -> float:
    """The fraction of simulated cells in which the worst AutoLoRa seed meets vanilla's mean − 1 SE."""
    autolora = rng.normal(advantage, 1.0, size=(draws, seeds))
    vanilla = rng.normal(0.0, 1.0, size=(draws, seeds))
    standard_error = vanilla.std(axis=1, ddof=1) / np.sqrt(seeds)
    return float((autolora.min(axis=1) >= vanilla.mean(axis=1) - standard_error).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--draws", type=int, default=200_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.seeds} seeds per method, {args.draws} simulated cells per row")
    print("AutoLoRa's advantage (per-seed SDs) | pass rate")
    for advantage in ADVANTAGES:
        print(f"{advantage:35.1f} | {pass_rate(advantage, args.seeds, args.draws, rng):.2f}")


if __name__ == "__main__":
    main()
