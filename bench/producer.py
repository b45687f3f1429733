"""A paced simulator producer as a child process (so its CPU-bound kafka-python loop does not
share the harness's interpreter): streams.simulator.produce_paced, counts written as JSON.

    python -m bench.producer --bootstrap H:P --rate 2000 --seconds 40 --speedup 1 --out c.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from streams.simulator import produce_paced


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--rate", type=float, required=True, help="events per wall-clock second")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--speedup", type=float, default=1.0, help="city time per wall time")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    counts = produce_paced(args.seed, args.rate, args.seconds, args.speedup,
                           producer_config={"bootstrap_servers": args.bootstrap})
    args.out.write_text(json.dumps(counts))


if __name__ == "__main__":
    main()
