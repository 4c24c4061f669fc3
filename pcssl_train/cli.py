"""The ``pcssl-train`` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cma-toolkit", prog_name="pcssl-train")
def cli() -> None:
    """Self-supervised point-cloud pretraining on cma-build datasets.

    \b
    Example:
      pcssl-train env
    """


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
    try:
        import pytorch3d  # noqa: F401

        click.echo(f"pytorch3d {pytorch3d.__version__}: available as an optional accelerator")
    except ImportError:
        click.echo("pytorch3d: not installed (pure-PyTorch ops are used)")


def main() -> None:
    cli(prog_name="pcssl-train")


if __name__ == "__main__":
    main()
