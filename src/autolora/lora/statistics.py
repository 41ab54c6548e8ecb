"""The natural path's own BatchNorm running statistics (a departure from the paper, the default recipe's).

Both paths run the feature extractor's BatchNorm layers in training mode, so in the paper (and the
authors' code) every running statistic is a moving average over two networks' activations: the
deployed path's on adversarial images and the natural path's (every branched weight plus its
branch) on clean ones. Everything that reads those statistics in eval mode then reads a mix: the
training attack, the natural accuracy that sets the loss weights, the validation that selects the
deployed model. ``NaturalStatistics`` gives the natural path a second set, as AdvProp gives its
adversarial examples an auxiliary BatchNorm (Xie et al. 2020): the natural path normalises with
and updates its own, and the model's own statistics become the deployed path's alone. Training
steps normalise with batch statistics either way, so only eval-mode reads change. The set lives
on the model (``ATTRIBUTE``), so the trainer's copies of the best model, roll-backs, weight
averages, resumes and the branch files of ``save_every`` snapshots carry it, and ``export``
removes it with the branches.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

ATTRIBUTE = "autolora_natural_statistics"
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def keeps_running_statistics(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm layer with running statistics."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats


class NaturalStatistics(nn.Module):
    """A copy of the running statistics of ``layers`` (BatchNorm layers by name), for the natural path."""

    def __init__(self, layers: Mapping[str, nn.modules.batchnorm._BatchNorm]) -> None:
        super().__init__()
        self.layers = tuple(layers)
        if not self.layers:
            raise ValueError("the feature extractor has no BatchNorm layer with running statistics")
        for index, layer in enumerate(layers.values()):
            for buffer in BUFFERS:
                self.register_buffer(f"{buffer}_{index}", getattr(layer, buffer).detach().clone())

    def substitutes(self) -> dict[str, Tensor]:
        """The model's statistic buffers by name, mapped to the natural path's (for ``functional_call``)."""
        return {
            f"{name}.{buffer}": getattr(self, f"{buffer}_{index}")
            for index, name in enumerate(self.layers)
            for buffer in BUFFERS
        }


def natural_statistics(model: nn.Module) -> NaturalStatistics | None:
    """The natural path's own statistics, if ``model`` keeps them."""
    found = getattr(model, ATTRIBUTE, None)
    return found if isinstance(found, NaturalStatistics) else None
