"""The ``servesim`` command line: run, validate and list.

Every user error is a ``ServesimError``: it is printed as one line on stderr
and the exit code is 2; a traceback appears only with ``--debug``. argparse's
own usage errors also exit with 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator import __version__
from simulator.config import load_experiment
from simulator.errors import ServesimError, located
from simulator.hardware import DEFAULT_CATALOG
from simulator.registry import ALL_REGISTRIES, allow_imports


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    allow_imports(getattr(args, "allow_import", False))
    try:
        return args.handler(args)
    except ServesimError as err:
        if args.debug:
            raise
        print(f"servesim: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a path given on the command line cannot be written or read
        if args.debug:
            raise
        print(f"servesim: error: {ServesimError(located(err.filename, '', err.strerror or str(err)))}",
              file=sys.stderr)
        return ServesimError.exit_code
    except KeyboardInterrupt:
        print("servesim: interrupted", file=sys.stderr)
        return 130


class _OneLineParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line (as every bad input is), not usage text plus error.

    Sub-command parsers inherit the class, so ``servesim run --bogus`` answers in one line too.
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="servesim", description="Simulate LLM serving clusters.")
    parser.add_argument("--version", action="version", version=f"servesim {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.set_defaults(debug=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run one experiment and write its results")
    run.add_argument("experiment", type=Path, help="experiment YAML file")
    run.add_argument("-o", "--output", type=Path, help="output folder (default: runs/<name>)")
    _add_set(run)
    run.add_argument("--no-report", action="store_true", help="skip report.md and figures")
    run.set_defaults(handler=_run)

    validate = commands.add_parser("validate", help="check an experiment file without running it")
    validate.add_argument("experiment", type=Path)
    _add_set(validate)
    validate.set_defaults(handler=_validate)

    listing = commands.add_parser("list", help="list catalog entries or registered policies")
    listing.add_argument("what", choices=["gpus", "cpus", "links", "nodes", "models", "policies", "traces"])
    listing.set_defaults(handler=_list)
    extra = [module.register(commands) for module in _command_modules()]
    for sub in (run, validate, listing, *extra):
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks for errors")
    for sub in (run, validate, commands.choices["sweep"]):
        sub.add_argument("--allow-import", action="store_true",
                         help="let the config name policies and trace readers by import path (module:Class)")
    return parser


def _command_modules():
    """Further subcommands, one module each; each ``register(commands)`` returns its parser."""
    import importlib

    return [importlib.import_module(name) for name in COMMAND_MODULES]


# Each module adds one subcommand (keeps this file from growing with every feature).
COMMAND_MODULES: tuple[str, ...] = ("simulator.cli_sweep", "simulator.cli_report", "simulator.cli_regress",
                                     "simulator.cli_trace", "simulator.cli_calibrate", "simulator.cli_fidelity")


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set workload.num_requests=100 (repeatable)")


def _run(args: argparse.Namespace) -> int:
    from simulator.runner import check_output_dir, run_experiment, write_outputs

    experiment = load_experiment(args.experiment, args.overrides)
    out_dir = args.output or Path("runs") / experiment.config.name
    check_output_dir(out_dir)  # before running, not after
    result = run_experiment(experiment)
    write_outputs(result, out_dir, with_report=not args.no_report)
    s = result.summary
    req = s["requests"]
    print(f"{experiment.config.name}: {req['completed']} completed, {req['rejected']} rejected, "
          f"{req['unfinished']} unfinished of {req['arrived']} in {s['sim']['simulated_s']:.1f} simulated s "
          f"({s['sim']['wall_s']:.2f} s wall)")
    ttft, tpot = s["ttft_s"], s["tpot_s"]
    if ttft["p50"] is not None:
        print(f"TTFT p50 {ttft['p50'] * 1e3:.1f} ms p99 {ttft['p99'] * 1e3:.1f} ms; "
              f"TPOT p50 {_ms(tpot['p50'])} p99 {_ms(tpot['p99'])}")
    print(f"results in {out_dir}")
    return 0


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1e3:.1f} ms"


def _validate(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.experiment, args.overrides)
    print(f"{args.experiment}: valid ({experiment.config.name}, model {experiment.model.name}, "
          f"{sum(g.group.count for g in experiment.groups)} instances)")
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.what == "traces":
        from workloads import TRACE_READERS

        for name in TRACE_READERS.names():
            print(f"{name}: {TRACE_READERS.get(name).description}")
        return 0
    if args.what == "policies":
        for kind, registry in ALL_REGISTRIES.items():
            print(f"{kind}: {', '.join(registry.names()) or '-'}")
        return 0
    for name in DEFAULT_CATALOG.names(args.what[:-1]):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
