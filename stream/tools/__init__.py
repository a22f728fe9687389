"""Operator tools on top of the pipeline: ``vigil tail``, ``vigil replay``, ``vigil report``."""

from __future__ import annotations

from typing import Any


def add_tool_parsers(subparsers: Any) -> None:
    """Add the ``tail``, ``replay`` and ``report`` commands to ``vigil``'s subparsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers`` returned.
    """
    from stream.tools import replay, report, tail

    tail.add_parser(subparsers)
    replay.add_parser(subparsers)
    report.add_parser(subparsers)


__all__ = ["add_tool_parsers"]
