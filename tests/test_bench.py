"""Smoke test of the benchmark suite (`fastgan bench`): every registered case runs on CPU at the smallest preset with
the quick timing profile, and the reports come out complete. Nothing here asserts a time."""
import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from fastgan import cli
from fastgan.benchmark import readme, registry, suite

ROOT = Path(__file__).resolve().parent.parent
OWN_KERNEL_OPS = ("grad_norm_penalty", "interpolate")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny cases: threads only add fork/join overhead (and stall on a busy machine)
    try:
        report = suite.run_suite(device="cpu", sizes="small", out=out, quick=True, echo=None, deadline=150)
    finally:
        torch.set_num_threads(threads)
    return report, out


def test_output_files_exist(smoke):
    report, out = smoke
    for kind in ("json", "csv", "md", "time_png", "speedup_png"):
        path = Path(report.files[kind])
        assert path.is_file() and path.stat().st_size > 0, kind
        assert path.parent.parent == out and path.parent.name.startswith("cpu-")
    data = json.loads(Path(report.files["json"]).read_text())
    assert data["schema"] == suite.SCHEMA
    for key in ("commit", "date", "fastgan", "torch", "triton", "cuda", "device_name"):
        assert key in data["meta"]
    assert data["ceilings"]["copy_gbps"] > 0 and data["ceilings"]["matmul_gflops"] > 0
    with open(report.files["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report.results) and rows[0]["commit"] == data["meta"]["commit"]
    assert Path(report.files["time_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_op_and_backend_appears(smoke):
    report, _ = smoke
    seen_ops = {r["op"] for r in report.results}
    assert set(registry.CASES) | set(registry.LOAD_ERRORS) <= seen_ops
    assert suite.E2E_OP in seen_ops
    for op in OWN_KERNEL_OPS:
        rows = [r for r in report.results if r["op"] == op]
        assert {r["mode"] for r in rows} == set(registry.MODES)
        groups = {}
        for row in rows:
            groups.setdefault((row["label"], row["mode"]), {})[row["impl"]] = row
        assert len(groups) >= 2 * len(registry.MODES)  # two sizes at least: time vs size
        for by_impl in groups.values():
            assert set(registry.IMPLEMENTATIONS) <= set(by_impl)
            for impl, row in by_impl.items():
                assert row["status"] in ("ok", "skipped"), row  # my ops never error
                assert row["status"] == "ok" or row["reason"]
            assert by_impl["eager"]["status"] == by_impl["cpp"]["status"] == "ok"
            assert by_impl["cpp"]["speedup_vs_baseline"] > 0 and by_impl["cpp"]["gbps"] > 0
            assert by_impl["cuda"]["status"] == "skipped" and "CUDA" in by_impl["cuda"]["reason"]
            # the tests run Triton under its interpreter on CPU: never timed, and said so
            assert by_impl["triton"]["status"] == "skipped"
            assert by_impl["triton"]["reason"].startswith("interpreter: not timed")
            assert by_impl["compile"]["status"] == "skipped" and by_impl["compile"]["reason"]


def test_end_to_end_recipes_appear(smoke):
    report, _ = smoke
    from fastgan.benchmark.cases.end_to_end import MODELS, RECIPES
    rows = [r for r in report.results if r["op"] == suite.E2E_OP]
    labels = {r["label"] for r in rows}
    for name in RECIPES:
        assert any(label.startswith(f"{name} ") for label in labels), name
    assert len(labels) == len(RECIPES) * len(MODELS["small"])
    for row in rows:
        assert row["impl"] in ("plain", "fastgan")
        if row["impl"] == "plain":
            assert row["status"] == "ok", row
            assert row["samples_per_s"] > 0
        else:
            assert row["status"] == "ok" or row["reason"], row
    gp = [r for r in rows if r["label"].startswith("wgan-gp ") and r["impl"] == "fastgan"]
    assert gp and all(r["status"] == "ok" for r in gp)  # fastgan.gradient_penalty exists


def test_markdown_tables_and_reasons(smoke):
    report, _ = smoke
    text = Path(report.files["md"]).read_text()
    assert "| op | size | mode | eager ms | compile ms | cpp ms | cuda ms | triton ms |" in text
    assert "interpreter: not timed" in text and "torch.compile not run in quick" in text
    assert "### End to end" in text


def test_readme_section(smoke, tmp_path):
    report, out = smoke
    snippet = readme.write_section(out, tmp_path / "README_SECTION.md", include_quick=True)
    text = snippet.read_text()
    assert text.startswith(readme.BEGIN) and text.rstrip().endswith(readme.END)
    assert "### CPU:" in text and "grad_norm_penalty" in text and "No GPU results yet" in text
    assert report.meta["torch"] in text and report.meta["commit"] in text
    assert (Path(report.files["json"]).parent / "speedups.png").is_file()
    # quick (smoke) runs are not README material by default
    assert "### CPU:" not in readme.section_markdown(out, out)


def test_readme_header_names_the_main_run_and_later_partial_runs(smoke, tmp_path):
    """A later run of one op replaces that op's rows; the header keeps the broad run's commit and ceilings and a note
    names the later run."""
    import json
    import shutil

    report, _ = smoke
    folder = tmp_path / "results" / "cpu-test"
    folder.mkdir(parents=True)
    shutil.copy(report.files["json"], folder / "a.json")
    data = json.loads(Path(report.files["json"]).read_text())
    op = data["results"][0]["op"]
    data["results"] = [r for r in data["results"] if r["op"] == op]
    data["meta"]["commit"], data["meta"]["date"] = "later0commit", "2999-01-01T00:00:00+00:00"
    (folder / "b.json").write_text(json.dumps(data))
    text = readme.section_markdown(tmp_path / "results", tmp_path, include_quick=True)
    assert f"at commit `{report.meta['commit']}`" in text
    assert f"Note: {op} from a later run (2999-01-01T00:00, commit `later0commit`)" in text


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    page = tmp_path / "README.md"
    page.write_text("# title\n\nintro\n")
    first = f"{readme.BEGIN}\nold table\n{readme.END}\n"
    readme.update_readme(page, first)  # no markers yet: appended
    assert page.read_text() == "# title\n\nintro\n\n" + first
    page.write_text(page.read_text() + "\n## Building\n")
    readme.update_readme(page, f"{readme.BEGIN}\nnew table\n{readme.END}\n")
    text = page.read_text()
    assert "old table" not in text and "new table" in text
    assert text.startswith("# title\n\nintro\n") and text.endswith(f"{readme.END}\n\n## Building\n")
    page.write_text(f"intro\n{readme.BEGIN}\nno end marker\n")
    with pytest.raises(ValueError, match="end marker"):
        readme.update_readme(page, first)


def test_sizes_parsing():
    assert registry.parse_sizes("small") == "small"
    sizes = registry.parse_sizes("64x3x32x32, 8x4")
    assert tuple(sizes) == ((64, 3, 32, 32), (8, 4)) and sizes.spec
    assert registry.sizes(sizes, {"small": [(1, 2, 3, 4)]}) == [(64, 3, 32, 32)]
    for bad in ("huge", "64x3xx2", "0x3", ","):
        with pytest.raises(ValueError, match="sizes"):
            registry.parse_sizes(bad)


def test_explicit_sizes_reach_the_cases(tmp_path):
    report = suite.run_suite(ops=["grad_norm_penalty"], device="cpu", sizes="6x5x4x3", modes=("fwd",),
                             quick=True, echo=None, write=False)
    labels = {r["label"] for r in report.results}
    assert labels == {"6x5x4x3"}


@pytest.mark.parametrize("argv, message", [
    (["bench", "no_such_op", "--device", "cpu"], "unknown op"),
    (["bench", "--sizes", "enormous", "--device", "cpu"], "sizes"),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_cli_cuda_without_gpu(capsys):
    assert cli.main(["bench", "interpolate", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_cli_options_match_the_issue():
    parser = cli.build_parser()
    bench = parser._subparsers._group_actions[0].choices["bench"]
    options = {opt for action in bench._actions for opt in action.option_strings}
    assert options == {"-h", "--help", "--device", "--dtype", "--sizes", "--mode", "--out"}


def test_plain_pytest_does_not_collect_bench():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert (ROOT / "bench" / "conftest.py").is_file() and (ROOT / "bench" / "test_benchmarks.py").is_file()
