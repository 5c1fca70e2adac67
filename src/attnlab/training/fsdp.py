"""``trainer=fsdp``: Lightning's FSDP strategy with each transformer block its own FSDP unit.

:class:`BlockFSDP` is the ``strategy:`` of ``conf/trainer/fsdp.yaml`` and ``fsdp_cpu.yaml``, built
by :func:`attnlab.training.task.build_trainer`. What it changes from Lightning's ``FSDPStrategy``:

* the wrap policy is fixed: the GPT's ``Block`` (and the encoder–decoder's ``EncoderBlock`` and
  ``DecoderBlock``) are each a unit, their parameters gathered for their forward and backward
  only; the embeddings, final norm and tied output layer make up the root unit;
* checkpoints are one full state dict (``state_dict_type="full"``, gathered on rank 0 and saved
  by attnlab's :class:`~attnlab.training.safe_io.SafeCheckpointIO`, atomically), so resume and
  every tool read them like a single-device checkpoint; a resumed one is read through that same
  checkpoint I/O, ``weights_only=True`` (Lightning's FSDP reads it with its own lazy unpickler,
  which would run code stored in the file);
* ``configure_optimizers`` sees each parameter whole (:func:`whole_shapes`), so AdamW's groups
  (decay on matrices) are the single-device ones; Muon, which needs whole matrices, is refused;
* the callbacks that run the model on rank 0 alone (:data:`RANK_ZERO_FORWARDS`) are left out,
  with one notice, and the model summary counts whole parameters;
* it runs on the CPU too, over gloo (torch's FSDP does when given ``device_id=cpu``; Lightning's
  check refuses only its own class there): ``trainer=fsdp_cpu``, the tests.

Under it the training step clips by the norm over every rank's shard (:func:`clip_grad_norm`,
from :meth:`attnlab.training.lit_base.LitBase.configure_gradient_clipping`). The encoder–decoder
is refused for now: its validation decodes through its decoder blocks' parts, outside their units.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.distributed.fsdp import (
    FullOptimStateDictConfig,
    FullStateDictConfig,
    FullyShardedDataParallel,
    StateDictType,
)
from torch.distributed.fsdp._common_utils import clean_tensor_name
from torch.distributed.fsdp._traversal_utils import _get_fsdp_handles

from attnlab.errors import CheckpointError, ConfigError
from attnlab.model.gpt import Block
from attnlab.model.transformer import DecoderBlock, EncoderBlock, EncoderDecoder
from attnlab.observe.encoder_decoder import Seq2SeqAttentionMaps, Translations
from attnlab.observe.head_scores import HeadScores
from attnlab.observe.tensorboard import AttentionMaps, RunRecord, Samples

BLOCKS = {Block, EncoderBlock, DecoderBlock}  # each its own FSDP unit
# callbacks that run the model on rank 0 alone: under FSDP each forward needs every rank, so they are left out
RANK_ZERO_FORWARDS = (AttentionMaps, Samples, HeadScores, Seq2SeqAttentionMaps, Translations)


class BlockFSDP(FSDPStrategy):
    """Lightning's FSDP, each transformer block a unit, full checkpoints read ``weights_only``
    (see the module docstring); ``sharding_strategy`` and the rest as Lightning's."""

    strategy_name = "attnlab_fsdp"

    def __init__(self, sharding_strategy: str = "FULL_SHARD", state_dict_type: str = "full", **kwargs: Any) -> None:
        if state_dict_type != "full":
            raise ConfigError(
                f"trainer.strategy.state_dict_type={state_dict_type}: attnlab writes full checkpoints only "
                "(one file that resume and the tools read); drop the override"
            )
        super().__init__(auto_wrap_policy=set(BLOCKS), sharding_strategy=sharding_strategy, **kwargs)

    @contextlib.contextmanager
    def full_state(self, rank0_only: bool = True) -> Iterator[None]:
        """``state_dict()`` and ``optim_state_dict()`` of the whole model (gathered; on rank 0 only
        with ``rank0_only``). On a GPU the gathered tensors go to the CPU; on the CPU they stay
        where they are (torch's offload_to_cpu there frees what it returns: a segfault)."""
        offload = self.root_device.type != "cpu"
        with FullyShardedDataParallel.state_dict_type(
            self.model,
            StateDictType.FULL_STATE_DICT,
            FullStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only),
            FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only),
        ):
            yield

    def lightning_module_state_dict(self) -> dict[str, Any]:
        with self.full_state():
            return self.model.state_dict()  # the LightningModule's keys (model.blocks.0.attn...), as on one device

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        """The whole optimizer state on rank 0, keyed as a single-device optimizer's (by the index of
        each parameter in its groups), so either kind of run resumes from it."""
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # inside Lightning's LightningOptimizer
        with self.full_state():
            state = FullyShardedDataParallel.optim_state_dict(self.model, optimizer)  # keyed by name
        if self.global_rank != 0:
            return state
        index = {name: i for i, name in enumerate(self.parameter_names(optimizer))}
        return {
            "state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [
                {**saved, "params": [index[name] for name in self.parameter_names(optimizer, group)]}
                for saved, group in zip(state["param_groups"], optimizer.param_groups)
            ],
        }

    def parameter_names(self, optimizer: Any, group: dict[str, Any] | None = None) -> list[str]:
        """The names of the optimizer's parameters (those of ``group``, or of all its groups) in its order."""
        names = {param: clean_tensor_name(name) for name, param in self.model.named_parameters()}  # no FSDP prefixes
        return [names[p] for g in ([group] if group is not None else optimizer.param_groups) for p in g["params"]]

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.root_device.type != "cpu":
            return super()._setup_model(model)
        # torch's FSDP runs on the CPU when given device_id=cpu; Lightning gives the device's index, None there
        model = FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=self.root_device,
            **self.kwargs,
        )
        _move_torchmetrics_to_device(model, self.root_device)
        _setup_activation_checkpointing(model, self._activation_checkpointing_kwargs)
        return model

    def connect(self, model: Any) -> None:
        if isinstance(getattr(model, "model", None), EncoderDecoder):
            raise ConfigError(
                "trainer=fsdp trains the GPT only for now: the encoder–decoder's validation decodes through its "
                "decoder blocks' parts, outside the FSDP units' forward (and beam search stops at a different step "
                "on each rank); use trainer=ddp (or trainer=ddp_cpu)"
            )
        super().connect(model)

    def setup(self, trainer: Any) -> None:
        super().setup(trainer)
        probes = [c for c in trainer.callbacks if isinstance(c, RANK_ZERO_FORWARDS)]
        if probes:
            trainer.callbacks = [c for c in trainer.callbacks if c not in probes]
            names = ", ".join(sorted({type(c).__name__ for c in probes}))
            rank_zero_info(
                f"trainer=fsdp: {names} not run (they run the model on rank 0 alone; sharded, it runs on all ranks)"
            )
        for record in [c for c in trainer.callbacks if isinstance(c, RunRecord)]:  # the model summary counts parameters
            record.on_fit_start = seeing_whole_shapes(record.on_fit_start, self.model)

    def setup_optimizers(self, trainer: Any) -> None:
        """``configure_optimizers`` seeing each parameter whole (:func:`whole_shapes`), so AdamW's
        groups are the single-device ones (decay on matrices, own LRs by name); Muon refused."""
        with whole_shapes(self.model):
            super().setup_optimizers(trainer)
        if any(type(o).__name__ == "MuonWithAdamW" for o in self.optimizers):
            raise ConfigError(
                "optim=muon does not train under trainer=fsdp: Muon orthogonalises each whole matrix, and FSDP "
                "holds a slice of it on each rank; use optim=adamw, or trainer=ddp"
            )

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """The full checkpoint a run resumes from, read by the checkpoint I/O (attnlab's
        :class:`SafeCheckpointIO`: ``weights_only``, one line if damaged) on every rank; each
        rank keeps its shard of the weights and of the optimizer state."""
        path = Path(self.broadcast(checkpoint_path))
        if path.is_dir():  # a sharded checkpoint, which attnlab does not write: Lightning's reader
            return super().load_checkpoint(path, weights_only=weights_only)
        checkpoint = self.checkpoint_io.load_checkpoint(path)
        module = self.lightning_module
        with self.full_state(rank0_only=False):  # every rank takes its shard of the whole state dict
            self.model.load_state_dict(checkpoint.pop("state_dict"), strict=module.strict_loading)
        states = checkpoint.get("optimizer_states")
        if not states or module.trainer.state.fn != TrainerFn.FITTING:
            return checkpoint
        if len(states) != len(self.optimizers):
            raise CheckpointError(f"{path} holds {len(states)} optimizer states, this run has {len(self.optimizers)}")
        with self.full_state(rank0_only=False):
            for optimizer, state in zip(self.optimizers, states):
                names = self.parameter_names(optimizer)  # index i of a saved state: the optimizer's i-th parameter
                state = {
                    "state": {names[i]: value for i, value in state["state"].items()},
                    "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
                }
                optimizer.load_state_dict(
                    FullyShardedDataParallel.optim_state_dict_to_load(self.model, optimizer, state)
                )
        return checkpoint


