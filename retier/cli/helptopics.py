"""`retier help TOPIC` and `retier completion bash|zsh`: the CLI's conventions, from the parser."""

from __future__ import annotations

import argparse
import shlex
import sys

from retier.cli.common import EXIT_OK, UsageError

# Options that take a file name: completed with file names.
FILE_OPTIONS = ("--chart", "--volumes-from", "--dead-letter", "--dead-letter-storage")


SUMMARIES = {
    "settings": "the RETIER_* settings the CLI and the Function read",
    "exit-codes": "0 done, 1 retry may help, 2 bad usage or input",
    "containers": "Azure's container-name rule, azure://backups, RETIER_CONTAINERS",
    "credentials": "--connection-string, --account-url and the environment, in order",
    "output": "-v/-q anywhere, --json, progress, money",
    "money": "which commands ask before spending, and --yes",
    "completion": "bash and zsh completion scripts",
}


def _topics() -> dict[str, str]:
    from retier.settings import CONTAINER_RULE

    return {
        "settings": _settings_text(),
        "exit-codes": (
            "Every command exits\n"
            "  0  done (for status: every volume online)\n"
            "  1  a failure a retry may fix: storage did not answer, a transient error, a blob\n"
            "     that failed (listed), volumes still rehydrating\n"
            "  2  bad usage or bad input: a wrong option, setting, container name or file, a\n"
            "     credential storage refused, a charged move not confirmed with --yes\n"
            "Messages go to stderr as one line starting with 'retier:'; never a traceback for a\n"
            "bad input, never a key, SAS or connection string.\n"
        ),
        "containers": (
            f"{CONTAINER_RULE[0].upper()}{CONTAINER_RULE[1:]} (Azure's rule, checked before any\n"
            "request). --container also takes duplicity's URL: azure://backups means 'backups'.\n"
            "A mistake gets a guess: --container Backups -> did you mean 'backups'?\n"
            "RETIER_CONTAINERS is comma-separated: 'backups,photos' (a space is refused).\n"
        ),
        "credentials": (
            "Where retier finds the storage account, first match wins:\n"
            "  --connection-string VALUE   a connection string for this run (sets RETIER_STORAGE);\n"
            "                              '-' reads it from standard input (no echo at a\n"
            "                              terminal). A key typed on the command line stays in\n"
            "                              your shell history and shows in `ps`: retier warns.\n"
            "  --account-url URL           https://<account>.blob.core.windows.net with your\n"
            "                              Azure sign-in (`az login`); sets\n"
            "                              RETIER_STORAGE__blobServiceUri for this run\n"
            "  RETIER_STORAGE              a connection string\n"
            "  RETIER_STORAGE__blobServiceUri (+ __clientId, __credential) an identity\n"
            "  AZURE_CONNECTION_STRING     duplicity's own variable (the CLI only)\n"
            "A refused credential is named with what to check; it exits 2 (not 'retry').\n"
        ),
        "output": (
            "-v/--verbose logs each decision on stderr; -q/--quiet only errors. Both go before or\n"
            "after the command: `retier -v sweep ...` and `retier sweep ... -v` are the same.\n"
            "--json (sweep, cost, prices, restore-plan, status, doctor, replay, bridge, ...) prints\n"
            "JSON on stdout for a program; progress lines go to stderr, only at a terminal.\n"
            "Money is written as money: 0.0000792 USD, never 7.92e-05.\n"
        ),
        "money": (
            "Commands that spend money ask first and take --yes: `rehydrate` (retrieval), `sweep`\n"
            "when a move is charged an early deletion (a tier left before its minimum days).\n"
            "Without a terminal they refuse unless --yes. The Function's timer cannot ask: it\n"
            "follows the settings and logs each charge. Prices: `retier prices`.\n"
        ),
        "completion": (
            "Shell completion of commands, options and choices:\n"
            "  bash:  retier completion bash > ~/.local/share/bash-completion/completions/retier\n"
            "  zsh:   retier completion zsh > ~/.zfunc/_retier   (or: source <(retier completion zsh))\n"
            "Or for this shell only: source <(retier completion bash)\n"
        ),
    }


