"""The CLI's commands, one module each; ``COMMANDS`` is what ``s390emu.cli`` registers."""

from .check import check
from .demo import demo
from .dump import dump_group
from .explore import explore
from .pages import pages
from .ptdump import ptdump
from .translate import translate

COMMANDS = [translate, demo, pages, check, dump_group, ptdump, explore]
