"""The ``cma-build`` command line."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import CmaError


class _Group(click.Group):
    """Turns CmaError and OS errors into a one-line message with exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CmaError as exc:
            raise _one_line(str(exc), exc.exit_code) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise _one_line(f"{where}{exc.strerror or exc}", 2) from None


def _one_line(message: str, code: int) -> click.ClickException:
    err = click.ClickException(message)
    err.exit_code = code
    return err


def _split_list(value: str | None) -> list[str] | None:
    return [v for v in (s.strip() for s in value.split(",")) if v] if value else None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cma-toolkit", prog_name="cma-build")
def cli() -> None:
    """Turn ShapeNetCore.v2 into a multi-view RGB-D + point-cloud dataset.

    \b
    Example (the embedded procedural mini-ShapeNet, then your own copy):
      cma-build synth --out out/mini-shapenet
      cma-build scan --shapenet out/mini-shapenet --out out/manifest.csv
      cma-build scan --shapenet ~/data/ShapeNetCore.v2 --out manifest.csv
    """


@cli.command()
@click.option("--shapenet", "shapenet", required=True, type=click.Path(path_type=Path),
              help="ShapeNetCore.v2 root (holds <synset>/<model>/models/model_normalized.obj).")
@click.option("--out", default=Path("manifest.csv"), show_default=True, type=click.Path(path_type=Path),
              help="Manifest CSV to write (one row per model); replaced atomically.")
@click.option("--categories", help="Comma-separated category names or synset ids, e.g. chair,04379243.")
@click.option("--limit", type=int, help="At most N models, taken round-robin across the selected categories.")
@click.option("--workers", type=int, help="Parallel inspector processes [default: CPU count, at most 8].")
def scan(shapenet: Path, out: Path, categories: str | None, limit: int | None, workers: int | None) -> None:
    """Discover a ShapeNetCore.v2 tree and write its manifest.

    Each row: model and synset id, category, split (deterministic, by model id), OBJ path,
    size and sha256, vertex and face counts, materials, referenced textures and which are
    missing, problems (truncated OBJ, missing texture, ...) and harmless quirks. Prints the
    counts per category and the problems found. Columns: docs/MANIFEST.md.

    \b
    Example:
      cma-build scan --shapenet ~/data/ShapeNetCore.v2 --out manifest.csv
      cma-build scan --shapenet ~/data/ShapeNetCore.v2 --categories chair,04379243 --limit 100
    """
    from .scan import scan as run_scan, summary_lines

    result = run_scan(shapenet, out, _split_list(categories), limit, workers)
    click.echo("\n".join(summary_lines(result)))


@cli.command()
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Folder to write the mini-ShapeNet into (replaced atomically if it is an earlier synth output).")
@click.option("--per-category", default=8, show_default=True, type=int, help="Models per category.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, byte-identical files.")
@click.option("--categories", help="Subset of the synth categories (names or synset ids); default: all 8.")
def synth(out: Path, per_category: int, seed: int, categories: str | None) -> None:
    """Write a procedural mini-ShapeNet in the exact ShapeNetCore.v2 layout.

    8 real categories with their synset ids (airplane, bottle, car, chair, lamp, mug, sofa,
    table), each assembled from parts with random proportions; several materials per model,
    some JPG-textured, a few transparent (d 0.3). Y up, -Z front, centered at the vertex
    centroid with a unit bounding-box diagonal, like ShapeNetCore.v2.

    \b
    Example:
      cma-build synth --out out/mini-shapenet --per-category 8 --seed 0
    """
    from .synth import CATEGORY_IDS, synthesize
    from .taxonomy import Taxonomy

    taxonomy = Taxonomy.bundled()
    wanted = _split_list(categories)
    synsets = taxonomy.resolve(wanted) if wanted else None
    result = synthesize(out, per_category, seed, synsets)
    total = sum(result.counts.values())
    click.echo(f"Wrote {total} models ({len(result.counts)} categories x {per_category}, seed {seed}) to {result.root}")
    for sid in CATEGORY_IDS:
        if sid in result.counts:
            click.echo(f"  {sid}  {taxonomy.category_name(sid):<10} {result.counts[sid]}")


def main() -> None:
    cli(prog_name="cma-build")


if __name__ == "__main__":
    main()
