"""The ``cma-build`` command line."""

from __future__ import annotations

import math
import signal
import tempfile
from contextlib import nullcontext
from pathlib import Path

import click

from cma_builder.atomic import check_output_dir, check_output_file
from cma_builder.errors import CmaError
from cma_builder.source import LAYOUTS


class _Group(click.Group):
    """Turns CmaError, OS errors and click's usage errors (unknown option, a value that is not a
    number, a missing option) into a one-line message with exit code 2 (no traceback)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # options of cma-build itself
            raise _usage(exc) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CmaError as exc:
            raise _one_line(str(exc), exc.exit_code) from None
        except click.UsageError as exc:  # a subcommand's options, parsed here
            raise _usage(exc) from None
        except BrokenPipeError:
            raise
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise _one_line(f"{where}{exc.strerror or exc}", 2) from None
        except KeyboardInterrupt:  # render handles its own (it keeps what finished); elsewhere nothing is half-written
            raise _one_line("interrupted", 130) from None


def _one_line(message: str, code: int) -> click.ClickException:
    err = click.ClickException(" ".join(line.strip() for line in str(message).splitlines() if line.strip()))
    err.exit_code = code
    return err


def _usage(exc: click.UsageError) -> click.ClickException:
    """click prints a usage error as 'Usage: ...', a hint and the message on four lines: one line instead."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `cma-build`: click prints the help, keep that
        raise exc
    where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _one_line(exc.format_message() + where, exc.exit_code)


