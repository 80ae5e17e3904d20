"""Every code block of the README and of the documentation (``docs/**/*.md``) runs or parses.

- Python (```` ```python ````): the blocks of one page run **in order, as one script** (so a
  block may use what an earlier block of the same page defined), in a subprocess whose working
  folder is a fresh temporary folder holding copies of ``examples/`` and ``hubconf.py``. The Hub
  is a local cache with ``HF_HUB_OFFLINE=1``, filled with stand-in weights (a random SuperPoint
  for ``magic-leap-community/superpoint``, a random LightGlue for
  ``ETH-CVG/lightglue_superpoint``); ``KEYPOINTS_CACHE`` is a temporary folder. Before each block
  the script prints ``--- PAGE block N (line L)`` on stderr, so a failure names the block. The
  number of blocks per page is pinned in :data:`PYTHON_BLOCKS` (a dropped or added block is
  noticed), and every picture or file a block saves must exist afterwards.
- Shell (```` ```bash ````, ``console``, ``sh``): each ``keypoints ...`` (or ``$ keypoints ...``)
  line, backslash continuations joined and ``#`` comments dropped, is **parsed** by the command
  line itself (``keypoints.cli.cli``: the chain of subcommands resolved and each context made
  with ``resilient_parsing=False``), without running, so a renamed or removed command or option,
  a bad option value, or a missing argument fails. The cheap commands of :data:`RUN` are also
  **run**, and must exit with 0. The others are parse-checked only: those that need the
  evaluation datasets, the Oxford set or other data (``eval homography``, ``extract`` and
  ``sfm`` of photo folders, ``colmap``), minutes (benchmarks, ``sfm`` on 216 images), a network
  (``download`` of weights) or a Ray cluster. ``python SCRIPT.py`` lines: the script exists.
- References: every name of ``keypoints.__all__`` has a ``::: keypoints.NAME`` directive in
  ``docs/api/``, every directive and listed member resolves, and ``docs/cli.md`` rendered by
  mkdocs-click shows every command (walked recursively) with every option.
- The site: ``mkdocs build --strict`` succeeds and writes the key pages (slow).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest
import torch
from conftest import ROOT, random_superpoint
from test_weights import fill_hub_cache

import keypoints
from keypoints.cli import cli
from keypoints.cli.options import VERBOSITY

LIGHTGLUE_REPO = "ETH-CVG/lightglue_superpoint"
PAGES = [ROOT / "README.md"] + sorted(
    p for p in (ROOT / "docs").rglob("*.md") if "_tools" not in p.relative_to(ROOT).parts
)

#: Python blocks per page (None: the page's owner does not pin them; docs/demo.md is written by
#: the owner of ``keypoints demo``). Pages under docs/api/ hold directives only: 0.
PYTHON_BLOCKS = {
    "README.md": 3,
    "docs/index.md": 0,
    "docs/getting-started.md": 2,
    "docs/demo.md": 1,
    "docs/coming-from-transformers.md": 2,
    "docs/coming-from-others.md": 5,
    "docs/models.md": 2,
    "docs/matching.md": 4,
    "docs/evaluation.md": 1,
    "docs/bulk.md": 1,
    "docs/speed.md": 0,
    "docs/robustness.md": 0,
    "docs/coordinates.md": 1,
    "docs/cli.md": 0,
}

#: Commands of the pages that are run (cheap: the bundled models on the example images), with
#: the files each must write, relative to its working folder.
RUN = {
    "keypoints --version": [],
    "keypoints --help": [],
    "keypoints detect --help": [],
    "keypoints models": [],
    "keypoints presets": [],
    "keypoints download --list": [],
    "keypoints download --datasets": [],
    "keypoints detect examples/cats.png -o out/": ["out/cats.npz", "out/cats.png"],
    "keypoints match examples/cats.png examples/cats_warped.jpg -m sift --verify homography": [],
}

FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
SHELLS = ("bash", "console", "sh", "shell")
#: What the Python blocks save (``fig.savefig("x.png")``, ``image.save(...)``, ``cv2.imwrite``).
SAVED = re.compile(r"""(?:savefig|\.save|imwrite)\(\s*["']([^"']+)["']""")


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path, languages: tuple[str, ...]) -> list[tuple[int, str]]:
    """``(line, code)`` of each fenced block of ``page`` in one of ``languages``."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m["code"])
        for m in FENCE.finditer(text)
        if m["lang"] in languages
    ]


