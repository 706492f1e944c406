"""Offline code tasks built from the runnable examples in the docstrings of installed packages.

The `code` domain of the builtin dataset: "Show how to use `numpy.argsort` to get the indices that would sort an
array." answered with the docstring's first doctest as a plain Python code block. The answers are real,
maintainer-written code that parses, so a fine-tuned model can be checked for producing well-formed calls.
"""

from __future__ import annotations

import ast
import inspect
import random
import re

from lab.data.builtin.docparse import ParsedDoc, parse_docstring, sentences
from lab.data.builtin.docstrings import _collect

SOURCE = "code"
# Docstring summaries are imperative ("Return the ...") or third person ("Returns the ..."); the prompt needs the
# infinitive after "to". "Return" and "Get" read better as "get", which also covers "Returns True if ...".
_VERBS = {"return": "get", "returns": "get", "get": "get", "gets": "get", "compute": "compute",
          "computes": "compute"}
_ARTICLES = ("a", "an", "the")
_DETERMINERS = {*_ARTICLES, "this", "that", "these", "each", "all", "one", "two"}
# Summaries that open with a condition or a comparison ("If created from ...", "Like `find`, but ...") name no
# purpose; their objects are skipped rather than asked about in a broken sentence.
_CLAUSES = {"if", "for", "when", "like", "given", "note", "this", "these", "it", "see", "alias", "deprecated"}
_TRAILING_PUNCTUATION = ".:;!"
_NOT_THIRD_PERSON = ("ss", "us", "is", "as", "os")  # "Class", "Bonus", "Basis", "Pandas", "Kudos"


def _infinitive(word: str) -> str | None:
    """The base form of a known or third-person verb ("Returns" -> "get", "Calculates" -> "calculate", "Copies" ->
    "copy"); None for any other word."""
    lower = word.lower()
    if lower in _VERBS:
        return _VERBS[lower]
    if not word.istitle() or not lower.isalpha() or not lower.endswith("s") or lower.endswith(_NOT_THIRD_PERSON):
        return None
    if lower.endswith("ies"):
        return lower[:-3] + "y"
    if lower.endswith(("sses", "xes", "zes", "ches", "shes")):
        return lower[:-2]
    return lower[:-1]


def purpose(summary: str, is_class: bool) -> str | None:
    """What the object is for, as a phrase that follows "to": the summary's first sentence with its leading verb
    in the infinitive and its final punctuation dropped ("Returns the indices that would sort an array." ->
    "get the indices that would sort an array"); None when the sentence opens with a condition or a signature.

    Function summaries are imperative by convention ("Draw samples ..."); a leading article or hyphenated word
    ("Element-wise arc tangent ...") marks a noun phrase, asked as "get ...". Class summaries are mostly noun
    phrases ("Dict subclass for counting hashable items"), asked as "work with ...", unless a known or
    third-person verb leads them or the second word is a determiner ("Create a new ...").
    """
    first, *rest = sentences(summary)[0].rstrip(_TRAILING_PUNCTUATION).split(" ", 1)
    # Plain capitalised words are lowercased; "JSON", "NaN" and "BitGenerator" keep their case.
    lowered = first.lower() if first[1:] == first[1:].lower() else first
    if lowered.lower() in _CLAUSES or not re.fullmatch(r"[A-Za-z][\w'-]*", first):
        return None
    verb = _infinitive(first)
    if verb is None and not is_class and lowered not in _ARTICLES and "-" not in lowered:
        verb = lowered  # the imperative mood of a function summary
    if verb is None and is_class and rest and rest[0].split(" ", 1)[0] in _DETERMINERS:
        verb = lowered
    if verb is not None:
        return " ".join([verb, *rest])
    return " ".join(["work with" if is_class else "get", lowered, *rest])


def _output_comment(outputs: list[str]) -> list[str]:
    """A statement's expected output as one `# -> output` line; none when it spans more than one line."""
    return [f"# -> {outputs[0]}"] if len(outputs) == 1 else []