def _number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False, unit: str = ""):
    """An option callback that refuses a value outside [low, high] (ends open where said) and a float
    that is NaN or infinite, as one line with exit code 2, while the options are parsed (before any work).
    The one mechanism every numeric option of cma-build uses."""
    unit = f" {unit}" if unit else ""

    def num(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    def requirement() -> str:
        if low is not None and high is not None:
            if not (low_open or high_open):
                return f"between {num(low)} and {num(high)}{unit}"
            return f"in {'(' if low_open else '['}{num(low)}, {num(high)}{')' if high_open else ']'}{unit}"
        if low is not None:
            if low_open:
                return "positive" if low == 0 else f"greater than {num(low)}{unit}"
            return f"at least {num(low)}{unit}"
        return f"less than {num(high)}{unit}" if high_open else f"at most {num(high)}{unit}"

    def check(ctx: click.Context, param: click.Parameter, value):
        if value is None or ctx.resilient_parsing:
            return value
        name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if isinstance(value, float) and not math.isfinite(value):
            raise _one_line(f"{name} must be a finite number, got {value}", 2)
        ok = ((low is None or (value > low if low_open else value >= low))
              and (high is None or (value < high if high_open else value <= high)))
        if not ok:
            raise _one_line(f"{name} must be {requirement()}, got {num(value)}", 2)
        return value

    return check


AT_LEAST_1 = _number(1)
AT_LEAST_0 = _number(0)
POSITIVE = _number(0, low_open=True)
MAX_RESOLUTION = 8192  # pixels a side (Blender's limit: 65536; 8192^2 x 12 views is 2.4 GB of RGB per object)
MAX_VIEWS = 4096
MAX_SAMPLES = 1 << 24  # Cycles' own limit
MAX_PROCESSES_PER_CPU = 4  # more local worker processes than this per CPU cannot be meant (a typo such as 100000)


def _check_workers(workers: int | None) -> None:
    """Local worker processes: refuse a count no machine of this size can run."""
    import os

    cpus = os.cpu_count() or 1
    limit = max(8, MAX_PROCESSES_PER_CPU * cpus)
    if workers is not None and workers > limit:
        raise CmaError(f"--workers {workers}: more than {MAX_PROCESSES_PER_CPU} processes per CPU "
                       f"(this machine has {cpus}); use at most {limit}")


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


def _source_options(f):
    """--source/--shapenet, --layout and --up-axis (scan, render)."""
    f = click.option("--up-axis", metavar="AXIS",
                     help="The files' up axis (+x -x +y -y +z -z), turned to the dataset's +Y [default: per layout "
                          "and format: glTF/OBJ/PLY +y, OFF/STL +z; docs/SOURCES.md].")(f)
    f = click.option("--layout", type=click.Choice(list(LAYOUTS)),
                     help="The collection's layout [default: detected].")(f)
    f = click.option("--shapenet", type=click.Path(path_type=Path),
                     help="ShapeNetCore.v2 root (same as --source PATH --layout shapenet).")(f)
    return click.option("--source", type=click.Path(path_type=Path),
                        help="Collection root: ShapeNetCore.v2, an Objaverse download, ModelNet10/40 or any folder "
                             "of .obj/.glb/.gltf/.ply/.stl/.off files.")(f)


def _source(source: Path | None, shapenet: Path | None, layout: str | None) -> tuple[Path, str | None]:
    """(root, layout) from --source/--shapenet/--layout: exactly one of the two paths."""
    if (source is None) == (shapenet is None):
        raise click.UsageError("give the collection as --source PATH (or --shapenet PATH for ShapeNetCore.v2)")
    if shapenet is not None:
        if layout not in (None, "shapenet"):
            raise click.UsageError(f"--shapenet is a ShapeNetCore.v2 root; use --source with --layout {layout}")
        return shapenet, "shapenet"
    return source, layout


@cli.command()
@_source_options
@click.option("--out", default=Path("manifest.csv"), show_default=True, type=click.Path(path_type=Path),
              help="Manifest CSV to write (one row per object); replaced atomically.")
@click.option("--categories", help="Comma-separated category names or ids, e.g. chair,04379243.")
@click.option("--limit", type=int, callback=AT_LEAST_1,
              help="At most N objects, taken round-robin across the selected categories.")
@click.option("--workers", type=int, callback=AT_LEAST_1,
              help="Parallel inspector processes [default: CPU count, at most 8].")
def scan(source: Path | None, shapenet: Path | None, layout: str | None, up_axis: str | None, out: Path,
         categories: str | None, limit: int | None, workers: int | None) -> None:
    """Discover a collection's objects and write its manifest, without Blender.

    Each row: object and category id, category, split (the collection's official one, else
    deterministic by id), file path, format, size and sha256, counts (vertices, triangles,
    meshes, materials, animations, armatures), referenced textures and which are missing,
    problems (truncated file, missing texture, ...) and harmless quirks. Prints the counts per
    category and the problems found. Columns: docs/MANIFEST.md; layouts: docs/SOURCES.md.

    \b
    Example:
      cma-build scan --shapenet ~/data/ShapeNetCore.v2 --out manifest.csv
      cma-build scan --source ~/.objaverse --out objaverse.csv
      cma-build scan --source ~/data/ModelNet40 --categories chair,table --limit 100
    """
    from cma_builder.source.scan import scan as run_scan, summary_lines

    _check_workers(workers)
    root, layout = _source(source, shapenet, layout)
    result = run_scan(root, out, _split_list(categories), limit, workers, layout=layout, up_axis=up_axis,
                      keep_rows=False)
    click.echo("\n".join(summary_lines(result)))


@cli.command()
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Folder to write the mini-ShapeNet into (replaced atomically if it is an earlier synth output).")
@click.option("--per-category", default=8, show_default=True, type=int, callback=AT_LEAST_1,
              help="Models per category.")
@click.option("--seed", default=0, show_default=True, type=int, callback=AT_LEAST_0,
              help="Same seed, byte-identical files.")
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
    from cma_builder.extras import require

    require("render", "cma-build synth", ("imageio",))
    check_output_dir(out, "--out")
    from cma_builder.source.synth import CATEGORY_IDS, synthesize
    from cma_builder.source.taxonomy import Taxonomy

    taxonomy = Taxonomy.bundled()
    wanted = _split_list(categories)
    synsets = taxonomy.resolve(wanted) if wanted else None
    result = synthesize(out, per_category, seed, synsets)
    total = sum(result.counts.values())
    click.echo(f"Wrote {total} models ({len(result.counts)} categories x {per_category}, seed {seed}) to {result.root}")
    for sid in CATEGORY_IDS:
        if sid in result.counts:
            click.echo(f"  {sid}  {taxonomy.category_name(sid):<10} {result.counts[sid]}")


def _load_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """--config FILE (YAML or JSON, same keys as the flags) becomes the defaults; flags win."""
    if value is None:
        return
    import yaml

    try:
        data = yaml.safe_load(Path(value).read_text("utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _one_line(f"{value}: not a readable YAML/JSON config ({exc.__class__.__name__})", 2) from None
    if not isinstance(data, dict):
        raise _one_line(f"{value}: expected a mapping of option names to values", 2)
    names = {p.name for p in ctx.command.params if p.name not in ("config", "help")}
    config = {}
    for key, v in data.items():
        name = str(key).replace("-", "_")
        if name not in names:
            raise _one_line(f"{value}: unknown key '{key}'; valid keys: {', '.join(sorted(names))}", 2)
        config[name] = ",".join(map(str, v)) if isinstance(v, list) else v
    ctx.default_map = {**(ctx.default_map or {}), **config}


@cli.command()
@click.option("--config", type=click.Path(path_type=Path), is_eager=True, expose_value=False, callback=_load_config,
              help="YAML/JSON file with the same keys as these options (flags override it).")
@_source_options
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Dataset folder (zarr v3).")
@click.option("--categories", help="Comma-separated category names or synset ids.")
@click.option("--split", "splits", help="Only these splits, e.g. train or val,test.")
@click.option("--limit", type=int, callback=AT_LEAST_1, help="At most N models, round-robin across categories.")
@click.option("--views", default=12, show_default=True, type=int, callback=_number(1, MAX_VIEWS),
              help=f"Views per object (ring/sphere/random), 1..{MAX_VIEWS}.")
@click.option("--viewpoints", default="ring", show_default=True,
              type=click.Choice(["ring", "sphere", "random", "file"]), help="Viewpoint scheme.")
@click.option("--elevations", default="30", show_default=True,
              help="ring: comma-separated elevations in degrees, views split evenly over them.")
@click.option("--viewpoint-seed", default=0, show_default=True, type=int, help="random: seed (combined with the model id).")
@click.option("--viewpoint-file", type=click.Path(path_type=Path),
              help="file: JSON list of {azimuth, elevation[, distance]} or {world_to_cam} poses.")
@click.option("--resolution", default=224, show_default=True, type=int, callback=_number(8, MAX_RESOLUTION),
              help=f"Square image size in pixels, 8..{MAX_RESOLUTION}.")
@click.option("--fov", default=40.0, show_default=True, type=float,
              callback=_number(0, 170, low_open=True, high_open=True, unit="degrees"),
              help="Horizontal field of view, degrees, above 0 and below 170.")
@click.option("--distance", type=float, callback=POSITIVE,
              help="Camera distance in OBJ units [default: fit the bounding sphere].")
@click.option("--samples", default=32, show_default=True, type=int, callback=_number(1, MAX_SAMPLES),
              help="Cycles samples of the RGB pass.")
@click.option("--denoise/--no-denoise", default=False, show_default=True, help="OpenImageDenoise on the RGB pass.")
@click.option("--antialias/--no-antialias", default=True, show_default=True,
              help="Anti-aliased RGB (depth, mask and normals are always exact pixel-center samples).")
@click.option("--background", default="white", show_default=True, help="white, black, gray, #rrggbb or r,g,b.")
@click.option("--normals/--no-normals", default=False, show_default=True, help="Also store surface normals.")
@click.option("--view-points", default=2048, show_default=True, type=int, callback=AT_LEAST_1,
              help="Points per per-view cloud (FPS).")
@click.option("--fused-points", default=8192, show_default=True, type=int, callback=AT_LEAST_1,
              help="Points in the fused cloud (FPS).")
@click.option("--visibility-tolerance", default=1e-4, show_default=True, type=float, callback=POSITIVE,
              help="fused_visible: a surface this close before a point (along its camera ray, as a fraction of "
                   "the bounding-box diagonal) still counts as the point's own.")
@click.option("--workers", type=int, callback=AT_LEAST_1,
              help="Persistent Blender worker processes, each rendering with at least 2 "
              "threads [default: CPU count / 2; with --ray-address: one actor per 2 CPUs of the cluster].")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "gpu"]),
              help="Cycles on CPU, or on a CUDA/OptiX GPU.")
