"""Code fingerprints: what a function depends on beyond its arguments."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbcache.keys.code import fingerprint, fingerprint_of, identity, is_local_module

from ..notebook_sim import outputs_under_hash_seeds, run_cell

BASE = """
SCALE = 2

def inner(x):
    return x * SCALE

def middle(x):
    return inner(x) + 1

def outer(x):
    return middle(x) - 1
"""


def _notebook(source: str = BASE) -> dict[str, Any]:
    return run_cell(source, {})


def test_identity_is_module_and_qualname() -> None:
    """A notebook function is named __main__:name, which a restart does not change."""
    ns = _notebook()
    assert identity(ns["outer"]) == "__main__:outer"
    assert is_local_module("__main__")
    assert not is_local_module("numpy")


def test_helper_two_levels_down() -> None:
    """Editing a helper two calls deep changes the caller's fingerprint."""
    ns = _notebook()
    before = fingerprint(ns["outer"])
    run_cell("def inner(x):\n    return x * SCALE + 0\n", ns)
    assert fingerprint(ns["outer"]) != before


def test_global_read_two_levels_down() -> None:
    """Changing a global a helper reads changes the caller's fingerprint."""
    ns = _notebook()
    before = fingerprint(ns["outer"])
    ns["SCALE"] = 3
    assert fingerprint(ns["outer"]) != before
    ns["SCALE"] = 2
    assert fingerprint(ns["outer"]) == before


def test_comments_and_blank_lines_do_not_count() -> None:
    """Comments, blank lines and layout leave the fingerprint alone."""
    ns = _notebook()
    before = fingerprint(ns["outer"])
    run_cell(
        """
        def inner(x):   # scale it

            return (x *
                    SCALE)  # same code
        """,
        ns,
    )
    assert fingerprint(ns["outer"]) == before


def test_mutated_data_global_is_noticed() -> None:
    """A global list or array mutated in place changes the fingerprint on the next look."""
    ns = _notebook(
        "import numpy as np\nWEIGHTS = np.ones(3)\ndef score(x):\n    return (WEIGHTS * x).sum()\n"
    )
    fp = fingerprint_of(ns["score"])
    assert fp.reads_data
    ns["WEIGHTS"][1] = 5.0
    assert fingerprint(ns["score"]) != fp.digest


def test_defaults_and_closures() -> None:
    """Default values and closure variables are part of the fingerprint."""
    ns = _notebook(
        """
        def make(k):
            def f(x, scale=2):
                return x * scale + k
            return f
        f1, f2 = make(1), make(2)
        """
    )
    assert fingerprint(ns["f1"]) != fingerprint(ns["f2"])
    before = fingerprint(ns["f1"])
    ns["f1"].__defaults__ = (3,)
    assert fingerprint(ns["f1"]) != before


def test_modules_by_version_local_modules_by_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed modules count by version; a local module by the hash of its source."""
    (tmp_path / "mylocal.py").write_text("def helper(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ns = _notebook(
        "import numpy as np\nimport mylocal\ndef f(x):\n    return np.sum(mylocal.helper(x))\n"
    )
    deps = {d.name: d for d in fingerprint_of(ns["f"]).dependencies}
    assert deps["np"].kind == "module" and deps["np"].digest == f"numpy@{np.__version__}"
    assert deps["mylocal"].digest.startswith("mylocal#")
    before = fingerprint(ns["f"])
    (tmp_path / "mylocal.py").write_text("def helper(x):\n    return x + 2\n")
    assert fingerprint(ns["f"]) != before
    monkeypatch.delitem(sys.modules, "mylocal")


def test_notebook_classes_by_their_methods() -> None:
    """A class defined in the notebook counts by its methods' code."""
    ns = _notebook(
        """
        class Model:
            def predict(self, x):
                return x * 2
        def run(x):
            return Model().predict(x)
        """
    )
    before = fingerprint(ns["run"])
    run_cell("class Model:\n    def predict(self, x):\n        return x * 3\n", ns)
    assert fingerprint(ns["run"]) != before


def test_recursion_is_cycle_safe() -> None:
    """Mutually recursive functions get a fingerprint; editing either changes both."""
    ns = _notebook(
        """
        def even(n):
            return True if n == 0 else odd(n - 1)
        def odd(n):
            return False if n == 0 else even(n - 1)
        """
    )
    before = fingerprint(ns["even"])
    run_cell("def odd(n):\n    return n % 2 == 1\n", ns)
    assert fingerprint(ns["even"]) != before


def test_redefinition_noticed_on_next_call_without_rebuild() -> None:
    """The cached fingerprint is reused while nothing changed, and rebuilt when it did."""
    ns = _notebook()
    first = fingerprint_of(ns["outer"])
    assert fingerprint_of(ns["outer"]) is first
    run_cell("def middle(x):\n    return inner(x) + 2\n", ns)
    assert fingerprint_of(ns["outer"]) is not first


