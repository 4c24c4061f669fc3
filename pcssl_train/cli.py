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
  pcssl-train eval runs/point-mae --protocol svm --benchmark modelnet40 --root ~/data/modelnet40_ply_hdf5_2048
  pcssl-train eval runs/point-mae -p svm -r ~/data/modelnet40_normal_resampled --svm-protocol recon
  pcssl-train report runs/point-mae --modelnet40 ~/data/modelnet40_normal_resampled --folds ~/data/ModelNetFewshot -o rep
  pcssl-train benchmark --out out/benchmark
"""


def fail(message: str, code: int = 2) -> None:
    """The one way pcssl-train reports a user problem: ``Error: MESSAGE`` on one line of stderr (as
    click and cma-build print theirs), exit code 2 (130 for Ctrl-C)."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    click.echo(f"Error: {text}", err=True)
    sys.exit(code)


def guarded(fn):
    """One-line errors for user problems (TrainError, CmaError, a file the OS refuses), exit 130 on Ctrl-C."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from cma_builder.errors import CmaError

        from .errors import TrainError

        try:
            return fn(*args, **kwargs)
        except (TrainError, CmaError) as e:
            fail(str(e))
        except BrokenPipeError:
            raise
        except OSError as e:   # an output path that was fine when checked and is not any more, a full disk
            fail(f"{e.filename}: {e.strerror or e}" if e.filename else (e.strerror or str(e)))
        except KeyboardInterrupt:
            fail("interrupted; run the same command again to resume from the last epoch", 130)

    return wrapper


class _Group(click.Group):
    """click's usage errors (unknown option, a value that is not a number, a missing option, a number
    out of range) as one line, ``Error: ... (see 'pcssl-train CMD --help')``, exit code 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:   # options of pcssl-train itself
            _usage(e)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:   # a subcommand's options, parsed here
            _usage(e)


def _usage(e: click.UsageError) -> None:
    if type(e).__name__ == "NoArgsIsHelpError":   # bare `pcssl-train`: click prints the help, keep that
        raise e
    where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
    fail(e.format_message() + where, e.exit_code)


