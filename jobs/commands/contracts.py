"""`cityflow contracts docs|check|publish`: regenerate docs/contracts.md from the contract
declarations, check the declarations against their published versions (schema evolution rules),
and freeze a new version."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.registry import CONTRACTS
from jobs.commands import help_when_bare


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("contracts", help="data contracts: generate docs, check evolution, publish versions")
    actions = p.add_subparsers(dest="contracts_action", metavar="ACTION")

    docs = actions.add_parser("docs", help="regenerate docs/contracts.md from contracts/")
    docs.add_argument("--check", action="store_true", help="exit 1 if the file is stale instead of writing it")
    docs.add_argument("--output", type=Path, default=None, help="write here instead of docs/contracts.md")
    docs.set_defaults(func=run_docs)

    check = actions.add_parser("check", help="check every declaration against its published versions")
    check.set_defaults(func=run_check)

    publish = actions.add_parser("publish", help="freeze declared versions not yet published")
    publish.add_argument("sources", nargs="*", help="sources to publish (default: all)")
    publish.set_defaults(func=run_publish)

    help_when_bare(p)


def run_docs(args: argparse.Namespace) -> int:
    from contracts.docs import DOCS_PATH, render_contract_docs, write_contract_docs

    path = args.output or DOCS_PATH
    if args.check:
        if not path.exists() or path.read_text() != render_contract_docs():
            print(f"{path} is stale: run `cityflow contracts docs`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    changed = write_contract_docs(path)
    print(f"{'wrote' if changed else 'unchanged:'} {path}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from contracts.versions import check_against_published

    failed = False
    for source, contract in CONTRACTS.items():
        problems = check_against_published(contract)
        if problems:
            failed = True
            print(f"{source} v{contract.version}: INCOMPATIBLE")
            for p in problems:
                print(f"  - {p}")
        else:
            print(f"{source} v{contract.version}: ok")
    return 1 if failed else 0


def run_publish(args: argparse.Namespace) -> int:
    from contracts.versions import IncompatibleContractChange, publish

    unknown = [s for s in args.sources if s not in CONTRACTS]
    if unknown:
        print(f"error: unknown sources {unknown}; known: {list(CONTRACTS)}", file=sys.stderr)
        return 2
    status = 0
    for source in args.sources or list(CONTRACTS):
        contract = CONTRACTS[source]
        try:
            path = publish(contract)
        except IncompatibleContractChange as exc:
            print(f"{source} v{contract.version}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{source} v{contract.version}: " + (f"published {path}" if path else "already published"))
    return status
