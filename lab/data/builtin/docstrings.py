"""Offline conversation dataset built from the docstrings of installed packages.

Stand-in for mlabonne/FineTome-100k when the Hugging Face Hub is unreachable: real, human-written technical
text turned into short, consistently formatted tasks that a small model can learn from a few hundred examples
and that ROUGE can score (the last assistant turn is the reference, the earlier turns are the input).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
import re
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType

from lab.core.config import BuiltinConfig, TaskWeights
from lab.core.errors import DataError
from lab.data.builtin.docparse import ParsedDoc, cap_words, fit_words, parse_docstring, sentences

# Explicit submodules for big packages: a pkgutil walk would import deprecated, internal or slow modules
# (numpy.distutils, numpy.matlib, pandas.core...). Other packages get their public top-level submodules.
SUBMODULES: dict[str, tuple[str, ...]] = {
    "numpy": ("char", "emath", "fft", "lib.stride_tricks", "linalg", "ma", "polynomial", "random", "rec", "strings"),
    "pandas": ("api.extensions", "api.types", "errors", "plotting"),
}
# The builtin dataset's documentation domain, beside lab.data.builtin.code's "code" and lab.data.builtin.math's
# "math": one source per domain, so proportions and per-source scores are by domain (the package is
# the first part of each row's id).
SOURCE = "docs"
SKIP_MODULES = (".tests", "._", "conftest", "testing", "__main__")
MAX_PARAMS = 6  # parameters quoted or listed per object: longer lists are truncated, not dropped

# Container names masked before dedup, so pandas' templated docstrings that differ only in "Series" and
# "DataFrame" (and numpy's array / masked-array twins) collapse; a generic leading verb likewise.
_MASK = re.compile(r"\b(data ?frames?|series|(multi ?)?index(es)?|frames?|((nd|masked) ?)?arrays?|objects?)\b")
_VERB = re.compile(r"^(returns?|gets?|computes?) ")
_STOPWORDS = {"a", "an", "the", "of", "in", "on", "to", "for", "and", "or", "is", "be", "this"}

def _short_answer(doc: ParsedDoc) -> str:
    """The summary paragraph's first sentence or two; one more sentence when that is very short."""
    answer = cap_words(doc.paragraphs[0], 45)
    extra = sentences(doc.paragraphs[1])[0] if len(doc.paragraphs) > 1 else ":"
    if len(answer.split()) < 15 and len(f"{answer} {extra}".split()) <= 50 and not extra.endswith(":"):
        answer = f"{answer} {extra}"
    return answer


def _param_list(short: str, params: list[tuple[str, str, str]]) -> str:
    """The one answer format for parameters: "`f` takes:" then "- `name`: first sentence" lines."""
    lines = []
    for name, _, desc in params:
        desc = re.split(r" [*-] ", desc)[0].lstrip("*- ") or desc  # text before a bullet list
        lines.append(f"- `{name}`: {cap_words(sentences(desc)[0], 25)}")
    return f"`{short}` takes:\n" + "\n".join(lines)


def _render_params(doc: ParsedDoc, max_words: int) -> tuple[str, list[tuple[str, str, str]]]:
    """The first parameters as numpydoc text ("name : type" + indented description), up to `max_words`."""
    blocks = [f"{name} : {type_}\n    {cap_words(desc, 60)}" for name, type_, desc in doc.params[:MAX_PARAMS]]
    blocks = fit_words([block.replace(" : \n", "\n") for block in blocks], max_words)
    return "\n".join(blocks), doc.params[: len(blocks)]