def command_lines(page: Path) -> list[tuple[int, str]]:
    """``(line, command)``: the shell lines of ``page``, continuations joined, ``$ `` dropped."""
    found = []
    for start, code in blocks(page, SHELLS):
        joined, first = "", None
        for offset, raw in enumerate(code.splitlines()):
            line = raw.strip()
            line = line[2:] if line.startswith("$ ") else line
            first = start + 1 + offset if not joined else first
            joined = f"{joined} {line[:-1]}" if line.endswith("\\") else f"{joined} {line}"
            if not line.endswith("\\"):
                if joined.strip():
                    found.append((first, " ".join(joined.split())))
                joined = ""
    return found


def keypoints_commands(page: Path) -> list[tuple[int, str]]:
    return [(n, c) for n, c in command_lines(page) if c.split()[0] == "keypoints"]


def parse_command(line: str) -> click.Context:
    """Parse a ``keypoints ...`` line with the real command line, without running it.

    Raises the click exception a user would see (no such command or option, bad value, missing
    argument); ``--help`` and ``--version`` end in ``click.exceptions.Exit`` with code 0.
    """
    args = shlex.split(line, comments=True)[1:]
    command: click.Command = cli
    name, parent = "keypoints", None
    level = VERBOSITY["level"]
    with warnings.catch_warnings():  # -q / -v change the warning filters when parsed
        try:
            while True:
                ctx = command.make_context(name, list(args), parent=parent)
                if not isinstance(command, click.Group):
                    return ctx
                rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
                if not rest:
                    return ctx
                found, command, args = command.resolve_command(ctx, rest)
                if command is None:
                    raise click.UsageError(f"no such command {rest[0]!r}")
                name, parent = found or rest[0], ctx
        finally:
            VERBOSITY["level"] = level


def commands_of(group: click.Command, path: str = "keypoints"):
    """``(path, command)`` of ``group`` and of every subcommand, recursively."""
    yield path, group
    if isinstance(group, click.Group):
        for name, sub in sorted(group.commands.items()):
            yield from commands_of(sub, f"{path} {name}")


def stand_in_lightglue(directory: Path, cache: Path) -> None:
    """Random LightGlue weights in the layouts the examples load.

    A transformers folder (with a random SuperPoint) for the Hub id, and a release-named file of
    cvg's ALIKED weights in keypoints' download cache. Final projections are a scaled identity so
    that similar descriptors match.
    """
    from keypoints.hf_lightglue import (
        LightGlueConfig,
        LightGlueForKeypointMatching,
        LightGlueImageProcessor,
    )
    from keypoints.models.lightglue import LightGlueMatcher

    torch.manual_seed(0)
    # the released checkpoint's detector settings are 2048 keypoints, threshold 0.0005
    detector = {"max_keypoints": 1024, "keypoint_threshold": 0.0005}
    model = LightGlueForKeypointMatching(LightGlueConfig(keypoint_detector_config=detector))
    model.keypoint_detector.load_state_dict(random_superpoint().state_dict())
    aliked = LightGlueMatcher(input_dim=128)
    with torch.no_grad():
        for net in (model, aliked):
            for layer in net.match_assignment_layers:
                layer.final_projection.weight.copy_(8 * torch.eye(256))
    model.save_pretrained(directory)
    LightGlueImageProcessor().save_pretrained(directory)
    cache.mkdir()
    torch.save(aliked.state_dict(), cache / "aliked_lightglue_v0-1_arxiv.pth")


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory, random_checkpoint) -> dict[str, str]:
    """The environment the examples run in: the Hub offline, served from stand-in weights."""
    root = tmp_path_factory.mktemp("docs_env")
    fill_hub_cache(root / "hub", random_checkpoint)
    stand_in_lightglue(root / "lightglue", root / "cache")
    fill_hub_cache(root / "hub", root / "lightglue", LIGHTGLUE_REPO)
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(root / "hub"),
        "KEYPOINTS_CACHE": str(root / "cache"),
        "MPLBACKEND": "Agg",
    }