def doctest_to_code(doctest: str) -> str:
    """A doctest as plain Python: prompts removed, one-line outputs kept as `# -> output` comments on the line
    after their statement, longer outputs (tracebacks, printed tables) dropped."""
    code: list[str] = []
    outputs: list[str] = []
    in_statement = False  # a "..." line continues a statement only before any of its output
    for raw in doctest.splitlines():
        line = raw.strip()
        if line.startswith(">>>"):
            code += _output_comment(outputs)
            outputs, in_statement = [], True
            code.append(raw.lstrip()[4:])
        elif in_statement and (line == "..." or raw.lstrip().startswith("... ")):
            code.append(raw.lstrip()[4:])
        elif line.startswith("#"):  # a comment between examples, not output
            code += _output_comment(outputs)
            outputs, in_statement = [], False
            code.append(line)
        else:
            outputs.append(line)
            in_statement = False
    code += _output_comment(outputs)
    return "\n".join(line.rstrip() for line in code).strip()


def calls_name(tree: ast.AST, name: str) -> bool:
    """Whether the code calls `name` directly (`name(...)`) or as an attribute (`x.name(...)`)."""
    return any(isinstance(node, ast.Call) and (
        isinstance(node.func, ast.Name) and node.func.id == name
        or isinstance(node.func, ast.Attribute) and node.func.attr == name) for node in ast.walk(tree))


def make_code_conversation(qualname: str, doc: ParsedDoc, is_class: bool) -> dict | None:
    """One code task about one object, or None when its summary names no purpose, or its first doctest does not
    parse as Python or never calls the object (an example of `numpy.abs` that calls `np.absolute` would teach
    the wrong name)."""
    goal = purpose(doc.paragraphs[0], is_class)
    code = doctest_to_code(doc.code)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):  # IPython syntax, output that looks like code, null bytes
        return None
    if goal is None or not code or not calls_name(tree, qualname.rsplit(".", 1)[-1]):
        return None
    question = f"Show how to use `{qualname}` to {goal}."
    answer = f"```python\n{code}\n```"
    return {"id": f"code-{qualname}", "source": SOURCE,
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _candidates(packages: list[str]) -> dict[str, object]:
    """Qualified name -> object for the packages' public functions, classes and members (modules are not called,
    so they have no usage example of their own)."""
    objects: dict[str, object] = {}
    for package in packages:
        for qualname, obj in _collect(package).items():
            if not inspect.ismodule(obj):
                objects.setdefault(qualname, obj)
    return objects


def build_code_conversations(packages: list[str], min_words: int, max_examples: int | None, seed: int) -> list[dict]:
    """One code task per public object of `packages` whose docstring (at least `min_words` words once cleaned)
    has a doctest calling it, sorted by id.

    Objects are visited shallow names first (numpy.ediff1d before numpy.ma.ediff1d), then in name order; an object
    reached under two names, and an example already used for another object, are kept once, so no example is on
    both sides of the train/test split. With `max_examples`, that many rows are sampled with `seed`.
    """
    candidates = _candidates(packages)
    seen_objects: set[int] = set()  # every object stays referenced by `candidates`, so ids stay unique
    seen_answers: set[str] = set()
    rows = []
    for qualname in sorted(candidates, key=lambda q: (q.count("."), q)):
        obj = candidates[qualname]
        doc = getattr(obj, "__doc__", None)
        if id(obj) in seen_objects or not isinstance(doc, str) or ">>>" not in doc:
            continue
        parsed = parse_docstring(doc)
        if parsed is None or not parsed.code or len(parsed.text.split()) < min_words:
            continue
        row = make_code_conversation(qualname, parsed, inspect.isclass(obj))
        if row is None or row["messages"][1]["content"] in seen_answers:
            continue
        seen_objects.add(id(obj))
        seen_answers.add(row["messages"][1]["content"])
        rows.append(row)
    rows.sort(key=lambda row: row["id"])
    if max_examples is not None and max_examples < len(rows):
        rows = sorted(random.Random(seed).sample(rows, max_examples), key=lambda row: row["id"])
    return rows


def code_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks in `text`, for checking answers."""
    return re.findall(r"```python\n(.*?)\n```", text, flags=re.S)