@contextlib.contextmanager
def whole_shapes(model: torch.nn.Module) -> Iterator[None]:
    """For its duration each parameter of the FSDP-wrapped ``model`` has its whole shape (a
    one-element tensor expanded to it: no memory, no values) instead of this rank's slice, on this
    rank alone (no communication): for what reads only names and shapes (optimizer groups,
    parameter counts)."""
    saved = []
    for handle in _get_fsdp_handles(model):
        flat = handle.flat_param
        for param, shape in zip(flat._params, flat._shapes):  # use_orig_params: the model's own parameters
            saved.append((param, param.data))
            param.data = param.data.new_empty(1).expand(shape)
    try:
        yield
    finally:
        for param, data in saved:
            param.data = data


def seeing_whole_shapes(hook: Callable[..., Any], model: torch.nn.Module) -> Callable[..., Any]:
    """``hook`` run inside :func:`whole_shapes` of ``model``."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with whole_shapes(model):
            return hook(*args, **kwargs)

    return run


def sharded(trainer: Any) -> bool:
    """Whether ``trainer``'s model is sharded by FSDP (its parameters split across the ranks)."""
    return isinstance(getattr(trainer, "model", None), FullyShardedDataParallel)


def clip_grad_norm(trainer: Any, max_norm: float) -> torch.Tensor:
    """Clip the gradients of the sharded model to ``max_norm`` by their global L2 norm (every
    rank's shard) and return that norm, before clipping; ``max_norm=inf`` only measures it."""
    return trainer.model.clip_grad_norm_(max_norm)
