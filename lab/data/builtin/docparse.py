"""Docstring parsing and cleaning for the builtin dataset: numpydoc, Google and reST docstrings
into the summary, prose paragraphs, parameters and first example that the tasks are built from."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import docstring_parser
from docstring_parser import DocstringStyle

PARAM_KINDS = ("param", "parameter", "arg", "argument", "key", "keyword")
_SENTENCE = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<!\bcf\.)(?<!\bvs\.)(?<=[.!?])\s+(?=[A-Z0-9`(\"'])")
_SIGNATURE = re.compile(r"[\w.]+\(.*\)(\s*->.*)?", re.S)  # "add(x1, x2, /, out=None, ...)" atop C docstrings
_DIRECTIVE = re.compile(r"\s*\.\. (\[\w+\]|_[^:]+:|[\w:-]+::)")  # directives, footnotes, link targets
_RULE = re.compile(r"^(?=.*[=~^*#+-]{3})[=~^*#+|\s-]+$", re.M)  # reST title lines and table borders
_NUMPY_HEADER = re.compile(r"^(\w[\w ]*)\n-{3,}[ \t]*$", re.M)
_GOOGLE_HEADER = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Examples?|Attributes|Notes?):[ \t]*$", re.M)


@dataclass
class ParsedDoc:
    """The pieces of one cleaned docstring that the tasks are built from."""

    text: str  # the whole cleaned docstring
    paragraphs: list[str]  # prose paragraphs of the description, whitespace collapsed; [0] is the summary
    params: list[tuple[str, str, str]]  # (name, type, description) with a non-empty description
    examples: str  # the Examples section with a doctest in it, dedented; "" if none
    code: str  # the first doctest statements with their output; "" if none



def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text) if s] or [text]


def fit_words(items: list[str], max_words: int) -> list[str]:
    """The longest prefix of `items` with at most `max_words` words in all (at least the first item)."""
    total = 0
    for i, item in enumerate(items):
        total += len(item.split())
        if i and total > max_words:
            return items[:i]
    return items


def cap_words(text: str, max_words: int) -> str:
    """Whole sentences of `text` up to `max_words` words (at least the first one, word-cut if longer)."""
    parts = sentences(text)
    # A sentence ending in ":" introduces a list or code block that is not kept, so it ends the text.
    parts = parts[: next((i for i, s in enumerate(parts) if i and s.endswith(":")), None)]
    words = " ".join(fit_words(parts, max_words)).split()
    return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")


def _drop_directives(text: str) -> str:
    """Remove reST directive blocks (versionadded, deprecated, warning, math, plot...) and footnotes."""
    kept: list[str] = []
    block_indent = -1
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if block_indent >= 0 and (not line.strip() or indent > block_indent):
            continue
        block_indent = indent if _DIRECTIVE.match(line) else -1
        if block_indent < 0:
            kept.append(line)
    return "\n".join(kept)


def _clean(doc: str) -> str:
    """Dedent a docstring and strip reST/numpydoc markup, keeping its line structure."""
    text = inspect.cleandoc(doc).replace("\r", "")
    first, _, rest = text.partition("\n\n")
    text = _drop_directives(rest if _SIGNATURE.fullmatch(first.strip()) else text)
    # :func:`~a.b` -> `b`, :ref:`text <label>` -> `text`, :meth:`a.b` -> `a.b`
    text = re.sub(r":[\w:]+:`(~?)([^`<]*?)\s*(<[^>]*>)?`", lambda m: f"`{m[2].split('.')[-1] if m[1] else m[2]}`", text)
    text = re.sub(r"`([^`<]+?)\s*(<[^>]+>)?`_+", r"\1", text)  # links -> their text
    text = re.sub(r"\s*<https?://[^>]+>", "", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text).replace("\\*", "*")
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", re.sub(r"\s*\[\w+\]_", "", text))  # bold, footnote references
    text = re.sub(r"[ \t]*#\s*(doctest:.*|may vary|random)[ \t]*$", "", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _section(text: str, name: str) -> str:
    """The body of the numpydoc or Google section called `name` (or its singular), dedented."""
    for header in (_NUMPY_HEADER, _GOOGLE_HEADER):
        heads = list(header.finditer(text))
        for i, head in enumerate(heads):
            if head.group(1) in (name, name.rstrip("s")):
                return inspect.cleandoc(text[head.end() : heads[i + 1].start() if i + 1 < len(heads) else None])
    return ""


def _first_doctest(text: str, max_lines: int = 15) -> str:
    """The first run of doctest statements with their output: whole statements, up to `max_lines` lines."""
    units: list[list[str]] = []
    for line in inspect.cleandoc(text[text.find(">>>") :]).splitlines() if ">>>" in text else []:
        line = line.rstrip()
        if line.startswith(">>>"):
            units.append([line])
        elif units and line and not (units[-1][-1] == "" and line[0].isalpha()):
            units[-1].append("" if line.strip() == "<BLANKLINE>" else line)
        elif units and not line:
            units[-1].append("")  # ends the output; prose after it ends the run
        elif units:
            break
    kept: list[str] = []
    for unit in units:
        unit = [line for line in unit if line] or unit
        if kept and len(kept) + len(unit) > max_lines:
            break
        kept += unit
    return "\n".join(kept) if len(kept) <= 2 * max_lines else ""


def parse_docstring(doc: str) -> ParsedDoc | None:
    """Clean and split a raw docstring; None when it has no usable summary."""
    text = _clean(doc)
    # One explicit style instead of docstring_parser's AUTO, which parses every docstring four times.
    style = DocstringStyle.REST  # also right for plain prose, which every style parses the same way
    if _NUMPY_HEADER.search(text):
        style = DocstringStyle.NUMPYDOC
    elif _GOOGLE_HEADER.search(text):
        style = DocstringStyle.GOOGLE
    try:
        parsed = docstring_parser.parse(text, style)
    except docstring_parser.ParseError:
        return None
    # Prose only: no indented literal blocks, doctests, titles, tables or "Example::" stubs.
    paragraphs = [
        " ".join(p.split())
        for p in re.split(r"\n\s*\n", parsed.description or "")
        if p.strip() and not p[0].isspace() and not p.startswith(">>>") and not _RULE.search(p)
        and not p.rstrip().endswith("::")
    ]
    paragraphs = [p if p[-1] in ".!?:" else p + "." for p in paragraphs]  # else joined paragraphs run on
    if not paragraphs or len(paragraphs[0].split()) < 3:
        return None
    params = [(p.arg_name, ", ".join(filter(None, [p.type_name, "optional" if p.is_optional else ""])),
               " ".join((p.description or "").split())) for p in parsed.params if p.args[0] in PARAM_KINDS]
    examples = _section(text, "Examples")
    examples = examples if ">>>" in examples and _first_doctest(examples) else ""
    code = _first_doctest(examples or text)
    return ParsedDoc(text, paragraphs, [p for p in params if p[2]], examples.replace("<BLANKLINE>", ""), code)

