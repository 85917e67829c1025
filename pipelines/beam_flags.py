"""Flags clipdedup does not know itself, checked against Beam's before they are passed on.

Beam's `PipelineOptions` logs "Discarding unparseable args" for a flag that
no options class defines and carries on, so a misspelt
`--duplicate-treshold 0.95` would run with the default threshold, and the
second file of a shell-expanded `--input dir/*.tar` would vanish. Here the
leftover flags are parsed by every `PipelineOptions` subclass's own parser,
the way `PipelineOptions.get_all_options` builds it, and whatever is left
after that is an error that names it.
"""

from __future__ import annotations

import difflib

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser


class UnknownFlagError(ValueError):
    """A flag neither clipdedup nor Beam defines, or a stray argument."""


class _RaisingParser(_BeamArgumentParser):
    """Beam's parser (it knows `add_value_provider_argument`) that raises instead of exiting."""

    def error(self, message: str):
        raise UnknownFlagError(f"Beam flag: {message}")


def beam_parser() -> _BeamArgumentParser:
    """One parser holding every option of every `PipelineOptions` subclass imported so far."""
    parser = _RaisingParser(allow_abbrev=False, add_help=False)
    subclasses = {}
    for cls in PipelineOptions.__subclasses__():  # as Beam does: the last of a name twice wins
        subclasses.setdefault(str(cls), cls)
    for cls in subclasses.values():
        cls._add_argparse_args(parser)
    return parser


def option_strings(parser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings]


def check(beam_args: list[str], own_flags: list[str], beam: bool = True) -> None:
    """Raises UnknownFlagError unless Beam's parsers accept every one of `beam_args`.

    Args:
        beam_args: what clipdedup's parser left over (`parse_known_args`).
        own_flags: clipdedup's flags for this command, for the suggestions.
        beam: False for a command that runs no pipeline: then no flag is Beam's.
    """
    parser = beam_parser() if beam else _RaisingParser(add_help=False)
    _, unknown = parser.parse_known_args(list(beam_args))  # also checks Beam's value types
    if not unknown:
        return
    known = own_flags + option_strings(parser)
    problems, after_flag = [], False
    for arg in unknown:
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            close = difflib.get_close_matches(name, [k for k in known if k != name], n=1)
            problems.append(f"unknown flag {name}" + (f" (did you mean {close[0]}?)" if close else ""))
            after_flag = "=" not in arg
        elif after_flag:  # most likely the unknown flag's value
            after_flag = False
        else:
            problems.append(f"unexpected argument {arg!r}")
    raise UnknownFlagError("; ".join(problems))