@click.option("--timeout", default=600.0, show_default=True, type=float, callback=POSITIVE,
              help="Seconds per object before its worker is killed.")
@click.option("--recycle-after", default=100, show_default=True, type=int, callback=AT_LEAST_1,
              help="Objects per worker process.")
@click.option("--max-rss-mb", default=4096, show_default=True, type=int, callback=AT_LEAST_1,
              help="Replace a worker above this memory (resident set, MB) after its object.")
@click.option("--shard-size", default=16, show_default=True, type=int, callback=AT_LEAST_1, help="Objects per shard.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: worker processes on this machine; ray: Ray actors (pip install 'cma-toolkit[ray]').")
@click.option("--ray-address", help="Ray cluster to join: auto or HOST:PORT [default: start a local Ray instance].")
@click.option("--num-shards", type=int, callback=AT_LEAST_1,
              help="Render one of N slices of the selection (batch arrays; slices of the work, not the zarr shards "
              "of --shard-size) "
              "[default: SLURM_ARRAY_TASK_COUNT when set].")
@click.option("--shard-index", type=int, callback=AT_LEAST_0,
              help="Which slice, 0..N-1 [default: SLURM_ARRAY_TASK_ID - "
              "SLURM_ARRAY_TASK_MIN, or JOB_COMPLETION_INDEX]. Slices write into the same --out concurrently.")
