"""`devsync shell-init SHELL`: the snippet a shell's rc file evaluates to get the prompt check.

Like `direnv hook` or `starship init`:

    bash:  eval "$(devsync shell-init bash)"          in ~/.bashrc
    zsh:   eval "$(devsync shell-init zsh)"           in ~/.zshrc
    fish:  devsync shell-init fish | source           in ~/.config/fish/config.fish

The snippet hooks the prompt (bash `PROMPT_COMMAND`, zsh `precmd`, fish's `fish_prompt`
event), as direnv does: before every prompt in a git repository it runs `devsync --check`
(a few stat() calls when nothing changed), and prints the check's line when the shell
starts, on entering a repository, and whenever the line changes; never the same line again
before every prompt (the shell remembers the last line and repository in two variables).
The repository is found in the shell itself (the nearest directory with a `.git`), so a
prompt outside any repository starts no process. The check's stderr is discarded: a broken
installation must not spam every prompt.

The check is named by absolute path, as `starship init` does: the Python of the installation
that printed the snippet (a pipx or uv tool venv, a plain venv...), so the hook works however
devsync was installed and whatever PATH the shell has. It runs the check module directly
(`-P -c`): the `devsync` console script that pip writes imports `re` first, which alone costs
a fifth of the interpreter's start-up, on every prompt. `-P`: never import from the working
directory, i.e. the repository.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence

SHELLS = ("bash", "zsh", "fish")
_CHECK_CODE = "from devsync.prompt.check import main; main()"


def check_command() -> tuple[str, ...]:
    """The argv that runs this installation's prompt check: this interpreter, by absolute
    path; `devsync --check` from PATH when the interpreter does not know its own path."""
    exe = sys.executable
    if exe and os.path.isabs(exe):
        return (exe, "-P", "-c", _CHECK_CODE)
    return ("devsync", "--check")


def snippet(shell: str, *, command: Sequence[str] | None = None) -> str:
    """Shell code to evaluate in the rc file of `shell` ("bash", "zsh" or "fish").

    `command` is the whole argv that runs the check (default: `check_command()`; tests point
    it at a specific interpreter). Raises ValueError for another shell. (The check on
    entering a repository that `--on-cd` used to add is part of every snippet now.)
    """
    argv = tuple(command) if command is not None else check_command()
    if not argv:
        raise ValueError("shell-init needs a devsync command to run")
    if shell == "bash":
        return _BASH.format(check=" ".join(shlex.quote(part) for part in argv))
    if shell == "zsh":
        return _ZSH.format(check=" ".join(shlex.quote(part) for part in argv))
    if shell == "fish":
        return _FISH.format(check=" ".join(_fish_quote(part) for part in argv))
    raise ValueError(f"unsupported shell: {shell!r} (devsync shell-init supports "
                     f"{', '.join(SHELLS)})")


def _fish_quote(word: str) -> str:
    # fish's single quotes are not POSIX's: a backslash escapes a backslash or a quote there.
    if word and all(c.isalnum() or c in "@%+=:,./-_" for c in word):
        return word
    return "'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Notes on the snippets (kept out of them: the user sees them in `devsync shell-init` output):
# - Everything is wrapped in an "interactive?" test instead of `return`, because `return` at
#   the top level of an eval'ed snippet would end the user's whole rc file.
# - Root finding strips one path component at a time with parameter expansion (fish: the
#   `string` builtin): no process.
# - The check runs directly inside `$(...)`, not through a shell function: bash then execs it
#   in the subshell it forks anyway, one process instead of two.
# - The hook runs once from the rc file too, so a shell started with `-i -c CMD` (no prompt)
#   says it as well; the first prompt then finds the same line and stays silent.
# - bash: the hook saves and restores $? so prompts that show the last exit status still
#   work (zsh and fish keep it around precmd functions and event handlers by themselves);
#   PROMPT_COMMAND may be a string or (bash 5.1+) an array; sourcing twice adds one hook.

_BASH = """\
# devsync shell integration (bash): eval "$(devsync shell-init bash)"
if [[ $- == *i* ]]; then
  __devsync_hook() {{
    local status=$? d=$PWD line=
    while [[ -n $d && ! -e $d/.git ]]; do d=${{d%/*}}; done
    if [[ -z $d && -e /.git ]]; then d=/; fi
    if [[ -n $d ]]; then line=$({check} 2>/dev/null); fi
    if [[ -n $line && ( $d != "${{__devsync_root-}}" || $line != "${{__devsync_line-}}" ) ]]; then
      printf '%s\\n' "$line"
    fi
    __devsync_root=$d
    __devsync_line=$line
    return $status
  }}
  __devsync_hook
  if [[ ";${{PROMPT_COMMAND[*]-}};" != *";__devsync_hook;"* ]]; then
    if [[ $(declare -p PROMPT_COMMAND 2>&1) == "declare -a"* ]]; then
      PROMPT_COMMAND=(__devsync_hook "${{PROMPT_COMMAND[@]}}")
    else
      PROMPT_COMMAND="__devsync_hook${{PROMPT_COMMAND:+;$PROMPT_COMMAND}}"
    fi
  fi
fi
"""

_ZSH = """\
# devsync shell integration (zsh): eval "$(devsync shell-init zsh)"
if [[ -o interactive ]]; then
  __devsync_precmd() {{
    local d=$PWD line=
    while [[ -n $d && ! -e $d/.git ]]; do d=${{d%/*}}; done
    if [[ -z $d && -e /.git ]]; then d=/; fi
    if [[ -n $d ]]; then line=$({check} 2>/dev/null); fi
    if [[ -n $line && ( $d != "${{__devsync_root-}}" || $line != "${{__devsync_line-}}" ) ]]; then
      print -r -- "$line"
    fi
    typeset -g __devsync_root=$d __devsync_line=$line
  }}
  __devsync_precmd
  autoload -Uz add-zsh-hook
  add-zsh-hook precmd __devsync_precmd
fi
"""

_FISH = """\
# devsync shell integration (fish): devsync shell-init fish | source
if status is-interactive
    function __devsync_prompt --on-event fish_prompt
        set -l d $PWD
        while test -n "$d"; and not test -e "$d/.git"
            set d (string replace -r '/[^/]*$' '' -- $d)
        end
        if test -z "$d"; and test -e /.git
            set d /
        end
        set -l line
        if test -n "$d"
            set line ({check} 2>/dev/null)
        end
        if test -n "$line"
            if test "$d" != "$__devsync_root"; or test "$line" != "$__devsync_line"
                printf '%s\\n' "$line"
            end
        end
        set -g __devsync_root $d
        set -g __devsync_line "$line"
    end
    __devsync_prompt
end
"""