def workdir(path: Path) -> Path:
    """A working folder with the examples, as the pages' relative paths expect."""
    shutil.copytree(ROOT / "examples", path / "examples")
    shutil.copy(ROOT / "hubconf.py", path / "hubconf.py")  # torch.hub.load(".", ...)
    return path


def test_every_page_is_registered():
    """A new page says how many Python blocks it has (docs/api/ pages: none)."""
    pages = {page_id(p) for p in PAGES if not page_id(p).startswith("docs/api/")}
    assert pages == set(PYTHON_BLOCKS), "add the page to PYTHON_BLOCKS"
    for page in PAGES:
        if page_id(page).startswith("docs/api/"):
            assert blocks(page, ("python",)) == [], page_id(page)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_block_count(page):
    expected = PYTHON_BLOCKS.get(page_id(page), 0)
    if expected is not None:
        assert len(blocks(page, ("python",))) == expected


PYTHON_PAGES = [p for p in PAGES if blocks(p, ("python",))]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=page_id)
def test_python_blocks_run(page, docs_env, tmp_path):
    found = blocks(page, ("python",))
    assert found, "a page listed here has code to run"
    script = ["import sys as _sys\n"]
    for i, (line, code) in enumerate(found, 1):
        script.append(f"print('--- {page_id(page)} block {i} (line {line})', file=_sys.stderr)\n")
        script.append(code)
    cwd = workdir(tmp_path)
    (cwd / "page.py").write_text("".join(script))
    result = subprocess.run(
        [sys.executable, "page.py"], cwd=cwd, env=docs_env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-6000:]
    assert result.stderr.count(f"--- {page_id(page)} block") == len(found)
    for name in SAVED.findall("".join(code for _, code in found)):
        assert (cwd / name).stat().st_size > 0, name
    if any('print(f"Keypoints: {keypoints}")' in code for _, code in found):
        assert "Keypoints: tensor([" in result.stdout  # the guide prints what it found


COMMAND_PAGES = [p for p in PAGES if keypoints_commands(p)]


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=page_id)
def test_command_lines_parse(page, tmp_path, monkeypatch):
    """Each ``keypoints ...`` line of the page is accepted by the command line as written."""
    monkeypatch.chdir(workdir(tmp_path))  # relative paths as in the pages
    failures = []
    for line, command in keypoints_commands(page):
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # --help prints
                parse_command(command)
        except click.exceptions.Exit as exc:  # --help, --version
            if exc.exit_code:
                failures.append(f"line {line}: {command}: exit code {exc.exit_code}")
        except click.ClickException as exc:
            failures.append(f"line {line}: {command}: {exc.format_message()}")
    assert not failures, "\n".join(failures)


def test_parse_command_refuses_what_the_cli_refuses():
    """The check is not vacuous: renamed commands, unknown options and bad values fail."""
    for bad in (
        "keypoints detcet examples/cats.png",
        "keypoints detect examples/cats.png --max-keypoint 10",
        "keypoints detect examples/cats.png --resize 640,480",
        "keypoints eval homography",
        "keypoints colmap f.h5 m.h5 --database db.db [--image-dir x]",
    ):
        with pytest.raises(click.ClickException):
            parse_command(bad)
    assert parse_command("keypoints eval homography data --models sift").params["models"] == "sift"