def _fraction(qualname: str, salt: str) -> float:
    """A stable number in [0, 1) from the id; Python's hash() is salted per process."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{qualname}".encode()).digest()[:8], "big") / 2**64


def _pick_task(qualname: str, doc: ParsedDoc, closed_share: float, task_weights: TaskWeights) -> str:
    """Closed-book with probability `closed_share`, else one of the open-book tasks the docstring
    supports, drawn with `task_weights`."""
    weights = {"summary": task_weights.summary, "params": task_weights.params, "examples": task_weights.examples}
    long_enough = len(" ".join(doc.paragraphs[1:]).split()) >= 20
    supported = {"summary": long_enough, "params": bool(doc.params), "examples": bool(doc.examples)}
    open_tasks = [task for task in weights if supported[task] and weights[task] > 0]
    if not open_tasks or _fraction(qualname, "closed") < closed_share:
        return "closed"
    point = _fraction(qualname, "task") * sum(weights[t] for t in open_tasks)
    for task in open_tasks:
        point -= weights[task]
        if point < 0:
            return task
    return open_tasks[-1]


def make_conversation(qualname: str, doc: ParsedDoc, max_input_words: int, task: str) -> dict:
    """One conversation about one object, for `task` (closed, summary, params or examples)."""
    short, name = qualname.rsplit(".", 1)[-1], f"`{qualname}`"
    if task == "closed":
        turns = [f"What does {name} do?", cap_words(" ".join(doc.paragraphs), 60)]
        follow_ups = [
            ("What parameters does it take?", _param_list(short, doc.params[:MAX_PARAMS])) if doc.params else (),
            ("Can you show an example?", f"```python\n{doc.code}\n```") if doc.code else (),
        ]
        follow_ups = [f for f in follow_ups if f]
        point = _fraction(qualname, "follow-up")
        if follow_ups and point < 0.5:  # half the closed-book rows that can be get one follow-up turn
            turns += follow_ups[int(point * 4) % len(follow_ups)]
    elif task == "summary":
        context = "\n\n".join(fit_words([cap_words(p, max_input_words) for p in doc.paragraphs[1:]], max_input_words))
        turns = [f"Here is part of the documentation of {name}:\n\n{context}\n\n"
                 "Summarise what it does in one or two sentences.", _short_answer(doc)]
    elif task == "params":
        rendered, kept = _render_params(doc, max_input_words)
        turns = [f"Here is the Parameters section of the documentation of {name}:\n\n{rendered}\n\n"
                 "List each parameter with a one-line description.", _param_list(short, kept)]
    else:
        quoted = "\n".join(fit_words(doc.examples.splitlines(), max_input_words)).strip()
        turns = [f"Here are the examples from the documentation of {name}:\n\n{quoted}\n\n"
                 f"Explain what these examples show about {name}.",
                 f"They show how to use `{short}`. {_short_answer(doc)}"]
    messages = [{"role": ("user", "assistant")[i % 2], "content": turn.strip()} for i, turn in enumerate(turns)]
    return {"id": qualname, "source": SOURCE, "messages": messages}


def _quietly(call: Callable[..., object], *args: object) -> object:
    """`call(*args)` with warnings silenced, or None if it raises: a missing optional dependency (or a
    deprecated attribute) must neither crash the build nor print."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call(*args)
    except Exception:
        return None


def _import_package(package: str) -> ModuleType:
    """The package named in data.builtin.packages; DataError naming it when it does not import (a
    misspelled or missing package would otherwise give no rows, silently)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(package)
    except Exception as error:  # ModuleNotFoundError, or whatever the package raises while importing
        raise DataError(f"data.builtin.packages: {package!r} cannot be imported ({type(error).__name__}: "
                        f"{error}); check its spelling, or install it") from None


def _modules(package: str) -> list[ModuleType]:
    """The package itself plus its commonly used public submodules, in name order."""
    root = _import_package(package)
    names = [f"{package}.{sub}" for sub in SUBMODULES.get(package, ())]
    if package not in SUBMODULES and hasattr(root, "__path__"):
        names += [info.name for info in pkgutil.iter_modules(root.__path__, f"{package}.")]
    names = [n for n in sorted(names) if not any(s in n for s in SKIP_MODULES)]
    return [root] + [m for m in (_quietly(importlib.import_module, n) for n in names) if m is not None]


def _own(obj: object, package: str) -> bool:
    """Whether `obj` is defined in `package`; C accelerators (_functools) and os's posix/nt count."""
    module = getattr(obj, "__module__", None)
    return not isinstance(module, str) or module.split(".")[0].lstrip("_") in (package, "posix", "nt")


def _members(owner: object, names: Sequence[str]) -> list[tuple[str, object]]:
    public = sorted({n for n in names if isinstance(n, str) and not n.startswith("_")})
    return [(name, value) for name in public if (value := _quietly(getattr, owner, name)) is not None]


