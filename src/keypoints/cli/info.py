"""``keypoints models``, ``keypoints presets`` and ``keypoints export onnx``."""

from __future__ import annotations

import json

import click

from ..errors import ConfigError
from .options import print_table

_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)


def _listing(entries: list[dict], as_json: bool, header: tuple[str, ...], row) -> None:
    """``entries`` as JSON, or as a table of ``row(entry)`` under ``header``."""
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    else:
        print_table(header, [row(e) for e in entries])


def _yes(value: bool) -> str:
    return "yes" if value else "no"


@click.command()
@_json_option
def models(as_json):
    """List the available models: kind, descriptor size, license, weights, offline use."""
    from ..models.registry import list_models

    header = ("name", "kind", "dim", "offline", "lightglue", "license", "weights")
    _listing(list_models(), as_json, header, lambda e: (
        e["name"], e["kind"], str(e["descriptor_dim"]), _yes(e["offline"]),
        e["matcher_weights"] or "-", e["license"], e["weights"],
    ))  # fmt: skip


@click.command()
@_json_option
def presets(as_json):
    """List the presets: detector, matcher, preprocessing, licenses, offline use."""
    from ..presets import list_presets

    def row(e: dict) -> tuple:
        options = {**e["options"], **e["matcher_options"]}
        shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "-"
        resize = "native" if e["resize"] is None else str(e["resize"])
        return (e["name"], e["detector"], e["matcher"], resize, shown, _yes(e["offline"]),
                e["license"])  # fmt: skip

    entries = list_presets()
    header = ("name", "detector", "matcher", "resize", "options", "offline", "license")
    _listing(entries, as_json, header, row)
    if not as_json:
        click.echo("")
        for e in entries:
            click.echo(f"{e['name']}: {e['description']}")


@click.group("export")
def export_group():
    """Export models to other runtimes."""


@export_group.command("onnx")
@click.argument("model")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--opset", type=click.IntRange(9, 20), default=17, show_default=True,
              help="ONNX opset (torch's exporter writes 9 to 20).")  # fmt: skip
def export_onnx_command(model, output, opset):
    """Write MODEL's dense network to OUTPUT (.onnx).

    Input `image` (B, C, H, W) float32 in [0, 1] with dynamic batch, height and width;
    keypoint selection stays outside the graph.
    """
    from ..models.backends import export_onnx
    from ..models.base import KeypointModel
    from ..models.registry import load_model

    net = load_model(model, None, "torch")
    if not isinstance(net, KeypointModel) or not net.dense_output_names:
        raise ConfigError(f"'{model}' has no ONNX graph (supported: superpoint, superpoint-open)")
    export_onnx(net, output, opset)
    names = ", ".join(net.dense_output_names)
    click.echo(f"wrote {output}: image (B, {net.input_channels}, H, W) -> {names}")
