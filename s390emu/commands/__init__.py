"""The CLI's commands, one module each; ``COMMANDS`` is what ``s390emu.cli`` registers."""

from .demo import demo
from .translate import translate

COMMANDS = [demo, translate]

from .dump import dump_group  # noqa: E402  (issue 5)
COMMANDS.append(dump_group)
from .ptdump import ptdump  # noqa: E402  (issue 5)
COMMANDS.append(ptdump)
from .pages import pages  # noqa: E402  (issue 5)
COMMANDS.append(pages)
from .check import check  # noqa: E402  (issue 5)
COMMANDS.append(check)
from .explore import explore  # noqa: E402  (issue 4)
COMMANDS.append(explore)
