"""Today's import paths of the allocator keep working after the move into
``pgalloc/versions/`` (version files and users import them), and pgalloc has one error
root with one name for the address.  The import rules themselves: ``tests/test_layout.py``."""

import importlib


def test_todays_import_paths_still_work():
    import pgalloc
    from pgalloc import versions
    for name in ("v515", "v64", "seed", "v66", "v67"):
        module = importlib.import_module(f"pgalloc.versions.{name}")
        assert importlib.import_module(f"pgalloc.{name}") is module is getattr(pgalloc, name)
        assert versions.VERSIONS[name] is module
    ns: dict = {}
    exec("from pgalloc.v66 import *", ns)
    assert ns["NAME"] == "v66" and ns["page_table_free"] is pgalloc.v66.page_table_free
    from pgalloc.versions import VersionError, load_version
    assert load_version("v67") == "v67" and issubclass(VersionError, pgalloc.PgallocError)


def test_one_error_root_and_one_name_for_the_address():
    from pgalloc import errors
    from pgalloc.attach import AttachError
    roots = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert all(issubclass(c, errors.PgallocError) for c in roots) and AttachError is errors.AttachError
    v = errors.Violation("leak", 0x1000, "x")
    assert v.address == v.page == 0x1000
    assert issubclass(errors.MisuseError, RuntimeError)         # what these were