def _at_least(low: int):
    """An option callback: the value (or each of a comma-separated list) is an integer >= ``low``,
    checked while the options are parsed, before any work."""

    def check(ctx: click.Context, param: click.Parameter, value):
        if value is None or ctx.resilient_parsing:
            return value
        name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if isinstance(value, str):
            try:
                values = [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise click.UsageError(f"{name} must be comma-separated integers, got {value!r}", ctx) from None
            if not values:
                raise click.UsageError(f"{name} needs at least one integer, got {value!r}", ctx)
        else:
            values = [value]
        bad = [v for v in values if v < low]
        if bad:
            raise click.UsageError(f"{name} must be {'positive' if low == 1 else f'at least {low}'}, got {bad[0]}", ctx)
        return value

    return check


AT_LEAST_0, AT_LEAST_1, AT_LEAST_2 = _at_least(0), _at_least(1), _at_least(2)


def method_names() -> list[str]:
    """The registered pretraining methods, in registration order (imports torch: call it late)."""
    from .methods import METHODS

    return list(METHODS)


class MethodsOption(click.Option):
    """An option whose help text (``{methods}``: "a, b or c") and, with ``all_methods=True``, default
    ("a,b,c") name the registered methods. They are read from the registry only when needed, so a
    bare ``pcssl-train`` does not wait for torch to import."""

    def __init__(self, *args, all_methods: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.all_methods = all_methods

    def get_default(self, ctx, call=True):
        return ",".join(method_names()) if self.all_methods else super().get_default(ctx, call)

    def get_help_record(self, ctx):
        if not self.help:
            return super().get_help_record(ctx)
        names = method_names()
        template, self.help = self.help, self.help.format(methods=f"{', '.join(names[:-1])} or {names[-1]}")
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = template


def _dataset_folder(path: Path, option: str = "--data") -> None:
    """A dataset folder that is a file: say so (reading it would call it 'no such dataset folder')."""
    from .errors import TrainError

    if path.exists() and not path.is_dir():
        raise TrainError(f"{option} {path}: is a file, not a cma-build dataset folder")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXAMPLES)
@click.version_option(package_name="cma-toolkit", prog_name="pcssl-train")
def cli() -> None:
    """Self-supervised point-cloud pretraining directly on cma-build datasets."""


@cli.command()
@click.option("--method", "-m", cls=MethodsOption, help="{methods} (or from --config).")
@click.option("--data", "-d", required=True, type=click.Path(path_type=Path),
              help="A cma-build dataset folder; for point-only methods also a ShapeNet-55 folder (shapenet_pc/ + "
                   "ShapeNet-55/train.txt, the official Point-MAE data) or a ModelNet folder (normal_resampled or h5).")
@click.option("--config", "-c", help="YAML file, or a bundled config name (e.g. point-mae-tiny); merged over the "
                                     "method's published defaults.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Run folder [runs/METHOD]. An existing run resumes.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. optim.lr=3e-4.")
@click.option("--init", "init", type=click.Path(path_type=Path), metavar="CKPT",
              help="Start from these weights: an official Point-MAE checkpoint, a run checkpoint or an encoder "
                   "export (the whole model if it is the same, else the point encoder). Read safely "
                   "(weights_only); kept in the run's config, so give it again to resume.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=None,
              help="Progress bars [default: only when stderr is a terminal].")
@guarded
def pretrain(method, data, config, out, overrides, init, device, progress) -> None:
    """Pretrain a method on a dataset; checkpoints every epoch and resumes a killed run exactly.

    \b
    Writes RUN/config.yaml, RUN/checkpoints/last.pt, RUN/metrics.csv, RUN/tensorboard/.
    Multi-GPU / multi-process: launch the same command through torchrun (DDP).

    \b
    Example:
      pcssl-train pretrain --method point-mae --data shapenet-cma --out runs/point-mae
      pcssl-train pretrain -c point-mae-tiny -d out/demo/dataset -o runs/smoke --set optim.epochs=2
      pcssl-train pretrain -m crossalignnet -d shapenet-cma -o runs/can --set model.image_mask=random
      pcssl-train pretrain -m crossalignnet -d shapenet-cma -o runs/can-init --init Point-MAE/pretrain.pth
      pcssl-train pretrain -m point-mae -d data/ShapeNet55-34 -o runs/point-mae-sn55     # the official data
      pcssl-train pretrain -m point-mae -d data/modelnet40_normal_resampled -o runs/pm-mn40 # in-domain
    """
    from .engine.config import load_config
    from .engine.trainer import pretrain as run_pretrain
    from .errors import TrainError

    cfg = load_config(method, config, overrides)   # every value checked here, before any work
    if init is not None:
        if not init.is_file():
            raise TrainError(f"--init {init}: " + ("is a folder, not a checkpoint file" if init.is_dir() else "no such file"))
        cfg["init"] = str(init.resolve())
    _dataset_folder(data)
    run = out or Path("runs") / cfg["method"]
    result = run_pretrain(cfg, data, run, None if device == "auto" else device, progress)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        if "loss" not in result:   # resumed a run that had already finished: nothing trained
            n = result["epoch"]
            click.echo(f"{cfg['method']}: the run had already finished its {n} epoch{'s' * (n != 1)} "
                       f"({result['step']} steps); nothing to do. Checkpoint {run / 'checkpoints' / 'last.pt'}")
        else:
            click.echo(f"{cfg['method']}: {result['epoch']} epochs, {result['step']} steps, last epoch loss "
                       f"{result['loss']:.5g}; checkpoint {run / 'checkpoints' / 'last.pt'}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Output file [RUN/encoder-METHOD-epochN.pt; for a "
              "file that is not a run's checkpoint, in the current folder].")
@click.option("--epoch", default="last", show_default=True, help="Which checkpoint: last, or an epoch kept by keep_every.")
@click.option("--format", "fmt", type=click.Choice(["pcssl", "point-mae"]), default="pcssl", show_default=True,
              help="pcssl: this package's encoder export; point-mae: an official Point-MAE checkpoint "
                   "(base_model, module.* keys) that the official code fine-tunes unchanged.")
@guarded
def export(run, out, epoch, fmt) -> None:
    """Write the pretrained point encoder of RUN (a run folder, a run checkpoint, an encoder export or an
    official Point-MAE checkpoint) for downstream use.

    \b
    Load a pcssl export with:  from pcssl_train.export import load_encoder; encoder = load_encoder(PATH)
    --format point-mae writes the whole Point_MAE model for a point-mae run, else the encoder alone
    (MAE_encoder.*, what the official fine-tuning reads). Files are read with weights_only=True.

    \b
    Example:
      pcssl-train export runs/point-mae --out point-mae-encoder.pt
      pcssl-train export runs/point-mae --format point-mae --out Point-MAE/experiments/ours.pth
      pcssl-train export Point-MAE/pretrain.pth --out official-encoder.pt
    """
    from .export import export_encoder

    click.echo(str(export_encoder(run, out, epoch, fmt)))


PROTOCOLS = ("svm", "fewshot", "finetune", "partseg")


@cli.command("eval")
@click.argument("encoder", type=click.Path(path_type=Path))
@click.option("--protocol", "-p", type=click.Choice(PROTOCOLS), required=True,
              help="svm: linear SVM on frozen features; fewshot: N-way K-shot on frozen features; finetune: "
                   "classification fine-tuning (Point-MAE recipe, voting); partseg: part segmentation fine-tuning.")
@click.option("--benchmark", "-b", type=click.Choice(["modelnet40", "modelnet10", "scanobjectnn", "shapenetpart", "cma"]),
              default="modelnet40", show_default=True, help="Which dataset format ROOT holds.")
@click.option("--root", "-r", type=click.Path(path_type=Path),
              help="The benchmark's folder on disk (never downloaded; ModelNet: modelnet40_normal_resampled or "
                   "modelnet40_ply_hdf5_2048), or a cma-build dataset for 'cma'. Not needed with --folds.")
@click.option("--svm-protocol", type=click.Choice(["cv", "recon", "point-m2ae", "crosspoint"]), default="cv",
              show_default=True, help="svm: cv = C chosen on val / CV (ours); recon, point-m2ae, crosspoint = that "
                                      "paper's official SVM, C, sampling and feature (docs/EVALUATION.md).")
@click.option("--sampling", type=click.Choice(["fps", "first"]), help="ModelNet / ScanObjectNN: how clouds are cut to "
              "--points [the preset's; cv: fps for normal_resampled, first for h5].")
@click.option("--folds", type=click.Path(path_type=Path), help="fewshot: the official folds (ModelNetFewshot/, "
              "<w>way_<s>shot/<fold>.pkl); mean ± std over them.")
@click.option("--variant", help="ScanObjectNN: obj_bg, obj_only or pb_t50_rs.")
@click.option("--points", type=int, callback=AT_LEAST_1, help="Points per cloud [1024; ScanObjectNN and ShapeNetPart 2048].")
@click.option("--random-init", is_flag=True, help="Evaluate the same architecture at random init (the baseline).")
@click.option("--epoch", default="last", show_default=True, help="For a run folder: which checkpoint.")
@click.option("--ways", default="5,10", show_default=True, callback=AT_LEAST_2, help="fewshot: comma-separated N.")
@click.option("--shots", default="10,20", show_default=True, callback=AT_LEAST_1, help="fewshot: comma-separated K.")
@click.option("--trials", default=10, show_default=True, callback=AT_LEAST_1,
              help="fewshot: episodes per setting (drawn episodes; with --folds, every fold is one).")
@click.option("--epochs", type=int, callback=AT_LEAST_1, help="finetune/partseg: epochs [300]; the linear warmup lasts min(10, epochs / 30) epochs "
              "(10 of 300, as Point-MAE), so a short run such as --epochs 3 still reaches the full learning rate.")
@click.option("--batch-size", type=int, callback=AT_LEAST_1, help="finetune [32] / partseg [16].")
@click.option("--seed", default=0, show_default=True, callback=AT_LEAST_0)
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Write the result as JSON (also .csv and .md "
              "next to it).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=None,
              help="Progress bars [default: only when stderr is a terminal].")
@guarded
def evaluate(encoder, protocol, benchmark, root, svm_protocol, sampling, folds, variant, points, random_init, epoch,
             ways, shots, trials, epochs, batch_size, seed, out, device, progress) -> None:
    """Score a pretrained encoder by a downstream protocol: an export, a run folder, a run checkpoint, or an
    official Point-MAE checkpoint (pretrain.pth or a fine-tuned one; read with weights_only=True).

    \b
    C of the SVM is chosen on a validation split (the dataset's, or a 20 % hold-out of train) when it
    has at least max(10, 2 x classes) clouds, otherwise by stratified 5-fold cross-validation on
    train; never on test. The printed line says which.
    Few-shot: support from train, up to 20 queries per class from test, mean ± std over trials.

    \b
    Example:
      pcssl-train eval runs/point-mae -p svm -b modelnet40 -r ~/data/modelnet40_ply_hdf5_2048
      pcssl-train eval runs/point-mae -p svm -r ~/data/modelnet40_normal_resampled --svm-protocol recon
      pcssl-train eval runs/point-mae -p svm -r ~/data/modelnet40_ply_hdf5_2048 --svm-protocol point-m2ae
      pcssl-train eval enc.pt -p fewshot --folds ~/data/ModelNetFewshot        # official folds, mean ± std
      pcssl-train eval enc.pt -p fewshot -b modelnet40 -r ~/data/modelnet40_ply_hdf5_2048 --ways 5 --shots 10
      pcssl-train eval enc.pt -p finetune -b scanobjectnn --variant pb_t50_rs -r ~/data/h5_files
      pcssl-train eval enc.pt -p partseg -b shapenetpart -r ~/data/shapenetcore_partanno_segmentation_benchmark_v0_normal
      pcssl-train eval runs/point-mae -p svm -b cma -r shapenet-cma --random-init
      pcssl-train eval Point-MAE/pretrain.pth -p svm -b modelnet40 -r ~/data/modelnet40_ply_hdf5_2048
    """
    from .engine.paths import check_output_file
    from .errors import TrainError
    from .eval.protocols import run_protocol

    if not encoder.exists():
        raise TrainError(f"{encoder}: no such encoder file or run folder")
    if folds is not None:
        if protocol != "fewshot":
            raise TrainError(f"--folds applies to -p fewshot, not -p {protocol}")
        if not folds.is_dir():
            raise TrainError(f"--folds {folds}: " + ("is a file, not a folder" if folds.exists() else "no such folder"))
        if root is not None:
            raise TrainError("--folds and --root: the official folds hold their own clouds (support and queries); "
                             "give one of them")
    if svm_protocol != "cv" and protocol != "svm":
        raise TrainError(f"--svm-protocol applies to -p svm, not -p {protocol}")
    if root is None and folds is None:
        raise TrainError("--root is required (the benchmark's folder; for few-shot on official folds: --folds)")
    if root is None:
        pass
    elif not root.exists():
        raise TrainError(f"--root {root}: no such folder")
    elif not root.is_dir():
        raise TrainError(f"--root {root}: is a file, not a folder" + (" (a cma-build dataset is a folder)"
                                                                        if benchmark == "cma" else ""))
    if out is not None:   # before the encoder is read and the features extracted
        check_output_file(out, "--out", example="result.json")
        for sibling in (out.with_suffix(".csv"), out.with_suffix(".md")):
            if sibling.exists() and not sibling.is_file():
                raise TrainError(f"--out {out}: {sibling}, written next to it, is a folder")
    dev = None if device == "auto" else device
    result = run_protocol(encoder, protocol, benchmark, root, variant=variant, num_points=points,
                          random_init=random_init, which=epoch, ways=ways, shots=shots, trials=trials,
                          epochs=epochs, batch_size=batch_size, seed=seed, device=dev, progress=progress, out=out,
                          svm_protocol=svm_protocol, sampling=sampling, folds=folds)
    click.echo(result["summary"])
    if out:
        click.echo(f"wrote {out}")


@cli.command()
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("out/benchmark"), show_default=True,
              help="Folder for the dataset, runs and results (reused: finished work is skipped).")
