"""A function's code read without running it: its compiled code and the lines that
declare it (its source as an AST where those cannot be read, its bytecode alone where
there is no source), the globals it looks up and the modules its ``import``
statements load, and the streaming digest a fingerprint is made of.
"""

from __future__ import annotations

import ast
import dis
import inspect
import linecache
import sys
import textwrap
import types
from typing import Any

import xxhash

from .hashing import digest
from .modules import absolute_name, expand_dotted

__all__ = ["Accumulator", "declaration", "global_names", "imported_in_body", "source_digest"]


class Accumulator:
    """A streaming XXH3-128 over tagged parts: what a fingerprint is made of."""

    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()

    def tag(self, label: bytes) -> None:
        self._h.update(label)
        self._h.update(b"\x00")

    def text(self, value: str) -> None:
        data = value.encode("utf-8", "surrogatepass")
        self._h.update(len(data).to_bytes(8, "little"))
        self._h.update(data)

    def feed(self, value: Any, name: str) -> None:
        self.text(digest(value, name=name))

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())


_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"}
_GLOBAL_OPCODES = frozenset(dis.opmap[name] for name in _GLOBAL_OPS)
_LOAD_GLOBAL = dis.opmap["LOAD_GLOBAL"]
# From 3.11 LOAD_GLOBAL's argument carries a flag in its lowest bit (push NULL first).
_LOAD_GLOBAL_SHIFT = 1 if sys.version_info >= (3, 11) else 0
_IMPORT_NAME = dis.opmap["IMPORT_NAME"]
_LOAD_CONST = dis.opmap["LOAD_CONST"]
_CACHE_OPCODE = dis.opmap.get("CACHE", -1)


def _instructions(code: types.CodeType) -> list[tuple[int, int]]:
    """``(opcode, argument)`` of each instruction, without inline caches.

    What ``dis.get_instructions`` yields, reduced to the two numbers these scans
    read: dis builds an object per instruction with its positions and label, a
    tenth of a millisecond per function on the first hit of a fresh kernel.
    """
    last = _LAST_SCAN
    if last[0] is code:
        return last[1]
    raw = code.co_code
    found: list[tuple[int, int]] = []
    extended = 0
    for index in range(0, len(raw), 2):
        op = raw[index]
        arg = raw[index + 1] | extended
        if op == dis.EXTENDED_ARG:
            extended = arg << 8
            continue
        extended = 0
        if op != _CACHE_OPCODE:
            found.append((op, arg))
    _scanned(code, found)
    return found


# The code scanned last and its instructions: a fingerprint scans each code object for its
# globals, then for its imports. One tuple, replaced whole, so threads never see a mix.
_LAST_SCAN: tuple[types.CodeType | None, list[tuple[int, int]]] = (None, [])


def _scanned(code: types.CodeType, found: list[tuple[int, int]]) -> None:
    global _LAST_SCAN
    _LAST_SCAN = (code, found)


def global_names(code: types.CodeType) -> set[str]:
    """Names the code looks up as globals (``x.model`` does not make ``model`` one)."""
    names = code.co_names
    found = {
        names[arg >> _LOAD_GLOBAL_SHIFT if op == _LOAD_GLOBAL else arg]
        for op, arg in _instructions(code)
        if op in _GLOBAL_OPCODES
    }
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= global_names(const)
    return found


def source_digest(fn: types.FunctionType) -> str:
    """The function's code: comments, blank lines and layout do not count.

    Its compiled body (bytecode, constants and names, never line numbers) and the text
    of the lines that decorate and declare it, comments and blank lines taken out, when
    those lines can be read and cut without doubt; else its source as an AST; else
    its bytecode alone.  Reading the compiled body needs no parse of the source, which
    is most of a fresh kernel's first fingerprint.
    """
    declared = declaration(fn)
    if declared is not None:
        h = Accumulator()
        h.text(f"python-{sys.version_info[0]}.{sys.version_info[1]}")
        h.text(declared)
        parts: list[str] = []
        _code_parts(fn.__code__, parts)
        # Each part behind its length, so no two lists of parts join to the same text.
        h.text("".join(f"{len(part)}:{part}" for part in parts))
        return "code:" + h.hexdigest()
    tree = _block_tree(fn)
    if tree is None:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError, IndentationError):
            return "bytecode:" + _code_digest(fn.__code__)
    return "ast:" + xxhash.xxh3_128_hexdigest(ast.dump(tree, include_attributes=False).encode())


