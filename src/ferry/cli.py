"""The ``ferry`` command: ``ferry stack up|down|status|env|password``."""

from __future__ import annotations

import argparse
import sys

from ferry.stack import Stack, StackError
from ferry.stack.environment import export_lines, stack_environment


def _stack_up(args: argparse.Namespace) -> None:
    names = list(args.services) + (["airflow"] if args.airflow else [])
    if args.airflow and not args.services:
        names = ["postgres", "s3", "sshd", "airflow"]
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


def _airbnb_generate(args: argparse.Namespace) -> None:
    import psycopg

    from ferry.airbnb.generate import generate
    from ferry.stack.environment import stack_environment

    env = stack_environment(Stack().settings)
    dsn = f"host={env['PGHOST']} port={env['PGPORT']} user={env['PGUSER']} dbname=inside_airbnb"
    with psycopg.connect(dsn, password=env["PGPASSWORD"], autocommit=True) as conn:
        print(f"listings: {generate(conn, rows=args.rows, seed=args.seed):,} rows")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferry", description="ferry: Airflow 3 and the systems around it.")
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="the local stack of stand-in services")
    actions = stack.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start what is not running and wait until it answers")
    up.add_argument("services", nargs="*", help="postgres, s3, sshd, airflow (default: all but airflow)")
    up.add_argument("--airflow", action="store_true", help="also start Airflow (api-server, scheduler, …)")
    up.set_defaults(func=_stack_up)
    down = actions.add_parser("down", help="stop services; their data is kept")
    down.add_argument("services", nargs="*")
    down.set_defaults(func=_stack_down)
    actions.add_parser("status", help="one line per service").set_defaults(func=_stack_status)
    actions.add_parser("env", help='print export lines: eval "$(ferry stack env)"').set_defaults(func=_stack_env)
    actions.add_parser("password", help="the Airflow UI's admin password").set_defaults(func=_stack_password)

    commands.add_parser("demo", help="start the stack and run every pipeline end to end").set_defaults(func=_demo)

    airbnb = commands.add_parser("airbnb", help="the Inside Airbnb data").add_subparsers(dest="action", required=True)
    gen = airbnb.add_parser("generate", help="fill the listings table with generated snapshots (idempotent)")
    gen.add_argument("--rows", type=int, default=1_000_000, help="about this many rows (default 1,000,000)")
    gen.add_argument("--seed", type=int, default=7)
    gen.set_defaults(func=_airbnb_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # a pipeline of the demo failed; the message names its log
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
