"""The `fastgan` command line: info, train, sample, eval, bench.

Each subcommand lives with its subsystem as a module exposing `add_arguments(parser)` and `run(args) -> int`;
this file only wires them up, so `fastgan <cmd> --help` documents each one where it is implemented.
"""
import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS = {
    "info": ("fastgan.info", "versions, how the extension was built, and which backends run on which device"),
    "train": ("fastgan.train.command", "train a GAN recipe on built-in data or your own"),
    "sample": ("fastgan.train.sample_command", "write samples from a trained run"),
    "eval": ("fastgan.train.eval_command", "print the metrics of a run's latest checkpoint"),
    "bench": ("fastgan.benchmark.command", "benchmark fastgan's ops against eager PyTorch and torch.compile"),
}


class CommandError(Exception):
    """A user error a command reports in one line (exit code 2), without a traceback."""


def build_parser():
    parser = argparse.ArgumentParser(prog="fastgan", description="Fused kernels for faster GAN training.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # a subsystem that is not part of this installation
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except CommandError as error:
        print(f"fastgan {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastgan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