def test_python_scripts_named_in_shell_blocks_exist():
    for page in PAGES:
        for line, command in command_lines(page):
            words = shlex.split(command, comments=True)
            if words and words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
                assert (ROOT / words[1]).is_file(), f"{page_id(page)}:{line}: {words[1]}"


def test_run_commands_are_in_the_pages():
    shown = {
        shlex.join(shlex.split(command, comments=True))
        for page in PAGES
        for _, command in keypoints_commands(page)
    }
    assert set(RUN) <= shown, set(RUN) - shown


@pytest.mark.parametrize("command", list(RUN))
def test_cheap_commands_run(command, docs_env, tmp_path):
    cwd = workdir(tmp_path)
    args = shlex.split(command, comments=True)[1:]
    result = subprocess.run(
        [sys.executable, "-m", "keypoints", *args], cwd=cwd, env=docs_env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip()
    for name in RUN[command]:
        assert (cwd / name).stat().st_size > 0, name


def api_directives() -> dict[str, list[str]]:
    """``{target: [listed members]}`` of the ``::: target`` directives in docs/api/."""
    found: dict[str, list[str]] = {}
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        parts = re.split(r"^::: ", text, flags=re.M)[1:]
        for part in parts:
            target, _, rest = part.partition("\n")
            options = re.match(r"((?:[ \t]+\S.*\n?)*)", rest)
            body = options.group(1) if options else ""
            members = re.findall(r"^\s+- (\S+)\s*$", body.split("members:", 1)[1], re.M) if (
                "members:" in body) else []  # fmt: skip
            assert target.strip() not in found, f"{target} documented twice"
            found[target.strip()] = members
    return found


def resolve(path: str):
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def test_api_reference_documents_every_public_name():
    directives = api_directives()
    missing = [n for n in keypoints.__all__ if f"keypoints.{n}" not in directives]
    assert not missing, f"add ::: keypoints.NAME to a page of docs/api/ for {missing}"
    for target, members in directives.items():
        resolve(target)
        for member in members:
            resolve(f"{target}.{member}")


def test_cli_reference_shows_every_command_and_option():
    """docs/cli.md, rendered as the site renders it, has every command with every option."""
    markdown = pytest.importorskip("markdown")
    pytest.importorskip("mkdocs_click", reason="the docs dependencies are not installed")
    pytest.importorskip("pymdownx", reason="the docs dependencies are not installed")
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    html = markdown.markdown(text, extensions=["mkdocs-click", "pymdownx.superfences"])
    sections = {}
    for section in re.split(r"<h\d[^>]*>", html):
        usage = re.search(r"<code>(keypoints(?: [\w-]+)*) \[OPTIONS\]", section)
        if usage:
            sections[usage[1]] = section
    for path, command in commands_of(cli):
        assert path in sections, f"{path} is missing from the CLI reference"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in [*param.opts, *param.secondary_opts]:
                    assert opt in sections[path], f"{path} {opt}"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    """The site builds with no warning (broken links, anchors, docstrings) and holds the pages."""
    pytest.importorskip("mkdocs", reason="the docs dependencies are not installed")
    out = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-6000:]
    for page in PAGES[1:]:  # docs/x.md -> x/index.html, docs/api/index.md -> api/index.html
        relative = page.relative_to(ROOT / "docs").with_suffix("")
        folder = relative.parent if relative.name == "index" else relative
        assert (out / folder / "index.html").is_file(), relative
    for picture in ("cats_matches.jpg", "cats_keypoints.png", "lightglue_matches.jpg"):
        assert (out / "examples" / picture).is_file()
    cli_page = (out / "cli" / "index.html").read_text(encoding="utf-8")
    for path, _ in commands_of(cli):
        assert f"{path} [OPTIONS]" in cli_page, path
    api = "".join(p.read_text(encoding="utf-8") for p in (out / "api").rglob("*.html"))
    for name in keypoints.__all__:
        assert f'id="keypoints.{name}"' in api, name