@click.option("--retry-failed", is_flag=True, help="Retry objects that failed (or were skipped) before.")
@click.option("--force", is_flag=True, help="Discard a dataset rendered with other settings and start over.")
@click.option("--dry-run", is_flag=True, help="Print what would be rendered; change nothing.")
def render(source, shapenet, layout, up_axis, out, categories, splits, limit, views, viewpoints, elevations,
           viewpoint_seed, viewpoint_file, resolution, fov, distance, samples, denoise, antialias, background, normals, view_points, fused_points,
           visibility_tolerance, workers, device, timeout, recycle_after, max_rss_mb, shard_size, executor, ray_address,
           num_shards, shard_index, retry_failed, force, dry_run) -> None:
    """Render a collection (ShapeNetCore.v2, Objaverse, ModelNet, a folder of meshes) to a
    multi-view RGB-D + point-cloud dataset (zarr v3).

    Persistent Blender (Cycles) workers render each object from calibrated viewpoints: RGB,
    planar depth and mask per view (normals optional), back-projected to a per-view cloud and
    a fused cloud with exact point-to-pixel maps. Running the same command again resumes;
    failures are recorded and the run goes on. Format: docs/DATA_FORMAT.md.

    \b
    Example:
      cma-build render --shapenet ~/data/ShapeNetCore.v2 --out shapenet-cma
      cma-build render --source ~/.objaverse --out objaverse-cma --limit 1000
      cma-build render --source ~/data/ModelNet40 --out modelnet40-cma --split test
      cma-build render --shapenet out/mini-shapenet --out out/ds --resolution 64 --views 4 --samples 8
      cma-build render --shapenet ~/data/ShapeNetCore.v2 --out shapenet-cma --num-shards 50 --shard-index 7
      cma-build render --shapenet /shared/ShapeNetCore.v2 --out /shared/shapenet-cma --executor ray \\
          --ray-address auto --workers 64
    """
    import os

    from cma_builder.extras import require

    require("render", "cma-build render")
    if executor == "ray":
        require("ray", "cma-build render --executor ray")
    from cma_builder.geometry.cameras import ViewpointSpec, load_pose_file
    from cma_builder.render.slices import resolve_slice
    from cma_builder.render.driver import render as run_render, summary_lines
    from cma_builder.render.settings import RenderOptions, RenderSettings, default_workers, parse_color, threads_per_worker

    try:
        elev = tuple(float(e) for e in str(elevations).split(",") if e.strip())
    except ValueError:
        raise CmaError(f"--elevations '{elevations}': expected comma-separated degrees, e.g. 30 or -15,30") from None
    if not all(-90.0 <= e <= 90.0 for e in elev):  # also refuses nan and inf
        raise CmaError(f"--elevations '{elevations}': each elevation must be between -90 and 90 degrees")
    if viewpoints == "file" and viewpoint_file is None:
        raise CmaError("--viewpoints file needs --viewpoint-file POSES.json")
    poses = load_pose_file(viewpoint_file) if viewpoints == "file" else None
    spec = ViewpointSpec(viewpoints, len(poses) if poses else views, elev or (30.0,), viewpoint_seed, poses)
    settings = RenderSettings(resolution=resolution, viewpoints=spec, fov=fov, distance=distance, samples=samples,
                              denoise=denoise, antialias=antialias, background=parse_color(background),
                              normals=normals, view_points=view_points, fused_points=fused_points,
                              visibility_tolerance=visibility_tolerance)
    cpus = os.cpu_count() or 1
    if ray_address and executor != "ray":
        raise CmaError("--ray-address needs --executor ray")
    if executor == "local":
        _check_workers(workers)
    check_output_dir(out, "--out")  # also for --dry-run: it says what a real run would do
    cluster = executor == "ray" and ray_address and workers is None  # one 2-thread actor per 2 cluster CPUs
    workers = 0 if cluster else workers or default_workers(cpus)
    options = RenderOptions(workers=workers, device=device,
                            threads_per_worker=min(2, cpus) if cluster else threads_per_worker(cpus, workers),
                            timeout=timeout, recycle_after=recycle_after, max_rss_mb=max_rss_mb, shard_size=shard_size,
                            executor=executor, ray_address=ray_address)
    slice_ = resolve_slice(num_shards, shard_index)
    root, layout = _source(source, shapenet, layout)
    summary = run_render(root, out, settings, options, _split_list(categories), _split_list(splits), limit,
                         retry_failed=retry_failed, force=force, dry_run=dry_run, slice_=slice_, layout=layout,
                         up_axis=up_axis)
    click.echo("\n".join(summary_lines(summary)))
    if summary.interrupted:
        raise SystemExit(130)


