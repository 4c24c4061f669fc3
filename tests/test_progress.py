"""pcssl-train progress bars follow cma-build's rule: shown only when stderr is a terminal, or with
--progress; --no-progress hides them. A piped log still gets one line per epoch."""

from __future__ import annotations

import subprocess

import pytest

from conftest import BIN
from pcssl_train.engine.progress import epoch_line, progress_bar, tqdm_disable


def pretrain(data, run, *extra):
    cmd = [str(BIN / "pcssl-train"), "pretrain", "-c", "point-mae-tiny", "-d", str(data), "-o", str(run),
           "--set", "optim.epochs=1", "--set", "train.tensorboard=false", *extra]
    # stdout/stderr are pipes, not terminals; read as bytes: text=True would turn each '\r' into '\n'
    proc = subprocess.run(cmd, capture_output=True, timeout=600)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, proc.stderr
    return proc


def test_piped_pretrain_has_no_bar_but_an_epoch_line(rendered, tmp_path):
    proc = pretrain(rendered, tmp_path / "auto")
    assert "\r" not in proc.stdout and "\r" not in proc.stderr, repr(proc.stderr)
    assert "it/s" not in proc.stderr and "s/it" not in proc.stderr
    assert "epoch 1/1: loss" in proc.stderr                     # the per-epoch line still reaches the log
    assert "point-mae: 1 epochs" in proc.stdout


def test_progress_flag_forces_the_bar(rendered, tmp_path):
    proc = pretrain(rendered, tmp_path / "forced", "--progress")
    assert "\r" in proc.stderr and "epoch 1/1" in proc.stderr, repr(proc.stderr)
    assert "\r" not in proc.stdout


def test_no_progress_hides_the_bar(rendered, tmp_path):
    proc = pretrain(rendered, tmp_path / "off", "--no-progress")
    assert "\r" not in proc.stderr and "epoch 1/1: loss" in proc.stderr


@pytest.mark.parametrize("progress, main, expected", [
    (None, True, None), (True, True, False), (False, True, True),
    (None, False, True), (True, False, True), (False, False, True),   # other DDP ranks: always hidden
])
def test_tqdm_disable(progress, main, expected):
    assert tqdm_disable(progress, main) is expected


def test_hidden_bar_prints_plain_lines(capsys):
    bar = progress_bar(range(2), progress=None, desc="x")          # captured stderr is not a terminal
    for i in bar:
        epoch_line(bar, f"epoch {i + 1}/2")
    bar.close()
    err = capsys.readouterr().err
    assert err == "epoch 1/2\nepoch 2/2\n"
    bar = progress_bar(range(2), progress=True, desc="x")
    for i in bar:
        epoch_line(bar, "never")
    bar.close()
    err = capsys.readouterr().err
    assert "\r" in err and "never" not in err
