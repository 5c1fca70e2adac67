"""Lightning callbacks attnlab adds to every run."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class ValidateAtEnd(L.Callback):
    """Validate (and so checkpoint) after the last step, wherever val_check_interval falls.

    Lightning validates every ``val_check_interval`` steps; when ``max_steps`` is not a multiple
    of it the final weights would go unmeasured. Asking the trainer to stop on the last step
    makes Lightning run validation there, so the final val figures describe the final model.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class ProgressBar(TQDMProgressBar):
    """TQDM bar without the meaningless ``v_num`` (runs are told apart by their folders)."""

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
