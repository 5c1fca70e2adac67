"""The run's hyperparameters for TensorBoard's HPARAMS tab.

Every setting of the run is recorded with it (its session), but the tab's columns are the ones
that define an experiment (:data:`DEFINING`) and every key the command line set: those get
``differs``, which TensorBoard sorts first (then by name), and its table shows the first five
columns with the others a checkbox away. So the keys a sweep varies are the columns it opens on.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from attnlab.runs.resume import key_of

HPARAM_METRICS = ("val/loss", "val/bpb", "val/ppl", "model/num_parameters", "train/tokens_per_sec")
DEFINING = (  # what defines an experiment: the model's shape, its data, its optimiser, its seed
    "model.d_model",
    "model.num_heads",
    "model.num_layers",
    "data.context_length",
    "data.batch_size",
    "data.tokenizer.kind",
    "optim.lr",
    "seed",
)
_HPARAM_SECTIONS = ("model", "data", "optim", "trainer", "seed")
_SKIPPED = ("data.cache_dir", "data.data_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary")


def _shown(value: Any) -> int | float | str:
    """A value as the HPARAMS tab shows it: numbers as they are, anything else as text
    (booleans as the command line spells them: torch's writer would make them 1.0 and 0.0)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, (int, float, str)) else str(value)


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hyperparameters as ``{"model.d_model": 128, ...}``: numbers and strings (what
    TensorBoard's HParams dashboard can show); booleans, lists and nulls become strings."""

    def walk(prefix: str, node: Any, out: dict[str, Any]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, out)
        elif prefix not in _SKIPPED:
            out[prefix] = _shown(node)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {}
    for section in _HPARAM_SECTIONS:
        if section in resolved:
            walk(section, resolved[section], out)
    return out


def command_line_hparams(overrides: list[str]) -> dict[str, str]:
    """``{key: value}`` of what the command line set (``model.num_layers=2``, ``debug=tiny``),
    Hydra's own keys and deletions left out; values as typed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = {}
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = key_of(o)
        if key.split(".")[0] != "hydra" and not o.is_delete():
            out[key] = o.get_value_element_as_str()
    return out


def run_hparams(cfg: DictConfig, overrides: list[str]) -> tuple[dict[str, Any], list[tuple[str, bool]]]:
    """The run's hyperparameters (:func:`flat_hparams`) and its HPARAMS columns, ``(name, differs)``:
    the keys ``overrides`` (its command line) set, with ``differs``, then the rest of
    :data:`DEFINING`. A group choice (``data=seed_sample``, ``debug=tiny``) is recorded as typed;
    the other keys the command line sets outside the hyperparameters (``paths.*``, ``resume``) are not."""
    hparams = flat_hparams(cfg)
    columns: dict[str, bool] = {}
    for key, value in command_line_hparams(overrides).items():
        node = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if key not in hparams and (isinstance(node, DictConfig) or key not in cfg and "." not in key):
            hparams[key] = value  # a group: a config node, or a global one (debug, experiment) that leaves no key
        if key in hparams:
            columns[key] = True
    for key in DEFINING:
        if key in hparams:
            columns.setdefault(key, False)
    return hparams, list(columns.items())


def _experiment_summary(hparams: dict[str, Any], columns: list[tuple[str, bool]], metrics: tuple[str, ...]):
    """The ``_hparams_/experiment`` summary: the tab's columns and metrics."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName
    from tensorboard.plugins.hparams.metadata import EXPERIMENT_TAG, PLUGIN_DATA_VERSION, PLUGIN_NAME
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    def kind(value: Any) -> int:
        return DataType.DATA_TYPE_STRING if isinstance(value, str) else DataType.DATA_TYPE_FLOAT64

    infos = [HParamInfo(name=k, type=kind(hparams[k]), differs=differs) for k, differs in columns]
    experiment = Experiment(hparam_infos=infos, metric_infos=[MetricInfo(name=MetricName(tag=m)) for m in metrics])
    content = HParamsPluginData(experiment=experiment, version=PLUGIN_DATA_VERSION)
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content.SerializeToString())
    )
    return Summary(value=[Summary.Value(tag=EXPERIMENT_TAG, metadata=metadata)])


def log_hparams(
    trainer: L.Trainer, hparams: dict[str, Any], columns: list[tuple[str, bool]], num_parameters: int
) -> None:
    """Record the run in TensorBoard's HPARAMS tab (:func:`run_hparams`). Its metric columns
    read the last value of the named scalar tags, so the final ``val/loss`` and ``val/bpb``
    appear as the run goes on."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        logger.hparams.update(hparams)  # also saved as <run>/tensorboard/hparams.yaml
        writer = logger.experiment
        _, start, end = hparams_summary(hparams, {})  # every setting; the columns: our own experiment
        file_writer = writer._get_file_writer()
        for summary in (_experiment_summary(hparams, columns, HPARAM_METRICS), start, end):
            file_writer.add_summary(summary)
        writer.add_scalar("model/num_parameters", num_parameters, 0)