def declaration(fn: types.FunctionType) -> str | None:
    """The lines from the function's first decorator to its body, without comments, blank
    lines or the block's indentation; None when they cannot be told apart without doubt.

    What the compiled body does not hold: decorators (a ``functools.wraps`` one is
    unwrapped, so its arguments are known only here), annotations, default expressions.
    """
    code = fn.__code__
    if code.co_name != fn.__name__:
        return None
    found = _def_block(fn)
    if found is None:
        return None
    lines, start, indent, header = found
    if not _declares(lines[header].lstrip(), code.co_name):
        return None
    # The body starts at the first line an instruction of it comes from; a body on the
    # def line itself (``def f(x): return x``) leaves the def line as the declaration.
    body = min((line for _, _, line in code.co_lines() if line and line > header + 1), default=0)
    end = body - 1 if body else header + 1
    if end <= header or end > len(lines) or (body and not _closed(lines[header])):
        return None
    margin = lines[start][:indent]
    block = lines[start:end]
    if any(line.strip() and not line.startswith(margin) for line in block):
        return None
    return _without_comments("".join(line[indent:] for line in block))


def _declares(line: str, name: str) -> bool:
    for keyword in ("def ", "async def "):
        if line.startswith(keyword):
            rest = line[len(keyword) :].lstrip()
            return rest.startswith(name) and rest[len(name) :].lstrip().startswith("(")
    return False


def _closed(def_line: str) -> bool:
    """Whether the whole signature is on its ``def`` line: a body that starts on a later
    line could otherwise start on the signature's last line, which would be left out."""
    text = _without_comments(def_line.strip())
    return (
        text is not None
        and text.endswith(":")
        and not any(c in text for c in "'\"\\")
        and "lambda" not in text
        and all(text.count(a) == text.count(b) for a, b in ("()", "[]", "{}"))
    )


_PREFIX_CHARS = frozenset("rbuf")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _without_comments(text: str) -> str | None:
    """``text`` with each comment, trailing space and blank line taken out, each string
    kept whole; None for an f-string (whose nested quotes this scan does not follow) or
    a string left open."""
    if "#" not in text and "'" not in text and '"' not in text and "\\" not in text:
        return "\n".join(kept for line in text.splitlines() if (kept := line.rstrip()))
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "'\"":
            j = i
            while j > 0 and text[j - 1] in _NAME_CHARS:
                j -= 1
            prefix = text[j:i].lower()
            if "f" in prefix and len(prefix) <= 2 and set(prefix) <= _PREFIX_CHARS:
                return None  # an f-string
            quote = text[i : i + 3] if text[i : i + 3] == c * 3 else c
            k = i + len(quote)
            while k < n and text[k : k + len(quote)] != quote:
                if text[k] == "\\":
                    k += 1
                elif text[k] == "\n" and len(quote) == 1:
                    return None
                k += 1
            if k >= n:
                return None
            # On one line as its repr, so the clean-up of lines below never reaches into it.
            out.append(repr(text[i : k + len(quote)]))
            i = k + len(quote)
        elif c == "\\":
            out.append(text[i : i + 2])
            i += 2
        else:
            out.append(c)
            i += 1
    return "\n".join(kept for line in "".join(out).split("\n") if (kept := line.rstrip()))


def _code_parts(code: types.CodeType, out: list[str]) -> None:
    """What a code object runs, without where it came from (file and line numbers), as
    text parts: hashed in one call, not a hash update for each of dozens of parts."""
    out.append(code.co_name)
    out.append(getattr(code, "co_qualname", code.co_name))
    shape = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
    out.append(repr(shape))
    out.append(code.co_code.hex())
    out.append(getattr(code, "co_exceptiontable", b"").hex())
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        out.append("\x00".join(names))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.append("<code>")
            _code_parts(const, out)
        else:
            out.append(_constant(const))


_SCALARS = (int, float, complex, str, bytes, bool, type(None), type(...))


def _constant(value: Any) -> str:
    """A compiled constant as text that is the same in every process (a frozenset's items
    sorted: their order follows the per-process string hash seed)."""
    kind = type(value)
    if kind in _SCALARS:
        return f"{kind.__name__}:{value!r}"
    if kind is tuple:
        return "(" + ",".join(map(_constant, value)) + ")"
    if kind is frozenset:
        return "{" + ",".join(sorted(map(_constant, value))) + "}"
    return f"{kind.__name__}#{digest(value)}"


