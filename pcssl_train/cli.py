"""The ``pcssl-train`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXAMPLES = """\b
Examples:
  pcssl-train pretrain --method point-mae --data shapenet-cma --out runs/point-mae
  pcssl-train pretrain --config serp-transformer-tiny --data out/demo/dataset --out runs/tiny
  torchrun --nproc_per_node 4 -m pcssl_train.cli pretrain --method vasp --data shapenet-cma
  pcssl-train export runs/point-mae
"""


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def guarded(fn):
    """One-line errors for user problems, exit 130 on Ctrl-C."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from cma_builder.errors import CmaError

        from .errors import TrainError

        try:
            return fn(*args, **kwargs)
        except (TrainError, CmaError) as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted; run the same command again to resume from the last epoch", 130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXAMPLES)
@click.version_option(package_name="cma-toolkit", prog_name="pcssl-train")
def cli() -> None:
    """Self-supervised point-cloud pretraining directly on cma-build datasets."""


@cli.command()
@click.option("--method", "-m", help="point-mae, serp-pointnet, serp-transformer, vasp, crossalignnet or mm-point "
              "(or from --config).")
@click.option("--data", "-d", required=True, type=click.Path(path_type=Path), help="A cma-build dataset folder.")
@click.option("--config", "-c", help="YAML file, or a bundled config name (e.g. point-mae-tiny); merged over the "
                                     "method's published defaults.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Run folder [runs/METHOD]. An existing run resumes.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. optim.lr=3e-4.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@guarded
def pretrain(method, data, config, out, overrides, device, progress) -> None:
    """Pretrain a method on a dataset; checkpoints every epoch and resumes a killed run exactly.

    \b
    Writes RUN/config.yaml, RUN/checkpoints/last.pt, RUN/metrics.csv, RUN/tensorboard/.
    Multi-GPU / multi-process: launch the same command through torchrun (DDP).

    \b
    Example:
      pcssl-train pretrain --method point-mae --data shapenet-cma --out runs/point-mae
      pcssl-train pretrain -c point-mae-tiny -d out/demo/dataset -o runs/smoke --set optim.epochs=2
      pcssl-train pretrain -m crossalignnet -d shapenet-cma -o runs/can --set model.image_mask=random
    """
    from .engine.config import load_config
    from .engine.trainer import pretrain as run_pretrain

    cfg = load_config(method, config, overrides)
    run = out or Path("runs") / cfg["method"]
    result = run_pretrain(cfg, data, run, None if device == "auto" else device, progress)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"{cfg['method']}: {result['epoch']} epochs, {result['step']} steps, last epoch loss "
                   f"{result.get('loss', float('nan')):.5g}; checkpoint {run / 'checkpoints' / 'last.pt'}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Output file [RUN/encoder-METHOD-epochN.pt].")
@click.option("--epoch", default="last", show_default=True, help="Which checkpoint: last, or an epoch kept by keep_every.")
@guarded
def export(run, out, epoch) -> None:
    """Write a run's pretrained point encoder (weights + registry name + config) for downstream use.

    \b
    Load it with:  from pcssl_train.export import load_encoder; encoder = load_encoder(PATH)

    \b
    Example:
      pcssl-train export runs/point-mae --out point-mae-encoder.pt
    """
    from .export import export_encoder

    click.echo(str(export_encoder(run, out, epoch)))


@cli.command()
def env() -> None:
    """Report the training environment: torch build, devices, bf16, optional accelerators.

    \b
    Example:
      pcssl-train env
    """
    import torch

    click.echo(f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})")
    click.echo(f"CPU threads: {torch.get_num_threads()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            click.echo(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}")
        click.echo(f"bf16 supported: {torch.cuda.is_bf16_supported()}")
    else:
        click.echo("CUDA: not available (training runs on CPU)")
    from .ops import HAS_PYTORCH3D

    click.echo("pytorch3d: available as an optional accelerator" if HAS_PYTORCH3D
               else "pytorch3d: not installed (pure-PyTorch ops are used)")


def main() -> None:
    cli(prog_name="pcssl-train")


if __name__ == "__main__":
    main()
