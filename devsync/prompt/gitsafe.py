"""Git settings devsync pins on every git command it runs in a repository it does not trust.

A clone's own `.git/config` can name programs for git to run (an fsmonitor hook, a pager, a
signature checker, an external diff, the ssh command of a lazy fetch). Every git process
devsync starts passes these as `-c` overrides, which win over any config file. Standard
library only: the prompt check imports this too.
"""

from __future__ import annotations

SAFE_GIT_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.sshCommand=false",
    "credential.helper=",
    "diff.external=",
    "gpg.program=false",
    "gpg.ssh.program=false",
    "gpg.x509.program=false",
    "protocol.allow=never",
    # output that devsync parses stays the same whatever the user's config says
    "log.follow=false",
    "log.showSignature=false",
    "log.showRoot=true",
    "color.ui=false",
    "i18n.logOutputEncoding=UTF-8",
)