NEW_PROCESS = """
import sys
sys.path.insert(0, {tests!r})
from notebook_sim import run_cell
from nbcache.keys.code import fingerprint
ns = run_cell({source!r}, {{}})
print(fingerprint(ns["outer"]))
"""


def test_fingerprint_is_stable_across_processes() -> None:
    """The same notebook code gets the same fingerprint in a new kernel."""
    code = NEW_PROCESS.format(tests=str(Path(__file__).parent.parent), source=BASE)
    seen = outputs_under_hash_seeds(code)
    assert len(seen) == 1
    assert seen == {fingerprint(_notebook()["outer"])}


# -- all the local code a call reaches, installed code by name -------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def local_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A folder on sys.path for local modules, forgotten by sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _edit(path: Path, text: str) -> None:
    """Rewrite a file so that its size or mtime surely changes."""
    path.write_text(text)
    st = path.stat()
    import os

    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


def test_module_imported_by_a_local_module(local_code: Path) -> None:
    """An edit in a module that a local module imports changes the caller's fingerprint."""
    _write(local_code, {"top1.py": "import low1\ndef f(x):\n    return low1.g(x)\n"})
    _write(local_code, {"low1.py": "def g(x):\n    return x + 1\n"})
    ns = _notebook("import top1\ndef run(x):\n    return top1.f(x)\n")
    before = fingerprint(ns["run"])
    _edit(local_code / "low1.py", "def g(x):\n    return x + 2\n")
    assert fingerprint(ns["run"]) != before


def test_submodule_re_exported_by_init(local_code: Path) -> None:
    """An edit in a package's submodule that __init__ re-exports changes the fingerprint."""
    _write(
        local_code,
        {
            "pkg2/__init__.py": "from .impl import g\n",
            "pkg2/impl.py": "def g(x):\n    return x + 1\n",
        },
    )
    ns = _notebook("import pkg2\ndef run(x):\n    return pkg2.g(x)\n")
    before = fingerprint(ns["run"])
    _edit(local_code / "pkg2/impl.py", "def g(x):\n    return x + 22\n")
    assert fingerprint(ns["run"]) != before


def test_dotted_import(local_code: Path) -> None:
    """``import pkg.sub``: an edit in the submodule changes the fingerprint."""
    _write(local_code, {"pkg3/__init__.py": "", "pkg3/sub.py": "K = 1\n"})
    ns = _notebook("import pkg3.sub\ndef run():\n    return pkg3.sub.K\n")
    before = fingerprint(ns["run"])
    _edit(local_code / "pkg3/sub.py", "K = 2\n")
    assert fingerprint(ns["run"]) != before


def test_module_imported_inside_a_function(local_code: Path) -> None:
    """A module that a function's own code imports counts, before and after the first call."""
    _write(local_code, {"lazy4.py": "def g():\n    return 1\n"})
    ns = _notebook("def run():\n    import lazy4\n    return lazy4.g()\n")
    before = fingerprint(ns["run"])
    assert "lazy4" not in sys.modules
    ns["run"]()
    assert fingerprint(ns["run"]) == before  # importing it is no change
    _edit(local_code / "lazy4.py", "def g():\n    return 2\n")
    assert fingerprint(ns["run"]) != before


def test_local_closure_is_stable_across_processes(local_code: Path) -> None:
    """Module fingerprints come from the files, so a new process computes the same one."""
    _write(local_code, {"top5.py": "import low5\n", "low5.py": "X = 1\n"})
    code = (
        f"import sys; sys.path.insert(0, {str(local_code)!r}); import top5; "
        "from nbcache.keys.code import module_fingerprint; print(module_fingerprint(top5))"
    )
    seen = outputs_under_hash_seeds(code)
    assert len(seen) == 1


def test_installed_functions_by_name_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function from an installed module counts by name and version, never by its code.

    Its module holds a lock, which a walk through its globals would choke on.
    """
    site = tmp_path / "site-packages"
    _write(
        site,
        {
            "fakelib6.py": "import threading\nLOCK = threading.Lock()\n"
            "def score(a):\n    with LOCK:\n        return a\n"
        },
    )
    monkeypatch.syspath_prepend(str(site))
    import importlib

    fakelib = importlib.import_module("fakelib6")
    try:
        assert not is_local_module("fakelib6")
        ns = _notebook(
            "from fakelib6 import score\ndef run(a, metric=score):\n    return metric(a)\n"
        )
        fp = fingerprint_of(ns["run"])
        assert [d.kind for d in fp.dependencies] == ["default"]
        from nbcache.keys import digest

        assert len(digest(fakelib.score)) == 32  # by name: the lock is never reached
    finally:
        del sys.modules["fakelib6"]
    del fakelib


def test_sklearn_metric_as_a_global() -> None:
    """A notebook function using scikit-learn's accuracy_score fingerprints, fast."""
    pytest.importorskip("sklearn")
    ns = _notebook(
        "from sklearn.metrics import accuracy_score\n"
        "def evaluate(y, p):\n    return accuracy_score(y, p)\n"
    )
    deps = {d.name: d for d in fingerprint_of(ns["evaluate"]).dependencies}
    assert deps["accuracy_score"].kind == "global"