def _block_tree(fn: types.FunctionType) -> ast.Module | None:
    """The ``def`` block at the function's first line, cut by indentation, or None.

    ``inspect.getsource`` tokenizes, and compiling tokenize's patterns costs a
    fresh process 5 ms; most functions end where their indentation does.  Any
    doubt (a lambda, a string or bracket that spans the cut, another name)
    returns None and the caller asks inspect.
    """
    found = _def_block(fn)
    if found is None:
        return None
    lines, start, indent, header = found
    end = header + 1
    while end < len(lines):
        text = lines[end]
        stripped = text.strip()
        if stripped and not stripped.startswith("#") and len(text) - len(text.lstrip()) <= indent:
            break
        end += 1
    try:
        block = "".join(lines[start:end])
        tree = ast.parse(textwrap.dedent(block) if indent else block)
    except (SyntaxError, ValueError):
        return None
    body = tree.body
    if len(body) != 1 or not isinstance(body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    if body[0].name != fn.__name__ or bool(body[0].decorator_list) != (header > start):
        return None
    return tree


def _def_block(fn: types.FunctionType) -> tuple[list[str], int, int, int] | None:
    """Where ``fn``'s block starts in its file's lines: the lines, the index of its first
    line (a decorator or the ``def``), that line's indentation and the ``def`` line's
    index; None for a lambda or when the lines are not there."""
    code = fn.__code__
    if code.co_name == "<lambda>":
        return None
    lines = linecache.getlines(code.co_filename, fn.__globals__)
    start = code.co_firstlineno - 1
    if not 0 <= start < len(lines):
        return None
    indent = len(lines[start]) - len(lines[start].lstrip())
    header = _def_line(lines, start, indent)
    return None if header is None else (lines, start, indent, header)


_DECORATOR_LINES = 50  # more lines of decorators than this: ask inspect


def _def_line(lines: list[str], start: int, indent: int) -> int | None:
    """The index of the ``def`` line that ``start`` opens: ``start`` itself, or the
    first ``def`` at the same indentation after the decorators that begin there.

    A decorated function's code starts at its first decorator, and the block is cut
    by indentation from its ``def``; a decorator whose arguments span lines is read
    through, and the parse that follows proves the cut.
    """
    first = lines[start].lstrip()
    if not first.startswith("@"):
        return start
    for index in range(start + 1, min(len(lines), start + _DECORATOR_LINES)):
        text = lines[index]
        stripped = text.lstrip()
        if len(text) - len(stripped) == indent and stripped.startswith(("def ", "async def ")):
            return index
    return None


def imported_in_body(code: types.CodeType, package: str) -> set[str]:
    """Absolute names of the modules that ``import`` statements in the code load."""
    found: set[str] = set()
    instructions = _instructions(code)
    for index, (op, arg) in enumerate(instructions):
        if op != _IMPORT_NAME:
            continue
        # IMPORT_NAME follows LOAD_CONST level and LOAD_CONST fromlist.
        level = _const_before(code, instructions, index - 2) or 0
        fromlist = _const_before(code, instructions, index - 1)
        target = code.co_names[arg]
        name = "." * int(level or 0) + target
        absolute = absolute_name(name, package) if level else target
        if not absolute:
            continue
        found.update(expand_dotted(absolute))
        for item in fromlist or ():
            if item != "*":
                found.add(f"{absolute}.{item}")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= imported_in_body(const, package)
    return found


def _const_before(code: types.CodeType, instructions: list[tuple[int, int]], index: int) -> Any:
    if index < 0 or instructions[index][0] != _LOAD_CONST:
        return None
    return code.co_consts[instructions[index][1]]


def _code_digest(code: types.CodeType) -> str:
    """Where no source exists: bytecode, constants and names (specific to this Python)."""
    h = Accumulator()
    h.text(f"python-{sys.version_info[0]}.{sys.version_info[1]}")
    h.text(code.co_code.hex())
    h.feed(list(code.co_names), "co_names")
    h.feed(list(code.co_varnames), "co_varnames")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            h.text(_code_digest(const))
        else:
            h.feed(const, "co_consts")
    return h.hexdigest()
