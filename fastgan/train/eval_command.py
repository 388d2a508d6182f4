"""`fastgan eval RUN_DIR`: the metrics of a run's latest checkpoint.

ring8 / grid25: modes covered and the fraction of high-quality samples (within 3 sigma of a mode centre) on
10,000 samples; digits: classes covered, KL divergence of the class histogram from uniform and the Frechet
distance in a digits classifier's feature space. Other data have no reference metric.
"""

from __future__ import annotations

import json

from ..cli import CommandError


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by fastgan train")
    parser.add_argument("-n", type=int, default=None, metavar="N", help="samples to evaluate (default: the run's, "
                        "10000)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the latents (default: the run's "
                        "evaluation seed, so the numbers match metrics.jsonl)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..data import load_dataset
    from .command import format_metrics
    from .sample_command import load_generator
    from .trainer import evaluate

    if args.n is not None and args.n < 2:
        raise CommandError(f"-n must be at least 2, got {args.n}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise CommandError(f"--seed must be an integer in [0, 2**63), got {args.seed}")
    config, G, step, device = load_generator(args.run_dir, args.device)
    try:
        dataset = load_dataset(config["data"], image_size=config.get("image_size"), seed=config["seed"])
    except (ValueError, OSError) as e:
        raise CommandError(f"cannot load the run's data {config['data']!r}: {e}") from None
    metrics = evaluate(G, config, dataset, device, n=args.n, seed=args.seed)
    if args.json:
        print(json.dumps({"step": step, "recipe": config["recipe"], "data": config["data"], **metrics}))
    elif metrics:
        print(f"{config['recipe']} on {config['data']}, step {step}: {format_metrics(metrics)}")
    else:
        print(f"{config['recipe']} on {config['data']}, step {step}: no reference metric for this data "
              "(ring8, grid25 and digits have one)")
    return 0