@click.option("--data", "-d", type=click.Path(path_type=Path), help="Use this cma-build dataset instead of "
              "rendering the mini-ShapeNet.")
@click.option("--methods", cls=MethodsOption, all_methods=True, show_default=True)
@click.option("--per-category", default=48, show_default=True, callback=AT_LEAST_1,
              help="Mini-ShapeNet models per category.")
@click.option("--epochs", default=60, show_default=True, callback=AT_LEAST_1, help="Pretraining epochs per method.")
@click.option("--eval-every", default=15, show_default=True, callback=AT_LEAST_1,
              help="Epochs between scored checkpoints (for the plot).")
@click.option("--batch-size", default=16, show_default=True, callback=AT_LEAST_1)
@click.option("--seed", default=0, show_default=True, callback=AT_LEAST_0)
@click.option("--random-seeds", default=5, show_default=True, callback=AT_LEAST_1, help="Random inits (seeds SEED, "
              "SEED+1, ...) whose SVM accuracy is reported as mean ± std.")
@click.option("--ways", default=5, show_default=True, callback=AT_LEAST_2, help="Few-shot: N classes per episode.")
@click.option("--shots", default=10, show_default=True, callback=AT_LEAST_1,
              help="Few-shot: K support samples per class (one view per training object; single views when fewer "
                   "than K training objects per class). Checked against the dataset before any work.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=None,
              help="Progress bars [default: only when stderr is a terminal].")
