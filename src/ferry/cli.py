"""The ``ferry`` command: ``ferry stack up|down|status|env|password``, ``demo``, ``run``, ``airbnb``, ``digits``."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from ferry.stack import Stack, StackError
from ferry.stack.environment import export_lines, stack_environment


def _stack_up(args: argparse.Namespace) -> None:
    from ferry.stack.stack import CORE_SERVICES, SPARK_SERVICES

    names = list(args.services)
    if (args.airflow or args.spark or args.docker) and not names:
        names = [cls.name for cls in CORE_SERVICES]
    names += (["docker"] if args.docker else []) + (["airflow"] if args.airflow else []) + (
        list(SPARK_SERVICES) if args.spark else [])
    Stack().up(names or None)


def _stack_down(args: argparse.Namespace) -> None:
    Stack().down(args.services or None)


def _stack_status(args: argparse.Namespace) -> None:
    for line in Stack().status():
        print(line)


def _stack_env(args: argparse.Namespace) -> None:
    sys.stdout.write(export_lines(stack_environment(Stack().settings)))


def _stack_password(args: argparse.Namespace) -> None:
    print(Stack().settings.credentials.airflow_admin_password)


def _demo(args: argparse.Namespace) -> None:
    from ferry import demo

    demo.main()


def _run(args: argparse.Namespace) -> None:
    from ferry.dag_runs import run_dag

    settings = Stack().settings
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    log_file = settings.logs / "runs" / f"{args.dag_id}-{stamp}.log"
    extra = ([args.logical_date] if args.logical_date else []) + (["--conf", args.conf] if args.conf else [])
    print(f"Running {args.dag_id} (airflow dags test); its output goes to {log_file}", flush=True)
    outcome = run_dag(args.dag_id, extra, log_file, {**os.environ, **stack_environment(settings)})
    print(outcome.summary())
    if not outcome.succeeded:
        raise SystemExit(1)


def _logical_date(text: str) -> str:
    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or ISO 8601 date-time: {text!r}") from None
    return text


def _json_object(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return text


def _airbnb_generate(args: argparse.Namespace) -> None:
    from ferry.airbnb.generate import generate, listings_for_rows
    from ferry.airbnb.reviews import generate_reviews

    with _inside_airbnb() as conn:
        print(f"listings: {generate(conn, rows=args.rows, seed=args.seed):,} rows (PostgreSQL)")
    if args.reviews:
        with Stack().service("mongo").client() as client:
            count = generate_reviews(client["inside_airbnb"], count=args.reviews,
                                     listings=listings_for_rows(args.rows), seed=args.seed)
        print(f"reviews: {count:,} documents (MongoDB)")


def _airbnb_load(args: argparse.Namespace) -> None:
    import datetime

    from ferry.airbnb.generate import load, snapshot_date_of

    with _inside_airbnb() as conn:
        for path in args.files:
            day = datetime.date.fromisoformat(args.date) if args.date else snapshot_date_of(path)
            print(f"{path}: {load(conn, path, day):,} listings as the snapshot of {day}")


def _digits_samples(args: argparse.Namespace) -> None:
    from ferry.digits.sample_data import write_sample_pictures

    for path, label in write_sample_pictures(Stack().settings.data("digits-samples"), args.count):
        print(f"{path}  (a {label})")


def _inside_airbnb():
    import psycopg

    from ferry.stack.environment import stack_environment

    env = stack_environment(Stack().settings)
    dsn = f"host={env['PGHOST']} port={env['PGPORT']} user={env['PGUSER']} dbname=inside_airbnb"
    return psycopg.connect(dsn, password=env["PGPASSWORD"], autocommit=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferry", description="ferry: Airflow 3 and the systems around it.")
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="the local stack of stand-in services")
    actions = stack.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start what is not running and wait until it answers")
    up.add_argument("services", nargs="*",
                    help="postgres, s3, mongo, sagemaker, sshd, endpoint, api, airflow, spark, spark-worker, docker "
                         "(default: the first 7)")
    up.add_argument("--airflow", action="store_true", help="also start Airflow (api-server, scheduler, …)")
    up.add_argument("--spark", action="store_true", help="also start a Spark standalone master and worker")
    up.add_argument("--docker", action="store_true",
                    help="also start a Docker engine (or use the one that answers) and build the images")
    up.set_defaults(func=_stack_up)
    down = actions.add_parser("down", help="stop services; their data is kept")
    down.add_argument("services", nargs="*")
    down.set_defaults(func=_stack_down)
    actions.add_parser("status", help="one line per service").set_defaults(func=_stack_status)
    actions.add_parser("env", help='print export lines: eval "$(ferry stack env)"').set_defaults(func=_stack_env)
    actions.add_parser("password", help="the Airflow UI's admin password").set_defaults(func=_stack_password)

    commands.add_parser("demo", help="start the stack and run every pipeline end to end").set_defaults(func=_demo)

    run = commands.add_parser(
        "run", help="run one DAG with `airflow dags test` on the stack; print one line with the outcome",
        description="Run one DAG with `airflow dags test` and the stack's environment (no need to eval "
                    "`ferry stack env` first). Its whole output goes to $FERRY_HOME/logs/runs/; what is "
                    "printed is one line: the run's state, its tasks' states, the failed tasks, the log. "
                    "Exits 1 if the run did not succeed. The services the DAG needs must be up.")
    run.add_argument("dag_id", help="e.g. transfers_example, inside_airbnb_spark, digits_classifier")
    run.add_argument("logical_date", nargs="?", type=_logical_date,
                     help="the run's logical date, YYYY-MM-DD or ISO 8601 (default: now)")
    run.add_argument("--conf", type=_json_object, help="""the run's conf, a JSON object: '{"model": "knn"}'""")
    run.set_defaults(func=_run)

    airbnb = commands.add_parser("airbnb", help="the Inside Airbnb data").add_subparsers(dest="action", required=True)
    gen = airbnb.add_parser("generate", help="fill the listings table (PostgreSQL) and the reviews collection "
                                             "(MongoDB) with generated data (idempotent)")
    gen.add_argument("--rows", type=int, default=1_000_000, help="about this many listings rows (default 1,000,000)")
    gen.add_argument("--reviews", type=int, default=1_000_000, help="this many reviews (default 1,000,000; 0: none)")
    gen.add_argument("--seed", type=int, default=7)
    gen.set_defaults(func=_airbnb_generate)
    load = airbnb.add_parser("load", help="load real Inside Airbnb listings.csv files (replaces their dates)")
    load.add_argument("files", nargs="+", help="listings.csv files; the date is read from each name")
    load.add_argument("--date", help="snapshot date (YYYY-MM-DD) for files whose name holds none")
    load.set_defaults(func=_airbnb_load)

    digits = commands.add_parser("digits", help="the digits classifier").add_subparsers(dest="action", required=True)
    samples = digits.add_parser("samples", help="write held-out MNIST test digits as JPEG pictures to send to the API "
                                                "($FERRY_HOME/data/digits-samples/digit-<n>-is-<label>.jpeg)")
    samples.add_argument("--count", type=int, default=6, help="how many (default 6)")
    samples.set_defaults(func=_digits_samples)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError, FileNotFoundError) as exc:  # a failed pipeline, a bad file
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
