"""A version file that fails, in every command that takes one: one line naming the file
and what went wrong, exit 1, never a traceback and never a silent exit 0."""

import itertools

import pytest
from click.testing import CliRunner

from s390emu.cli import main

_names = itertools.count()

HEAD = "from pgalloc.v66 import *\nfrom pgalloc import v66\nfrom pgalloc.steps import step\n"

BODIES = {
    "raising step": ('NAME = "{name}"\n'
                     "class page_table_free(v66.page_table_free):\n"
                     '    @step("atomic_xor_bits(P)")\n'
                     "    def xor_p(self, k):\n"
                     "        raise ZeroDivisionError('boom')\n",
                     ["ZeroDivisionError: boom", "page_table_free.xor_p, line 8"]),
    "computed label": ('NAME = "{name}"\n'
                       "class page_table_free(v66.page_table_free):\n"
                       '    @step("atomic_xor_bits(P)")\n'
                       "    def xor_p(self, k):\n"
                       "        return 'no such ' + 'label'\n",
                       ["returned 'no such label', which is no step"]),
    "exit in a step": ('NAME = "{name}"\n'
                       "import sys\n"
                       "class page_table_free(v66.page_table_free):\n"
                       '    @step("atomic_xor_bits(P)")\n'
                       "    def xor_p(self, k):\n"
                       "        sys.exit(0)\n",
                       ["it called sys.exit(0)"]),
    "newline in NAME": ('NAME = "{name}\\nx"\n', ["is not a name"]),
    "NAME not a string": ("NAME = 5\n", ["NAME = 5 is not a name"]),
    "sys.exit at import": ("import sys\nsys.exit(0)\n", ["cannot load it: it called sys.exit(0)"]),
    "BaseException at import": ("raise GeneratorExit('x')\n", ["cannot load it: GeneratorExit: x"]),
}

COMMANDS = {
    "demo": lambda f, tmp: ["demo", "--version", f],
    "check": lambda f, tmp: ["check", "--version", f],
    "pages": lambda f, tmp: ["pages", "--version", f],
    "translate": lambda f, tmp: ["translate", "--demo", f, "0x10000000"],
    "ptdump": lambda f, tmp: ["ptdump", "--demo", f],
    "dump save": lambda f, tmp: ["dump", "save", "--version", f, str(tmp / "out.vmcore")],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(BODIES))
def test_a_failing_version_file_is_one_line_and_exit_1(tmp_path, case, command):
    body, expected = BODIES[case]
    name = f"patch{next(_names)}"
    f = tmp_path / f"{name}.py"
    f.write_text(HEAD + body.format(name=name))
    r = CliRunner().invoke(main, COMMANDS[command](str(f), tmp_path))
    assert r.exit_code == 1, (r.output, r.exception)
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), r.exception
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s390emu: ") and f"{name}.py" in lines[0], lines
    for text in expected:
        assert text in lines[0]
    assert not (tmp_path / "out.vmcore").exists()
