"""Griffe extension: Sphinx roles in keypoints' docstrings become links in the API reference.

The docstrings cross-reference with Sphinx roles (``:func:`detect```, ``:class:`~x.Features```),
which Markdown would show as they are. Each role becomes the object's name in code, linked to
its entry when the site documents that object (an *optional* mkdocs-autorefs reference: a
target the site does not render stays plain code, without a warning).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|exc|obj|const):`(?P<body>[^`]+)`")
TITLED = re.compile(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>$")


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path ``target`` names in the scope of ``obj``, or None."""
    if target.startswith("keypoints."):
        return target
    head, _, rest = target.partition(".")
    try:
        path = obj.resolve(head)
    except Exception:  # noqa: BLE001 - griffe's NameResolutionError and friends: no link
        return None
    return f"{path}.{rest}" if rest else path


def _replace(obj: griffe.Object, match: re.Match) -> str:
    body = match["body"].strip()
    titled = TITLED.match(body)
    if titled:
        title, target = titled["title"], titled["target"].lstrip("~")
    else:
        target = body.lstrip("~")
        title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
    path = _resolve(obj, target)
    code = f"<code>{title}</code>"
    return code if path is None else f'<autoref identifier="{path}" optional>{code}</autoref>'


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        """Walk the package's objects (not aliases) and rewrite their docstrings."""
        todo: list[griffe.Object] = [pkg]
        while todo:
            obj = todo.pop()
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = ROLE.sub(lambda m, o=obj: _replace(o, m),
                                               obj.docstring.value)  # fmt: skip
            todo.extend(m for m in obj.members.values() if not m.is_alias)

    def on_package_loaded(self, *, pkg: griffe.Module, **kwargs) -> None:
        """The same hook under its griffe 1.x name."""
        self.on_package(pkg=pkg, **kwargs)
