"""MkDocs hooks: the pages link the repository's pictures and result tables where they are.

The Markdown under ``docs/`` links ``../examples/cats_matches.jpg`` and
``../benchmarks/results/pipeline.md``, which GitHub resolves from the repository root. For the
site, those files are added to the build under ``examples/`` and ``benchmarks/results/`` and
the links lose one ``../``, so that the files are kept once, in the repository, and work in
both places.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

#: Folders of the repository served with the site, and the files taken from each.
SHARED = {"examples": ("*.png", "*.jpg"), "benchmarks/results": ("*.md",)}
LINK = re.compile(r"\]\(((?:\.\./)*)\.\./(" + "|".join(map(re.escape, SHARED)) + r")/")


def on_files(files: Files, config) -> Files:
    """Add the shared files of the repository to the site's files."""
    root = Path(config.config_file_path).parent
    for folder, patterns in SHARED.items():
        for pattern in patterns:
            for path in sorted((root / folder).glob(pattern)):
                uri = f"{folder}/{path.name}"
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Links into the shared folders point one level up on GitHub, at the site's root here."""
    return LINK.sub(r"](\1\2/", markdown)
