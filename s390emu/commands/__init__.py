"""The CLI's commands, one module each; ``COMMANDS`` is what ``s390emu.cli`` registers."""

from .translate import translate

COMMANDS = [translate]