def _list_checks(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from cma_builder.checks.validate import check_list_lines

        click.echo("\n".join(check_list_lines()))
        ctx.exit(0)


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--sample", type=int, callback=AT_LEAST_1,
              help="Check a random subset of N objects (structure is always checked for all).")
@click.option("--seed", default=0, show_default=True, type=int, callback=AT_LEAST_0, help="Seed of --sample.")
@click.option("--source", type=click.Path(path_type=Path),
              help="The collection the dataset was rendered from: also compare points, depth, mask and visibility "
                   "with its source files, read without Blender (trimesh; OFF: our reader; ShapeNet OBJ: open3d).")
@click.option("--shapenet", type=click.Path(path_type=Path), help="ShapeNetCore.v2 root (same as --source).")
@click.option("--layout", type=click.Choice(list(LAYOUTS)),
              help="The source's layout [default: the one the dataset records].")
@click.option("--report", type=click.Path(path_type=Path),
              help="JSON report to write [default: DATASET/validation.json].")
@click.option("--threshold", "thresholds", multiple=True, metavar="CHECK=VALUE",
              help="Override a check's limit (repeatable), e.g. mapping.pixel_error=0.1.")
@click.option("--workers", type=int, callback=AT_LEAST_1, help="Parallel checking processes [default: CPU count].")
@click.option("--list-checks", is_flag=True, is_eager=True, expose_value=False, callback=_list_checks,
              help="Print every check with its default limit and exit.")
def validate(dataset: Path, sample: int | None, seed: int, source: Path | None, shapenet: Path | None,
             layout: str | None, report: Path | None, thresholds: tuple[str, ...], workers: int | None) -> None:
    """Check a rendered dataset's cameras and point-to-pixel maps with numbers.

    Structure (index vs shards, array shapes and dtypes, NaNs, counts), cameras (rigid
    world_to_cam, sane K, camera outside the bounding sphere), mapping (stored points project
    onto their stored pixels at the stored depth, inside the mask; no visibility flag clearly
    contradicted by the depth maps), images (not blank, not clipped, not magenta, mask/depth/RGB
    agree) and, with --source, independent geometry (points on the source mesh; depth, mask and
    visibility flags against open3d ray casting of the source file, through the stored transform). Prints median / p99 / worst per check and every failure by object,
    view and check. Exit code 0 when all pass, 1 when any fails. Limits: --list-checks and
    docs/VALIDATION.md.

    \b
    Example:
      cma-build validate shapenet-cma --shapenet ~/data/ShapeNetCore.v2 --sample 500
      cma-build validate objaverse-cma --source ~/.objaverse --sample 200
      cma-build validate out/demo/dataset --threshold images.saturated=0.01 --report report.json
    """
    from cma_builder.extras import require
    from cma_builder.checks.validate import parse_thresholds, summary_lines, validate as run_validate, write_report

    if source is not None and shapenet is not None:
        raise click.UsageError("give the source once: --source PATH or --shapenet PATH")
    if shapenet is not None:
        source, layout = shapenet, "shapenet"
    if source is not None:
        require("validate", "cma-build validate --source")
    limits = parse_thresholds(thresholds)
    _check_workers(workers)
    if report is not None:
        check_output_file(report, "--report", "report.json")
    else:  # the default, DATASET/validation.json: name the dataset's problems first
        from cma_builder.format.reader import DatasetReader

        default = DatasetReader.open(dataset).root / "validation.json"
        try:
            check_output_file(default)
        except CmaError as exc:
            raise CmaError(f"{exc}; pass --report FILE") from None
    result = run_validate(dataset, sample=sample, seed=seed, source=source, thresholds=limits, workers=workers,
                          layout=layout)
    click.echo("\n".join(summary_lines(result)))
    target = report or result.dataset / "validation.json"
    try:
        path = write_report(result, target)
    except PermissionError:
        raise CmaError(f"{target}: cannot write the report here (permission denied); pass --report FILE") from None
    click.echo(f"Report: {path}")
    if not result.passed:
        raise SystemExit(1)


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the PNGs (created).")
@click.option("--objects", "ids", multiple=True, metavar="ID",
              help="Model ids or synset/model ids to show (repeatable, or comma-separated).")