@guarded
def benchmark(out, data, methods, per_category, epochs, eval_every, batch_size, seed, random_seeds, ways, shots,
              device, progress) -> None:
    """Proof of learning: render the mini-ShapeNet, pretrain each method (CPU-sized), and compare
    linear-SVM and few-shot accuracy of each pretrained encoder with the same encoder at random init.

    \b
    Writes OUT/results.md, results.csv, results.json and accuracy.png (accuracy vs epoch).

    \b
    Example:
      pcssl-train benchmark --out out/benchmark
      pcssl-train benchmark --methods point-mae,vasp --epochs 10 --out out/bench-small
      pcssl-train benchmark --methods point-mae --ways 5 --shots 5 --out out/bench-5shot
    """
    import shlex

    from .engine.paths import check_inside, check_output_dir
    from .errors import TrainError
    from .eval.benchmark import run_benchmark
    from .methods import METHODS

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in chosen if m not in METHODS]
    if bad or not chosen:
        raise TrainError(f"unknown method {bad[0] if bad else methods!r}: expected some of {', '.join(METHODS)}")
    if data is not None:
        if not data.exists():
            raise TrainError(f"--data {data}: no such dataset folder")
        _dataset_folder(data)
        from cma_builder.format.reader import DatasetReader

        DatasetReader.open(data)   # a folder that is not a cma-build dataset: one line, before any work
    check_output_dir(out)          # before the mini-ShapeNet is rendered and the methods trained
    check_inside(out, ["mini-shapenet", "dataset", "runs", *(f"runs/{m}" for m in chosen), "results.json",
                       "results.csv", "results.md", "accuracy.png"])   # no link in OUT leads elsewhere
    command = "pcssl-train benchmark " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    run_benchmark(out, chosen, data, per_category, epochs, eval_every, batch_size, seed,
                  None if device == "auto" else device, progress, command.strip(), ways=ways, shots=shots,
                  random_seeds=random_seeds)
    click.echo(f"wrote {out / 'results.md'}, results.csv, results.json, accuracy.png")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--modelnet40", "modelnet40", required=True, type=click.Path(path_type=Path),
              help="ModelNet40 as distributed: modelnet40_normal_resampled (text files / .dat caches) or "
                   "modelnet40_ply_hdf5_2048.")
