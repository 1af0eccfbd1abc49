"""The live-variable analysis of kernel functions' steps (pgalloc.liveness): what it
keeps, what it drops, and where it must give up and keep everything."""

from pgalloc.liveness import live_locals
from pgalloc.steps import DONE, Call, Path, step


class counted(Path):
    LOCALS = ("page", "mask", "bit", "scratch")

    @step("mask = xor")
    def xor(self, k):
        self.scratch = 7                # stored before any read: dead until here
        self.mask = self.bit + self.scratch
        return "test mask"

    @step("test mask")
    def test(self, k):
        return "free" if self.mask else DONE

    @step("free")
    def free(self, k):
        return Call(counted(page=self.page), "return")

    @step("return")
    def ret_(self, k):
        return DONE


def test_a_local_is_live_until_its_last_read_and_dead_after_a_store():
    live = live_locals(counted)
    assert live["mask = xor"] == ("result", "page", "bit")          # mask and scratch are stored here first
    assert live["test mask"] == ("result", "page", "mask")
    assert live["free"] == ("result", "page")                       # page: read by the checks, always kept
    assert live["return"] == ("result", "page")


class computed_label(Path):
    LOCALS = ("page", "mask")

    @step("a")
    def a(self, k):
        return f"b{self.mask}"

    @step("b0")
    def b(self, k):
        return DONE


class whole_self(Path):
    LOCALS = ("page", "mask")

    @step("a")
    def a(self, k):
        print(self.__dict__)
        return DONE


class handed_out(Path):
    LOCALS = ("page", "mask")

    @step("a")
    def a(self, k):
        [f(k) for f in [self]]
        return DONE


def test_what_the_analysis_does_not_follow_keeps_every_local():
    for cls in (computed_label, whole_self, handed_out):
        assert live_locals(cls) == {}, cls


def test_every_kernel_function_of_every_version_is_analysed():
    """Only the two abstract bases fall back to "everything live"."""
    import pgalloc.explore  # noqa: F401 - the operation paths
    from pgalloc.versions import VERSIONS  # noqa: F401 - every version's functions

    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)
    mods = ("pgalloc.", "s390emu.")
    unknown = {c.__name__ for c in subclasses(Path) if c.__module__.startswith(mods) and not live_locals(c)}
    assert unknown == {"AllocPath", "FreePath"}
