"""`devsync shell-init SHELL`: the snippet a shell's rc file evaluates to get the prompt check.

Like `direnv hook` or `starship init`:

    bash:  eval "$(devsync shell-init bash)"          in ~/.bashrc
    zsh:   eval "$(devsync shell-init zsh)"           in ~/.zshrc
    fish:  devsync shell-init fish | source           in ~/.config/fish/config.fish

The snippet runs `devsync --check` once when an interactive shell starts. With `--on-cd` it
also runs it whenever the working directory moves into a different repository (not on every
`cd` within one): bash through a PROMPT_COMMAND hook comparing $PWD, zsh through a chpwd hook,
fish through a handler on the PWD variable. The repository is found in the shell itself (the
nearest directory with a `.git`), so moving around inside one repository starts no process.
The check's stderr is discarded: a broken installation must not spam every prompt.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from devsync.errors import UsageError

SHELLS = ("bash", "zsh", "fish")


def snippet(shell: str, on_cd: bool = False, *, command: Sequence[str] = ("devsync",)) -> str:
    """Shell code to evaluate in the rc file of `shell` ("bash", "zsh" or "fish").

    `command` is the argv prefix that runs devsync (tests point it at a specific interpreter);
    `--check` is appended.
    """
    if not command:
        raise UsageError("shell-init needs a devsync command to run")
    check = " ".join(shlex.quote(part) for part in (*command, "--check"))
    if shell == "bash":
        return _BASH_ON_CD.format(check=check) if on_cd else _BASH.format(check=check)
    if shell == "zsh":
        return _ZSH_ON_CD.format(check=check) if on_cd else _ZSH.format(check=check)
    if shell == "fish":
        return _FISH_ON_CD.format(check=check) if on_cd else _FISH.format(check=check)
    raise UsageError(
        f"unsupported shell: {shell!r}",
        hint=f"devsync shell-init supports {', '.join(SHELLS)}",
    )


# Notes on the snippets (kept out of them: the user sees them in `devsync shell-init` output):
# - Everything is wrapped in an "interactive?" test instead of `return`, because `return` at
#   the top level of an eval'ed snippet would end the user's whole rc file.
# - Root finding strips one path component at a time with parameter expansion: no subshell,
#   no process, so a `cd` inside the same repository costs nothing.
# - The bash hook saves and restores $? so prompts that show the last exit status still work.

_BASH = """\
# devsync shell integration (bash): eval "$(devsync shell-init bash)"
if [[ $- == *i* ]]; then
  __devsync_check() {{ command {check} 2>/dev/null; }}
  __devsync_check
fi
"""

_BASH_ON_CD = """\
# devsync shell integration (bash, --on-cd): eval "$(devsync shell-init bash --on-cd)"
if [[ $- == *i* ]]; then
  __devsync_check() {{ command {check} 2>/dev/null; }}
  __devsync_find_root() {{
    local d=$PWD
    __devsync_root=
    while [[ -n $d ]]; do
      if [[ -e $d/.git ]]; then __devsync_root=$d; return; fi
      d=${{d%/*}}
    done
    if [[ -e /.git ]]; then __devsync_root=/; fi
  }}
  __devsync_hook() {{
    local status=$?
    if [[ $PWD != "${{__devsync_pwd-}}" ]]; then
      __devsync_pwd=$PWD
      __devsync_find_root
      if [[ $__devsync_root != "${{__devsync_last_root-}}" ]]; then
        __devsync_last_root=$__devsync_root
        if [[ -n $__devsync_root ]]; then __devsync_check; fi
      fi
    fi
    return $status
  }}
  __devsync_pwd=$PWD
  __devsync_find_root
  __devsync_last_root=$__devsync_root
  __devsync_check
  if [[ ";${{PROMPT_COMMAND[*]-}};" != *";__devsync_hook;"* ]]; then
    PROMPT_COMMAND="__devsync_hook${{PROMPT_COMMAND:+;$PROMPT_COMMAND}}"
  fi
fi
"""

_ZSH = """\
# devsync shell integration (zsh): eval "$(devsync shell-init zsh)"
if [[ -o interactive ]]; then
  __devsync_check() {{ command {check} 2>/dev/null }}
  __devsync_check
fi
"""

_ZSH_ON_CD = """\
# devsync shell integration (zsh, --on-cd): eval "$(devsync shell-init zsh --on-cd)"
if [[ -o interactive ]]; then
  __devsync_check() {{ command {check} 2>/dev/null }}
  __devsync_find_root() {{
    local d=$PWD
    typeset -g __devsync_root=
    while [[ -n $d ]]; do
      if [[ -e $d/.git ]]; then __devsync_root=$d; return; fi
      d=${{d%/*}}
    done
    if [[ -e /.git ]]; then __devsync_root=/; fi
  }}
  __devsync_chpwd() {{
    __devsync_find_root
    if [[ $__devsync_root != "$__devsync_last_root" ]]; then
      typeset -g __devsync_last_root=$__devsync_root
      if [[ -n $__devsync_root ]]; then __devsync_check; fi
    fi
  }}
  __devsync_find_root
  typeset -g __devsync_last_root=$__devsync_root
  __devsync_check
  autoload -Uz add-zsh-hook
  add-zsh-hook chpwd __devsync_chpwd
fi
"""

_FISH = """\
# devsync shell integration (fish): devsync shell-init fish | source
if status is-interactive
    function __devsync_check
        command {check} 2>/dev/null
    end
    __devsync_check
end
"""

_FISH_ON_CD = """\
# devsync shell integration (fish, --on-cd): devsync shell-init fish --on-cd | source
if status is-interactive
    function __devsync_check
        command {check} 2>/dev/null
    end
    function __devsync_find_root
        set -l d $PWD
        while test -n "$d"
            if test -e "$d/.git"
                echo $d
                return
            end
            set d (string replace -r '/[^/]*$' '' -- $d)
        end
        if test -e /.git
            echo /
        end
    end
    function __devsync_on_pwd --on-variable PWD
        status --is-command-substitution; and return
        set -l root (__devsync_find_root)
        if test "$root" != "$__devsync_last_root"
            set -g __devsync_last_root $root
            if test -n "$root"
                __devsync_check
            end
        end
    end
    set -g __devsync_last_root (__devsync_find_root)
    __devsync_check
end
"""