def test_ufunc_default_argument() -> None:
    """A numpy ufunc as a default argument hashes (through copyreg), and by which ufunc."""
    ns = _notebook("import numpy as np\ndef f(x, op=np.square):\n    return op(x)\n")
    before = fingerprint(ns["f"])
    ns["f"].__defaults__ = (np.sqrt,)
    assert fingerprint(ns["f"]) != before


def test_fingerprint_raises_only_key_pickling_errors() -> None:
    """A function whose global is a live handle fails as a KeyPicklingError naming it."""
    from nbcache import KeyPicklingError

    ns = _notebook("import threading\nLOCK = threading.Lock()\ndef f():\n    return LOCK\n")
    with pytest.raises(KeyPicklingError, match="LOCK"):
        fingerprint(ns["f"])


def test_pickling_an_instance_leaves_the_class_fingerprint() -> None:
    """Storing an instance writes copyreg's __slotnames__ cache into its class: not code."""
    ns = _notebook("class Bag(set):\n    pass\n")
    before = fingerprint(ns["Bag"])
    ns["Bag"]({1}).__reduce_ex__(2)  # what pickling it does first
    assert "__slotnames__" in vars(ns["Bag"])
    assert fingerprint(ns["Bag"]) == before


DECORATED = '''
import functools


def deco(*args, **kwargs):
    return args[0] if args and callable(args[0]) else (lambda f: f)


@deco
def plain(x):
    return x


@deco(
    "def not_this():",
    key=1,
)
@deco
async def stacked(x):
    """Two decorators, the first over three lines."""
    return x


class Holder:
    @staticmethod
    def method(x):
        # a comment at the method's indentation
        return x

    @property
    def value(self):
        return 1


def outer():
    @deco
    def nested(y):
        return y

    return nested


@deco
@functools.wraps(plain)
def renamed(x):
    return x + 1
'''


def test_decorated_functions_are_read_from_their_block_as_inspect_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decorators (stacked, spanning lines, on methods and nested functions) are part of
    the block the fingerprint reads without inspect, and the tree is the one inspect's
    source gives, so keys stay what they were; a function another name took (wraps)
    is left to inspect."""
    import ast
    import importlib
    import inspect
    import textwrap

    from nbcache.keys import source

    (tmp_path / "decorated_fixture.py").write_text(DECORATED)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("decorated_fixture")
    functions = [
        module.plain,
        module.stacked,
        module.Holder.method,
        module.Holder.value.fget,
        module.outer(),
    ]
    for fn in functions:
        tree = source._block_tree(fn)
        assert tree is not None, fn.__name__
        by_inspect = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        assert ast.dump(tree) == ast.dump(by_inspect), fn.__name__
    assert source._block_tree(module.renamed) is None  # named plain: inspect decides


def test_bytecode_scan_names_what_dis_names() -> None:
    """The scan of globals and imports over raw bytecode agrees with dis on every code
    object of a few standard modules (extended arguments and inline caches included)."""
    import dis
    import email.message
    import json.decoder
    import types

    from nbcache.keys.source import global_names, imported_in_body

    ops = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"}

    def walk(obj: types.CodeType) -> Any:
        yield obj
        for const in obj.co_consts:
            if isinstance(const, types.CodeType):
                yield from walk(const)

    def by_dis(obj: types.CodeType) -> set[str]:
        names = {ins.argval for ins in dis.get_instructions(obj) if ins.opname in ops}
        for const in obj.co_consts:
            if isinstance(const, types.CodeType):
                names |= by_dis(const)
        return names

    seen = 0
    for module in (json.decoder, email.message, dis):
        source = Path(str(module.__file__)).read_text(encoding="utf-8")
        for obj in walk(compile(source, str(module.__file__), "exec")):
            assert global_names(obj) == by_dis(obj), obj.co_name
            imported = {
                ins.argval for ins in dis.get_instructions(obj) if ins.opname == "IMPORT_NAME"
            }
            assert {name.split(".")[0] for name in imported} <= {
                name.split(".")[0] for name in imported_in_body(obj, "")
            }
            seen += 1
    assert seen > 100


def test_a_module_under_an_installed_root_is_known_without_realpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module file under an installed root as written is installed without resolving
    every part of its path; one reached through a link below the root is resolved, and
    is local when the link leads out of the root."""
    import os
    import types

    from nbcache.keys import modules

    root, elsewhere = tmp_path / "lib", tmp_path / "project"
    (root / "plain").mkdir(parents=True)
    (elsewhere / "linked").mkdir(parents=True)
    (root / "linked").symlink_to(elsewhere / "linked")
    monkeypatch.setattr(modules, "_WRITTEN_ROOTS", (f"{root}{os.sep}",))
    monkeypatch.setattr(modules, "_INSTALLED_ROOTS", (os.path.realpath(root),))
    monkeypatch.setattr(modules, "_LOCAL", {})
    resolved: list[str] = []
    real = os.path.realpath

    def counting(path: Any, *args: Any, **kwargs: Any) -> str:
        resolved.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", counting)
    for name in ("plain", "linked"):
        module = types.ModuleType(f"nbcache_test_{name}")
        module.__file__ = str(root / name / "mod.py")
        (root / name / "mod.py").write_text("X = 1\n")
        monkeypatch.setitem(sys.modules, module.__name__, module)
    assert not is_local_module("nbcache_test_plain")
    assert resolved == []
    assert is_local_module("nbcache_test_linked")
    assert resolved == [str(root / "linked" / "mod.py")]