@click.option("--n", "n", default=16, show_default=True, type=int, callback=AT_LEAST_1,
              help="Without --objects: this many objects, round-robin across categories.")
@click.option("--seed", default=0, show_default=True, type=int, callback=AT_LEAST_0, help="Which objects --n picks.")
@click.option("--max-views", default=12, show_default=True, type=int, callback=AT_LEAST_1,
              help="At most this many views per sheet.")
def preview(dataset: Path, out: Path, ids: tuple[str, ...], n: int, seed: int, max_views: int) -> None:
    """Draw contact sheets of rendered objects and a category grid (PNG).

    Per object: RGB, depth (color map with a scale bar), mask, normals if stored, and the
    fused points each view sees, projected with the stored cameras and colored by depth (they
    must sit exactly on the object), then the fused cloud from four angles. grid.png: one
    labeled thumbnail per object, a row per category. Prints the paths.

    \b
    Example:
      cma-build preview shapenet-cma --n 16 --out previews
      cma-build preview out/demo/dataset --objects 37bc1e68a1cf27757033fbd531016542 --out previews
    """
    from cma_builder.checks.preview import preview as run_preview

    wanted = [i for item in ids for i in _split_list(item) or []]
    paths = run_preview(dataset, out, wanted or None, n=n, seed=seed, max_views=max_views)
    click.echo(f"Wrote {len(paths) - 1} contact sheets and a category grid:")
    click.echo("\n".join(f"  {p}" for p in paths))


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--objects", "ids", multiple=True, metavar="ID",
              help="Model ids or synset/model ids to show (repeatable, or comma-separated).")
@click.option("--n", "n", default=3, show_default=True, type=int, callback=AT_LEAST_1,
              help="Without --objects: this many objects, round-robin across categories.")
@click.option("--seed", default=0, show_default=True, type=int, callback=AT_LEAST_0, help="Which objects --n picks.")
@click.option("--views", help="Only these views, e.g. 0,3,6 [default: all].")
@click.option("--out", type=click.Path(path_type=Path),
              help="The Rerun recording to write (.rrd); open it with: rerun FILE.rrd")
@click.option("--source", type=click.Path(path_type=Path),
              help="The collection the dataset was rendered from: also show each object's source mesh "
                   "(read as validate --source reads it).")
@click.option("--layout", type=click.Choice(list(LAYOUTS)),
              help="The source's layout [default: the one the dataset records].")