def _inherited(cls: type, name: str, doc: str, package: str, classes: set[int]) -> bool:
    """Whether `cls.name` belongs to another public class or repeats its class's or a foreign base's docstring."""
    owner = next((base for base in cls.__mro__ if name in vars(base)), cls)
    if doc == cls.__doc__ or (owner is not cls and id(owner) in classes):
        return True  # e.g. numpy.matrix.astype is listed once, as numpy.ndarray.astype
    return any(not _own(base, package) and getattr(getattr(base, name, None), "__doc__", None) == doc
               for base in cls.__mro__[1:])


def _collect(package: str) -> dict[str, object]:
    """Qualified name -> object: modules, their public functions and classes, and the classes' own members."""
    objects: dict[str, object] = {}
    for module in _modules(package):
        objects.setdefault(module.__name__, module)
        names = getattr(module, "__all__", None)
        for name, obj in _members(module, names if isinstance(names, (list, tuple)) else dir(module)):
            if (inspect.isclass(obj) or inspect.isroutine(obj) or type(obj).__name__ == "ufunc") and _own(obj, package):
                objects.setdefault(f"{module.__name__}.{name}", obj)
    classes = {id(obj) for obj in objects.values() if inspect.isclass(obj)}
    for qualname, cls in list(objects.items()):
        for attr, member in _members(cls, dir(cls)) if inspect.isclass(cls) else []:
            doc = getattr(member, "__doc__", None)
            if (isinstance(doc, str) and (inspect.isroutine(member) or inspect.isdatadescriptor(member))
                    and not inspect.isclass(member) and not _inherited(cls, attr, doc, package, classes)):
                objects.setdefault(f"{qualname}.{attr}", member)
    return objects


def _normalise(text: str, qualname: str) -> str:
    """Lowercase alphanumerics with container names and the object's own (and class's) name masked.

    "" when fewer than three content words survive: "Return the length of the Interval" would otherwise
    collide with every "the X of the Y".
    """
    text = _MASK.sub(" _ ", _VERB.sub("", text.lower()))
    for part in qualname.lower().split(".")[-2:]:
        text = re.sub(rf"\b{re.escape(part)}\b", " _ ", text)
    words = re.sub(r"[^a-z0-9_ ]", "", text).split()
    return "".join(words) if sum(w != "_" and w not in _STOPWORDS for w in words) >= 3 else ""


def build_docstring_conversations(builtin: BuiltinConfig) -> list[dict]:
    """One conversation per well-documented public object of `builtin.packages`, sorted by id.

    Rows are {"id": qualified name, "source": "docs", "messages": [user/assistant turns]}. An object
    is kept when its cleaned docstring has at least `builtin.min_words` words and neither its normalised summary
    nor its normalised text was seen before, visiting shallow names first (numpy.ediff1d before
    numpy.ma.ediff1d), then in name order. Open-book prompts quote at most `builtin.max_input_words` words of
    documentation. The task comes from a hash of the id, so the output depends only on the params and the
    Python and package versions.
    """
    min_words = builtin.min_words
    candidates: dict[str, object] = {}
    for package in builtin.packages:
        for qualname, obj in _collect(package).items():
            candidates.setdefault(qualname, obj)
    seen_objects: set[int] = set()  # every object stays referenced by `candidates`, so ids stay unique
    seen_keys: set[str] = set()
    rows = []
    for qualname in sorted(candidates, key=lambda q: (q.count("."), q)):
        obj = candidates[qualname]
        doc = getattr(obj, "__doc__", None)
        if id(obj) in seen_objects or not isinstance(doc, str) or len(doc.split()) < min_words:
            continue
        seen_objects.add(id(obj))
        if inspect.isclass(obj) and any(doc == getattr(base, "__doc__", None) for base in obj.__mro__[1:]):
            continue
        parsed = parse_docstring(doc)
        if parsed is None or len(parsed.text.split()) < min_words:
            continue
        keys = {"s:" + _normalise(parsed.paragraphs[0], qualname), "t:" + _normalise(parsed.text, qualname)}
        if keys & seen_keys:
            continue
        seen_keys |= keys - {"s:", "t:"}
        task = _pick_task(qualname, parsed, builtin.closed_share, builtin.task_weights)
        rows.append(make_conversation(qualname, parsed, builtin.max_input_words, task))
    return sorted(rows, key=lambda row: row["id"])
