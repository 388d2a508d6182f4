"""Bad `fastgan train / sample / eval` command lines exit with status 2 and one line on stderr, no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

from fastgan.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--batch-size", "16", "--width", "8", "--quiet", "--eval-samples", "100", "--sample-every", "1000"]


def _fails(capsys, argv, match):
    """main(argv) returns 2 with exactly one line on stderr (containing `match`) and nothing on stdout."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (code, captured.err)
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"fastgan {argv[0]}: error: "), lines[0]
    assert match in lines[0], lines[0]
    assert "Traceback" not in captured.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "wgan-gp", "--data", "ring8", "--steps", "1", "--out", str(out), *TINY]) == 0
    return out


def test_unknown_recipe(capsys, tmp_path):
    _fails(capsys, ["train", "gan-of-my-dreams", "--data", "ring8", "--out", str(tmp_path / "r")], "unknown recipe")


def test_missing_recipe_and_data(capsys, tmp_path):
    _fails(capsys, ["train", "--data", "ring8", "--out", str(tmp_path / "r")], "recipe is required")
    _fails(capsys, ["train", "wgan-gp", "--out", str(tmp_path / "r")], "--data is required")


def test_unknown_data(capsys, tmp_path):
    _fails(capsys, ["train", "wgan-gp", "--data", "ring9", "--out", str(tmp_path / "r")], "unknown dataset")
    _fails(capsys, ["train", "wgan-gp", "--data", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "r")],
           "does not exist")


def test_negative_or_bad_numbers(capsys, tmp_path):
    out = str(tmp_path / "r")
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--steps", "-5", "--out", out], "--steps")
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--batch-size", "0", "--out", out], "--batch-size")
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--lr", "-1", "--out", out], "--lr")
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--reg-every", "0", "--out", out], "--reg-every")
    _fails(capsys, ["train", "dcgan", "--data", "digits", "--image-size", "12", "--out", out], "--image-size")
    _fails(capsys, ["train", "dcgan", "--data", "digits", "--depth", "5", "--out", out], "--depth")
    assert not Path(out).exists()  # nothing written for a refused command line


def test_hyperparameter_the_recipe_does_not_take(capsys, tmp_path):
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--clip", "0.01", "--out", str(tmp_path / "r")],
           "does not take --clip")
    _fails(capsys, ["train", "dcgan", "--data", "ring8", "--gp-method", "jvp", "--out", str(tmp_path / "r")],
           "no gradient penalty")


def test_unwritable_out_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    # (the tests may run as root, for whom permission bits do not stop writes: use a file in the path instead)
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--out", str(blocker / "run"), *TINY],
           "cannot write the run folder")
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--out", str(blocker), *TINY], "not a folder")


def test_write_error_during_training(capsys, tmp_path, monkeypatch):
    """A full disk (or a deleted run folder) mid-run: one line naming the file and how to continue."""
    import errno

    from fastgan.train.trainer import Trainer

    def disk_full(self, step):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "samples.png"))

    monkeypatch.setattr(Trainer, "_pictures", disk_full)
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--steps", "2", "--out", str(tmp_path / "run"), *TINY],
           "No space left on device")


def test_out_dir_that_already_holds_a_run(capsys, run_dir):
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--out", str(run_dir), *TINY], "already holds a run")


def test_resume_errors(capsys, tmp_path, run_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(capsys, ["train", "--resume", str(empty)], "holds no checkpoint")
    _fails(capsys, ["train", "--resume", str(tmp_path / "nowhere")], "does not exist")
    _fails(capsys, ["train", "--resume", str(run_dir), "--lr", "0.5"], "a resumed run keeps its configuration")
    _fails(capsys, ["train", "dcgan", "--resume", str(run_dir)], "the run trains wgan-gp")


def test_corrupt_checkpoint(capsys, tmp_path, run_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    data = (broken / "checkpoint.pt").read_bytes()
    (broken / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    _fails(capsys, ["train", "--resume", str(broken)], "corrupt")
    _fails(capsys, ["sample", str(broken), "-n", "5"], "corrupt")
    _fails(capsys, ["eval", str(broken)], "corrupt")
    (broken / "checkpoint.pt").write_bytes(b"definitely not a checkpoint")
    _fails(capsys, ["eval", str(broken)], "corrupt")


def test_sample_and_eval_bad_arguments(capsys, tmp_path, run_dir):
    _fails(capsys, ["sample", str(run_dir), "-n", "0"], "-n")
    _fails(capsys, ["sample", str(tmp_path / "nowhere")], "does not exist")
    _fails(capsys, ["eval", str(tmp_path)], "holds no checkpoint")


def test_cuda_without_a_gpu(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _fails(capsys, ["train", "wgan-gp", "--data", "ring8", "--device", "cuda", "--out", str(tmp_path / "r")],
           "no CUDA device")


def test_real_process_exit_code_and_stderr(tmp_path):
    """The same through the `fastgan` entry point: exit status 2, one stderr line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "fastgan", "train", "wgan-gp", "--data", "ring8", "--steps", "-1",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastgan train: error: --steps"), proc.stderr