@click.option("--serve", is_flag=True,
              help="Serve the recording with Rerun's web viewer (for a remote machine, over SSH).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="--serve: the address to listen on (0.0.0.0 publishes the data to the network).")
@click.option("--web-port", default=9090, show_default=True, type=int, callback=_number(1, 65535),
              help="--serve: the web viewer's HTTP port.")
@click.option("--grpc-port", default=9876, show_default=True, type=int, callback=_number(1, 65535),
              help="--serve: the port the viewer reads the data from.")
def view(dataset: Path, ids: tuple[str, ...], n: int, seed: int, views: str | None, out: Path | None,
         source: Path | None, layout: str | None, serve: bool, host: str, web_port: int, grpc_port: int) -> None:
    """Look at objects in 3D with Rerun: cameras, images, depth and points in one frame.

    Writes a Rerun recording in which each chosen object has, in its own dataset frame, every
    camera as a pinhole with the stored K, resolution and world_to_cam and its RGB, depth and
    mask under it; the fused cloud in the colours of the pixels it came from; and per camera
    the points its stored visibility flags call visible (select the camera cams/view_KK in the
    tree: they light up, and they sit on its image). With --source, the source mesh too. Open
    it with `rerun FILE.rrd` (pip install 'cma-toolkit[view]'), or, on a machine without a
    display, --serve it to a browser through an SSH tunnel. docs/VIEWING.md says how the
    conventions map and what each entity is.

    \b
    Example:
      cma-build view out/demo/dataset --objects 3e31fb26f656a12e2c100acdcc0c7c59 --out chair.rrd
      rerun chair.rrd
      cma-build view shapenet-cma --n 4 --views 0,3,6,9 --source ~/data/ShapeNetCore.v2 --out sample.rrd
      cma-build view shapenet-cma --objects 03001627/1a6f615e8b1b5ae4dbbc9440457e303e --serve
    """
    from cma_builder.extras import require

    require("view", "cma-build view")
    if out is None and not serve:
        raise click.UsageError("say where the recording goes: --out FILE.rrd, or --serve (or both)")
    if not serve and (host, web_port, grpc_port) != ("127.0.0.1", 9090, 9876):
        raise CmaError("--host, --web-port and --grpc-port apply to --serve")
    if source is not None:
        require("validate", "cma-build view --source")
    from cma_builder.checks.preview import choose
    from cma_builder.format.reader import DatasetReader
    from cma_builder.paths import refuse_inside
    from cma_builder.view.recording import parse_views, write_recording

    wanted_views = parse_views(views)
    reader = DatasetReader.open(dataset)
    if out is not None:
        refuse_inside(out, reader.root)
        check_output_file(out, "--out", "view.rrd")
    if serve:
        from cma_builder.view.serve import check_serve_options

        host = check_serve_options(host, web_port, grpc_port)
    wanted = [i for item in ids for i in _split_list(item) or []]
    objs = choose(reader, wanted or None, n=n, seed=seed)
    reader.verify(objs)
    meshes = _source_meshes(reader, objs, source, layout) if source is not None else None
    from cma_builder.view.serve import interrupt_on_termination

    previous = interrupt_on_termination()  # SIGTERM / SIGHUP: cleaned up as after Ctrl-C (no partial file)
    try:
        with tempfile.TemporaryDirectory(prefix="cma-view-") if out is None else nullcontext(None) as folder:
            target = out if out is not None else Path(folder) / "view.rrd"
            written = write_recording(reader, objs, target, wanted_views, meshes)
            plural = "s" if len(objs) != 1 else ""
            click.echo(f"Wrote {written.path}: {len(objs)} object{plural}, {written.views} cameras, {written.points} "
                       "fused points" + (f", {written.mesh_triangles} source triangles" if meshes is not None else ""))
            if not serve:
                click.echo(f"Open it with: rerun {written.path}")
                if _no_display():
                    click.echo("(no display here: open it on a desktop, or show it in a browser with --serve)")
                return
            from cma_builder.view.serve import serve as run_serve

            code = run_serve(written.path, host, web_port, grpc_port, echo=click.echo)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code:
        raise CmaError(f"Rerun's server stopped on its own ({f'signal {-code}' if code < 0 else f'exit {code}'})")


def _no_display() -> bool:
    """Linux without X11 or Wayland (a cluster node): Rerun's native viewer cannot open a window."""
    import os
    import sys

    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _source_meshes(reader, objs, source: Path, layout: str | None) -> dict:
    """Each object's source mesh in the dataset frame, read as validate --source reads it."""
    import numpy as np

    from cma_builder.checks.source_mesh import dataset_mesh
    from cma_builder.checks.validate import open_collection, source_objects

    collection = open_collection(reader, source, layout)
    found = source_objects(collection, {(o.synset_id, o.model_id) for o in objs})
    meshes = {}
    for obj in objs:
        src = found.get((obj.synset_id, obj.model_id))
        if src is None or not src.path.is_file():
            raise CmaError(f"--source: {obj.key} not found in {collection.root}")
        to_world = reader.load(obj, ["source_to_world"]).get("source_to_world", np.eye(4))
        vertices, triangles = dataset_mesh(src, to_world, collection.root)
        if not len(triangles):
            raise CmaError(f"--source: {src.path}: no triangles read (is it the file {obj.key} was rendered from?)")
        meshes[(obj.synset_id, obj.model_id)] = vertices, triangles
    return meshes


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the numbers as JSON.")
def stats(dataset: Path, json_out: Path | None) -> None:
    """Summarize a rendered dataset.

    Objects per category and split (with failed and skipped), failures grouped by reason,
    bytes on disk per object and per array, foreground pixels and visible fused points per
    view, render time per object.

    \b
    Example:
      cma-build stats shapenet-cma
      cma-build stats out/demo/dataset --json stats.json
    """
    from cma_builder.checks.stats import stats as run_stats, summary_lines, write_json

    if json_out is not None:
        check_output_file(json_out, "--json", "stats.json")
    result = run_stats(dataset)
    click.echo("\n".join(summary_lines(result)))
    if json_out is not None:
        click.echo(f"JSON: {write_json(result, json_out)}")


_FORMAT_NAMES = ["shapenet55", "ply", "nerf", "colmap"]  # cma_builder.exporters.FORMATS (imported lazily)
_FORMAT_OPTIONS = {"points": "shapenet55", "per_view": "ply", "depth_scale": "nerf"}


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, type=click.Choice(_FORMAT_NAMES),
              help="shapenet55: Point-BERT/Point-MAE ShapeNet-55 npy + lists; ply: colored clouds; nerf: "
                   "transforms.json scenes (nerfstudio, instant-ngp); colmap: COLMAP text models (3DGS).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Export folder (created; a re-run with the same options resumes).")