SCALE_DECORATOR = """
import functools

def scale(k):
    def wrap(f):
        @functools.wraps(f)
        def inner(x):
            return f(x) * k
        return inner
    return wrap
"""

SCALED_F = '''
@scale({k})  {comment}
def f(x, y=1):  # the input
    """Doc."""

    # the body
    return x + y
'''


def test_a_decorators_arguments_count_its_comments_do_not() -> None:
    """A decorator unwrapped through ``functools.wraps`` is known only by its text: its
    arguments change the fingerprint; comments and blank lines do not, in a method
    either; nothing is parsed to read it."""
    import ast

    from nbcache.keys import source

    def fp(k: str, comment: str = "", indent: str = "") -> str:
        text = SCALED_F.format(k=k, comment=comment)
        if indent:
            text = "class C:\n" + "".join(indent + line for line in text.splitlines(True))
            ns = run_cell(SCALE_DECORATOR + text, {})
            return source.source_digest(ns["C"].f.__wrapped__)
        return source.source_digest(run_cell(SCALE_DECORATOR + text, {})["f"].__wrapped__)

    parse, dump = ast.parse, ast.dump
    ast.parse = ast.dump = None  # type: ignore[assignment]
    try:
        two = fp("2")
    finally:
        ast.parse, ast.dump = parse, dump
    assert two.startswith("code:")
    assert fp("3") != two
    assert fp("2", "# scale by two") == two
    method = fp("2", indent="    ")  # a method: read from its indented block too
    assert method.startswith("code:") and fp("2", "# by two", indent="    ") == method
    assert fp('"#"') != fp('"#x"')  # a # in a string is no comment


def test_strings_in_a_declaration_count_as_written() -> None:
    """Layout inside a string of a decorator is its value: not cleaned up as lines are."""
    from nbcache.keys import source

    def fp(text: str) -> str:
        cell = f"def deco(*a):\n    return lambda f: f\n\n@deco({text})\ndef f(x):\n    return x\n"
        return source.source_digest(run_cell(cell, {})["f"])

    assert fp('"""a\n\nb"""') != fp('"""a\nb"""')
    assert fp('"""a  \nb"""') != fp('"""a\nb"""')
    assert fp("'a',  # note\n") == fp("'a',\n")
    assert fp("f'{1}'").startswith("ast:")  # an f-string: read through its tree


def test_constants_count_the_same_under_every_hash_seed() -> None:
    """A set of strings compiled into a function (``x in {...}``) keys the same in every
    process, though its order follows the hash seed."""
    source = "def outer(x):\n    return x in {'alpha', 'beta', 'gamma', 'delta'}\n"
    code = NEW_PROCESS.format(tests=str(Path(__file__).parent.parent), source=source)
    seen = outputs_under_hash_seeds(code)
    assert len(seen) == 1
    assert seen == {fingerprint(_notebook(source)["outer"])}


def test_a_signature_over_lines_counts_whole() -> None:
    """A body on the signature's last line: the annotations on that line still count
    (a decorator that unwraps may read them), however the lines are cut."""
    from nbcache.keys import source

    def fp(annotation: str, comment: str = "") -> str:
        cell = f"def f(x,{comment}\n      y: {annotation}): return y\n"
        return source.source_digest(run_cell(cell, {})["f"])

    assert fp("int") != fp("float")
    assert fp("int") == fp("int", "  # the count")
