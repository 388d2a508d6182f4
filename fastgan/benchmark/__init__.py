"""fastgan's kernel benchmark suite: every op on every available backend against eager PyTorch and torch.compile.

Ops declare their cases in fastgan/benchmark/cases/<op>.py with the @case decorator (see registry.py); the
harness times them (timing.py) and writes reports. Command line: ``fastgan bench``.
"""
