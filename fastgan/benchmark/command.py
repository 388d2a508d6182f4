"""`fastgan bench [OP ...] [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--sizes small|medium|large|LIST]
[--mode fwd|fwd_bwd|full] [--out DIR]`: every op on every available backend against eager PyTorch and torch.compile.

Prints a markdown table and writes JSON, CSV, markdown and PNG plots under DIR/<device-name>/ (DIR defaults to
bench/results in a source checkout). Exit status 1 when an implementation raised (the table says which and why).
"""
import os

from fastgan.benchmark.registry import MODES, PRESETS


def add_arguments(parser):
    parser.add_argument("ops", nargs="*", metavar="OP",
                        help="ops to run (default: every registered op, then the end-to-end steps 'end_to_end')")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="device to run on (default: cuda when a GPU is present, else cpu)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="storage dtype of the inputs (default: fp32)")
    parser.add_argument("--sizes", default="medium", metavar="small|medium|large|LIST",
                        help="a size preset, or a comma-separated list of shapes such as 64x3x32x32,256x3x64x64 "
                             "(ops whose inputs have another rank skip shapes that do not fit) (default: medium)")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="fwd: forward; fwd_bwd: forward and backward; full: with the double backward of a "
                             "gradient penalty (default: all three; end-to-end D-steps count as fwd_bwd, full "
                             "iterations as full)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="results folder; files go to DIR/<device-name>/ (default: bench/results)")


def run(args):
    from fastgan.cli import CommandError
    from fastgan.benchmark import registry, suite

    try:
        sizes = registry.parse_sizes(args.sizes)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if args.out is not None:
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as error:
            raise CommandError(f"--out {args.out}: cannot create the folder ({error.strerror})") from None
        if not os.access(args.out, os.W_OK):
            raise CommandError(f"--out {args.out}: the folder is not writable")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise CommandError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    registry.load_cases(strict=False)
    try:
        suite.resolve_ops(args.ops, registry.CASES)
    except ValueError as error:
        raise CommandError(str(error)) from None
    report = suite.run_suite(ops=args.ops or None, device=args.device, dtype=args.dtype, sizes=sizes,
                             modes=(args.mode,) if args.mode else None, out=args.out, echo=_echo)
    print()
    print(report.markdown)
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    if report.errors:
        print(f"{len(report.errors)} implementation(s) raised: see the ERR cells and their reasons above")
        return 1
    return 0


def _echo(text):
    print(text, flush=True)


__all__ = ["add_arguments", "run", "PRESETS"]