def _settings_text() -> str:
    from retier.cli import EPILOG

    return EPILOG.split("\n\n")[0] + "\n"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cmd_help(args: argparse.Namespace) -> int:
    from retier.cli import build_parser

    parser = build_parser()
    topics = _topics()
    commands = _commands(parser)
    if not args.topic:
        out = sys.stdout.write
        out("retier help TOPIC, one of:\n")
        for name, summary in SUMMARIES.items():
            out(f"  {name:<12} {summary}\n")
        out(f"or a command ({', '.join(c for c in commands if c != 'help')}): its --help\n")
        return EXIT_OK
    if args.topic in topics:
        sys.stdout.write(topics[args.topic])
        return EXIT_OK
    if args.topic in commands:
        commands[args.topic].print_help()
        return EXIT_OK
    raise UsageError(
        f"no help topic {args.topic!r}: try one of {', '.join(topics)}, or a command name"
    )


# -- completion -------------------------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        o
        for a in parser._actions
        if a.help != argparse.SUPPRESS
        for o in a.option_strings
        if o.startswith("--") or len(o) == 2
    ]


def _takes_value(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions if a.nargs != 0 for o in a.option_strings]


def bash_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion function generated from the parser: it knows every command, option and
    choice of this version of retier, and never runs retier while completing."""
    commands = _commands(parser)
    top_values = " ".join(_takes_value(parser))
    lines = [
        "# bash completion for retier (generated by `retier completion bash`)",
        "_retier() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="" word i skip=""',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        '        if [[ -n "$skip" ]]; then skip=""; continue; fi',
        '        case " ' + top_values + ' " in *" $word "*) skip=1; continue ;; esac',
        '        case "$word" in -*) ;; *) cmd="$word"; break ;; esac',
        "    done",
        '    case "$prev" in',
        f"        {'|'.join(FILE_OPTIONS)})",
        '            COMPREPLY=($(compgen -f -- "$cur")); return ;;',
        "    esac",
        '    case "$cmd:$prev" in',
    ]
    for name, sub in commands.items():
        for action in sub._actions:
            if action.choices and action.option_strings:
                pattern = "|".join(f"{name}:{o}" for o in action.option_strings)
                words = " ".join(str(c) for c in action.choices)
                lines.append(
                    f'        {pattern}) COMPREPLY=($(compgen -W {shlex.quote(words)} -- "$cur")); '
                    "return ;;"
                )
    lines += ["    esac", "    local words", '    case "$cmd" in']
    lines.append(f'        "") words={shlex.quote(" ".join([*commands, *_options(parser)]))} ;;')
    for name, sub in commands.items():
        positional_choices = [
            str(c) for a in sub._actions if not a.option_strings and a.choices for c in a.choices
        ]
        words = " ".join([*positional_choices, *_options(sub)])
        lines.append(f"        {name}) words={shlex.quote(words)} ;;")
    lines += [
        "        *) words='' ;;",
        "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        "complete -o default -F _retier retier",
        "",
    ]
    return "\n".join(lines)


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """zsh runs the same function through its bash-completion layer (bashcompinit)."""
    return (
        "#compdef retier\n"
        "# zsh completion for retier (generated by `retier completion zsh`)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(parser)
    )


def cmd_completion(args: argparse.Namespace) -> int:
    from retier.cli import build_parser

    script = {"bash": bash_script, "zsh": zsh_script}[args.shell](build_parser())
    sys.stdout.write(script)
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser(
        "help",
        help="the CLI's conventions: settings, exit codes, containers, credentials, ...",
        description="Short pages on what every command shares; `retier help COMMAND` is "
        "`retier COMMAND --help`.",
        epilog="examples:\n  retier help\n  retier help exit-codes\n  retier help sweep",
    )
    p.add_argument("topic", nargs="?", metavar="TOPIC")
    p.set_defaults(func=cmd_help)

    p = sub.add_parser(
        "completion",
        help="print a shell completion script for bash or zsh",
        description="Print a completion script for the commands, options and choices of this "
        "retier; `retier help completion` says where to put it.",
        epilog="examples:\n  source <(retier completion bash)\n"
        "  retier completion zsh > ~/.zfunc/_retier",
    )
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=cmd_completion)
