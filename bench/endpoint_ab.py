"""``python -m bench.endpoint_ab OLD_CHECKOUT``: the endpoint server now against an older checkout's.

What a serving change costs, with the machine's noise cancelled as ``bench.ab`` cancels it: the
stack's endpoint server is restarted with this checkout's ``src/`` and with the other's, in
ABBA order, ``--rounds`` times, and each time serves the same endpoints (the ``bench-<model>``
ones that ``python -m bench digits`` deploys: run that once first) to 16 SigV4-signing clients,
5,000 requests of one RecordIO image. Medians of requests/s and p99 per side.

    git worktree add /tmp/ferry-before <commit>
    .venv/bin/python -m bench.endpoint_ab /tmp/ferry-before --rounds 4 --models sklearn,knn
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
from pathlib import Path

import boto3

from bench.digits import CONCURRENCY, REQUESTS
from bench.load import run_load
from ferry.stack import Stack
from ferry.stack.environment import stack_environment

HERE = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    from ferry.digits.sample_data import mnist_splits
    from ferry.sagemaker.recordio import write_numpy_to_dense_tensor

    parser = argparse.ArgumentParser(prog="python -m bench.endpoint_ab", description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the other checkout (a git worktree)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--models", default="sklearn,knn", help="comma-separated: kmeans, knn, sklearn")
    args = parser.parse_args(argv)
    stack = Stack()
    os.environ.update(stack_environment(stack.settings))
    service, url = stack.service("endpoint"), stack.settings.url("endpoint")
    _, _, (test_x, _) = mnist_splits()
    record = io.BytesIO()
    write_numpy_to_dense_tensor(record, test_x[:1])
    signer = boto3.Session().get_credentials()
    sides = [("before", args.old.resolve() / "src"), ("after", HERE / "src")]
    models = args.models.split(",")
    results: dict[tuple[str, str], list[dict]] = {(side, model): [] for side, _ in sides for model in models}
    try:
        for round_ in range(args.rounds):
            for side, source in sides if round_ % 2 == 0 else sides[::-1]:
                os.environ["PYTHONPATH"] = str(source)
                service.stop()
                service.start()
                for model in models:
                    path = f"/endpoints/bench-{model}/invocations"
                    run_load(url, path, record.getvalue(), "application/x-recordio-protobuf", requests=300,
                             concurrency=CONCURRENCY, credentials=signer)  # warm up
                    result = run_load(url, path, record.getvalue(), "application/x-recordio-protobuf",
                                      requests=REQUESTS, concurrency=CONCURRENCY, credentials=signer).summary()
                    results[(side, model)].append(result)
                    print(f"round {round_}: {side:6} {model:7} {result['rps']:6.0f} req/s  p99 "
                          f"{result['p99_ms']:.1f} ms  errors {result['errors']}", flush=True)
    finally:
        os.environ.pop("PYTHONPATH", None)
        service.stop()
        service.start()
    print("| endpoint | before req/s | after req/s | before p99 | after p99 |\n| --- | --- | --- | --- | --- |")
    for model in models:
        before, after = results[("before", model)], results[("after", model)]
        print(f"| {model} | {statistics.median(r['rps'] for r in before):.0f} | "
              f"{statistics.median(r['rps'] for r in after):.0f} | "
              f"{statistics.median(r['p99_ms'] for r in before):.1f} ms | "
              f"{statistics.median(r['p99_ms'] for r in after):.1f} ms |")


if __name__ == "__main__":
    main()