@click.option("--split", "splits", help="Only these splits, e.g. train or val,test.")
@click.option("--categories", help="Comma-separated category names or synset ids.")
@click.option("--limit", type=int, callback=AT_LEAST_1, help="At most N objects, round-robin across categories.")
@click.option("--points", type=int, callback=AT_LEAST_1,
              help="shapenet55: rows per file [default: 8192, the loaders' N_POINTS].")
@click.option("--per-view", is_flag=True, help="ply: also one PLY per view cloud (a folder per object).")
@click.option("--depth-scale", type=float,
              help="nerf: OBJ units per 16-bit depth step [default: 1e-3, nerfstudio's depth-unit-scale-factor].")
def export(dataset: Path, fmt: str, out: Path, splits: str | None, categories: str | None, limit: int | None,
           points: int | None, per_view: bool, depth_scale: float | None) -> None:
    """Write a rendered dataset in a format other codebases read (docs/EXPORT.md).

    Each object is written completely or not at all; running the same command again skips
    what is there and goes on. The dataset is only read.

    \b
    Example:
      cma-build export shapenet-cma --format shapenet55 --out data/ShapeNet55-34
      cma-build export shapenet-cma --format nerf --out scenes --categories chair --limit 10
      cma-build export out/demo/dataset --format ply --out clouds --per-view
    """
    from cma_builder.exporters import export as run_export, problem_lines, summary_lines

    given = {"points": points, "per_view": per_view or None, "depth_scale": depth_scale}
    for key, value in given.items():
        if value is not None and _FORMAT_OPTIONS[key] != fmt:
            raise CmaError(f"--{key.replace('_', '-')} applies to --format {_FORMAT_OPTIONS[key]}, not {fmt}")
    summary = run_export(dataset, fmt, out, {k: v for k, v in given.items() if v is not None},
                         _split_list(splits), _split_list(categories), limit)
    click.echo("\n".join(summary_lines(summary)))
    problems = problem_lines(summary)
    if problems:
        click.echo("\n".join(problems), err=True)
    if summary.failed:
        raise SystemExit(1)


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
def merge(dataset: Path) -> None:
    """Rebuild DATASET/index.csv from the shards and run logs on disk.

    Slices of a batch array (--num-shards/--shard-index) write into one dataset at the same
    time; each rebuilds the index when it ends, so the last one to finish leaves it complete.
    Run merge after the array (or after any crash or copy) to be sure. It also gives shards
    written before zarr dimension names existed their names (metadata only, so xarray opens
    them); it changes nothing else and is safe while renders are running.

    \b
    Example:
      sbatch --dependency=afterany:$ARRAY_JOB_ID --wrap "cma-build merge shapenet-cma"
      cma-build merge shapenet-cma
    """
    from cma_builder.format.merge import merge as run_merge

    result = run_merge(dataset)
    if result.upgraded:
        click.echo(f"Added zarr dimension names to {result.upgraded} shards written before they existed")
    counts = result.counts
    click.echo(f"Index rebuilt: {result.index}: {counts['done']} done, {counts['failed']} failed, "
               f"{counts['skipped']} skipped in {result.shards} shards")


def main() -> None:
    try:
        cli(prog_name="cma-build")
    except BrokenPipeError:  # output piped into head and the like: stop quietly
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None


if __name__ == "__main__":
    main()