@click.option("--scanobjectnn", type=click.Path(path_type=Path), help="ScanObjectNN h5_files (every variant found).")
@click.option("--folds", type=click.Path(path_type=Path), help="ModelNetFewshot/ (the official folds) [else: seeded "
              "episodes drawn from ModelNet40].")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Folder for report.md, report.csv, "
              "report.json.")
@click.option("--epoch", default="last", show_default=True, help="For a run folder: which checkpoint.")
@click.option("--random-init/--no-random-init", default=True, show_default=True,
              help="Also score the same architecture at random init (the baseline row).")
@click.option("--seed", default=0, show_default=True, callback=AT_LEAST_0)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=None,
              help="Progress bars [default: only when stderr is a terminal].")
@guarded
def report(run, modelnet40, scanobjectnn, folds, out, epoch, random_init, seed, device, progress) -> None:
    """Score RUN the papers' way and write one table beside the published rows.

    \b
    Linear SVM on ModelNet40 under every --svm-protocol (cv, recon, point-m2ae, crosspoint), few-shot
    5w10s / 5w20s / 10w10s / 10w20s (official folds with --folds), ScanObjectNN variants with
    --scanobjectnn; our row, the random-init row and the published rows (each with its source).
    RUN: a run folder, a checkpoint, an export or an official Point-MAE checkpoint.

    \b
    Example:
      pcssl-train report runs/point-mae --modelnet40 ~/data/modelnet40_normal_resampled \\
          --folds ~/data/ModelNetFewshot --scanobjectnn ~/data/h5_files --out reports/point-mae
    """
    from .engine.paths import check_output_dir
    from .errors import TrainError
    from .eval.report import build_report

    if not run.exists():
        raise TrainError(f"{run}: no such encoder file or run folder")
    for option, path in (("--modelnet40", modelnet40), ("--scanobjectnn", scanobjectnn), ("--folds", folds)):
        if path is not None and not path.is_dir():
            raise TrainError(f"{option} {path}: " + ("is a file, not a folder" if path.exists() else "no such folder"))
    check_output_dir(out)
    rep = build_report(run, modelnet40, out, scanobjectnn=scanobjectnn, folds=folds, which=epoch,
                       random_init=random_init, seed=seed, device=None if device == "auto" else device,
                       progress=progress, log=lambda m: click.echo(m, err=True))
    click.echo((out / "report.md").read_text("utf-8"))
    click.echo(f"wrote {out / 'report.md'}, report.csv, report.json ({rep['seconds']:.0f} s)")


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


TRAIN_EXTRA = ("torch", "sklearn", "h5py", "matplotlib", "tensorboard")  # pyproject [train]


def main() -> None:
    try:
        cli(prog_name="pcssl-train")
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAIN_EXTRA:
            raise
        fail(f"pcssl-train needs the [train] extra ({e.name} is not installed): pip install 'cma-toolkit[train]'")


if __name__ == "__main__":
    main()
