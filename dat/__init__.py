"""z/Architecture dynamic address translation over ``s390emu`` storage.

``translate`` walks one address and returns the whole path; ``translate_many`` walks a
numpy array of addresses at once and agrees with ``translate`` on every input; ``lra``
is LOAD REAL ADDRESS with QEMU's result convention; ``reach`` finds every table an ASCE
can reach; ``table_tree`` reads the tables an ASCE designates as dump tools do.  This
package knows nothing of Linux.
"""

from .errors import DatError, InvalidArgument
from .entries import Level, PGM_NAMES
from .walker import Step, Translation, TranslationException, lra, prefix_address, translate
from .batch import translate_many
from .reach import Reach, reachable_tables
from .tree import Table, lenient_asce, table_tree

__all__ = ["DatError", "InvalidArgument", "Level", "PGM_NAMES", "Step", "Translation",
           "TranslationException", "lra", "prefix_address", "translate", "translate_many", "Reach", "reachable_tables",
           "Table", "lenient_asce", "table_tree"]
