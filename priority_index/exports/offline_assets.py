"""Render folium maps as single HTML files that work with no network.

folium links Leaflet, jQuery, Bootstrap, Font Awesome and plugin files from CDNs. This module
replaces those links with the same libraries read from installed packages (XStatic wheels and
folium's own templates), inlined into the page, and drops the ones our maps do not use
(Bootstrap, glyphicons, Font Awesome, awesome-markers). CSS ``url()`` images become data URIs and
Leaflet's default marker icon is pointed at data URIs, so nothing is fetched when the file is
opened. Element ids, random in folium, are renumbered in order of appearance so that the same map
always renders to the same bytes.

The only function that renders is :func:`render_offline`; :func:`remote_references` and
:func:`check_offline` inspect finished HTML.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import branca.element
import folium
import folium.elements

__all__ = [
    "OfflineAssetError",
    "check_offline",
    "remote_references",
    "render_offline",
]


class OfflineAssetError(RuntimeError):
    """A map needs a resource that cannot be embedded, or still points at the network."""


@dataclass(frozen=True)
class _Asset:
    """One library file shipped by an installed package."""

    package: str  # importable module whose BASE_DIR (or folder) holds the file
    relpath: str
    kind: str  # "js" or "css"


def _xstatic_dir(module: str) -> Path:
    mod = __import__(module, fromlist=["BASE_DIR"])
    return Path(mod.BASE_DIR)


def _folium_templates_dir(_: str) -> Path:
    return Path(folium.__file__).parent / "templates"


# folium's resource names (the first item of ``default_js`` / ``default_css`` pairs) mapped to a
# file of an installed package. XStatic-Leaflet 1.9.3.0 and XStatic-jQuery 3.7.1.1 are the very
# versions folium 0.20 links; XStatic-Leaflet-MarkerCluster 1.4.1 is newer than folium's 1.1.0
# and compatible with it.
_MC = "xstatic.pkg.leaflet_markercluster"
_ASSETS: dict[str, _Asset] = {
    "leaflet": _Asset("xstatic.pkg.leaflet", "leaflet.js", "js"),
    "leaflet_css": _Asset("xstatic.pkg.leaflet", "leaflet.css", "css"),
    "jquery": _Asset("xstatic.pkg.jquery", "jquery.min.js", "js"),
    "markerclusterjs": _Asset(_MC, "leaflet.markercluster.js", "js"),
    "markerclustercss": _Asset(_MC, "MarkerCluster.css", "css"),
    "markerclusterdefaultcss": _Asset(_MC, "MarkerCluster.Default.css", "css"),
    "leaflet-heat.js": _Asset("folium", "leaflet_heat.min.js", "js"),
}

# Resources folium links by default that these maps never use: no Bootstrap widgets, no
# glyphicon or Font Awesome icons (folium.Icon must not be used with offline maps).
_DROPPED = frozenset(
    {
        "bootstrap",
        "bootstrap_css",
        "glyphicons_css",
        "awesome_markers",
        "awesome_markers_css",
        "awesome_markers_font_css",
        "awesome_rotate_css",
    }
)

_SENTINEL = "offline-asset:"

# Leaflet's default marker images, set as data URIs once Leaflet has loaded.
_ICON_DEFAULT_JS = """L.Icon.Default.imagePath = '';
L.Icon.Default.mergeOptions({{
    iconUrl: '{icon}', iconRetinaUrl: '{icon2x}', shadowUrl: '{shadow}'
}});
"""


def _asset_path(asset: _Asset) -> Path:
    base = (
        _folium_templates_dir(asset.package)
        if asset.package == "folium"
        else _xstatic_dir(asset.package)
    )
    path = base / asset.relpath
    if not path.is_file():
        raise OfflineAssetError(f"{asset.package} does not ship {asset.relpath} (looked in {base})")
    return path


def _data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


_SOURCE_MAP = re.compile(r"^\s*//# sourceMappingURL=\S+\s*$", re.MULTILINE)
_CSS_SOURCE_MAP = re.compile(r"/\*# sourceMappingURL=.*?\*/", re.DOTALL)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")


def _css_with_data_uris(css: str, folder: Path) -> str:
    """Replace relative ``url()`` references of a stylesheet by data URIs of the files."""

    def repl(match: re.Match[str]) -> str:
        target = match.group(2).strip()
        if target.startswith(("data:", "#")):  # already inline, or an IE behaviour reference
            return match.group(0)
        if re.match(r"^[a-z]+:|^//", target, re.IGNORECASE):
            raise OfflineAssetError(f"stylesheet in {folder} refers to remote {target!r}")
        path = (folder / target.split("?")[0].split("#")[0]).resolve()
        if not path.is_file():
            raise OfflineAssetError(f"stylesheet in {folder} refers to missing {target!r}")
        return f'url("{_data_uri(path)}")'

    return _CSS_URL.sub(repl, _CSS_SOURCE_MAP.sub("", css))


@functools.cache
def _inline_tag(name: str) -> str:
    """The ``<script>`` or ``<style>`` element that replaces folium's link named ``name``."""
    asset = _ASSETS[name]
    path = _asset_path(asset)
    text = path.read_text(encoding="utf-8")
    if asset.kind == "css":
        return f"<style>\n{_css_with_data_uris(text, path.parent)}\n</style>"
    text = _SOURCE_MAP.sub("", text).replace("</script", "<\\/script")
    if name == "leaflet":
        images = path.parent / "images"
        text += "\n" + _ICON_DEFAULT_JS.format(
            icon=_data_uri(images / "marker-icon.png"),
            icon2x=_data_uri(images / "marker-icon-2x.png"),
            shadow=_data_uri(images / "marker-shadow.png"),
        )
    return f"<script>\n{text}\n</script>"


def _walk(element: branca.element.Element) -> Iterator[branca.element.Element]:
    """Every element of a branca tree, depth first, in child order (Figure parts included)."""
    stack = [element]
    while stack:
        node = stack.pop()
        yield node
        children = list(node._children.values())
        if isinstance(node, branca.element.Figure):
            children = [node.header, node.html, node.script, *children]
        stack.extend(reversed(children))


def _offline_links(pairs: list[tuple[str, str]], owner: str) -> list[tuple[str, str]]:
    kept = []
    for name, url in pairs:
        if name in _DROPPED:
            continue
        if name not in _ASSETS:
            raise OfflineAssetError(
                f"{owner} links {name!r} ({url}), which has no offline copy; "
                "use another element or add the asset to offline_assets._ASSETS"
            )
        kept.append((name, _SENTINEL + name))
    return kept


def _prepare(root: branca.element.Element) -> None:
    """Point every element's resource links at sentinels (instance attributes, never classes)."""
    for element in _walk(root):
        if isinstance(element, folium.elements.JSCSSMixin):
            owner = type(element).__name__
            element.default_js = _offline_links(list(element.default_js), owner)
            element.default_css = _offline_links(list(element.default_css), owner)


_SCRIPT_LINK = re.compile(r'<script src="' + re.escape(_SENTINEL) + r'([^"]+)"></script>')
_CSS_LINK = re.compile(
    r'<link rel="stylesheet" href="' + re.escape(_SENTINEL) + r'([^"]+)"\s*/?>',
)
_HEX_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def _renumber_ids(html: str, ids: set[str]) -> str:
    """Replace folium's random element ids by counters in order of first appearance."""
    numbers: dict[str, str] = {}

    def repl(match: re.Match[str]) -> str:
        token = match.group(0)
        if token not in ids:
            return token
        if token not in numbers:
            numbers[token] = f"{len(numbers) + 1:04d}"
        return numbers[token]

    return _HEX_ID.sub(repl, html)


class _RenderedText(branca.element.Element):
    """Text an element has already rendered, kept as it is.

    branca wraps every rendered header, body and script of a macro element in a new
    ``Element(text)``, which compiles the text as a Jinja template only to print it back: for
    pages carrying megabytes of GeoJSON that is a third of the build time, and any ``{{`` in
    the data would be evaluated. Jinja drops one trailing newline; so does this.
    """

    def __init__(self, template: str | None = None, template_name: str | None = None) -> None:
        super().__init__()
        text = template or ""
        self._text = text[:-1] if text.endswith("\n") else text

    def render(self, **kwargs: object) -> str:
        return self._text


@contextlib.contextmanager
def _rendered_text_kept() -> Iterator[None]:
    """While rendering, branca's wrapper elements keep text instead of compiling it."""
    original = branca.element.Element
    branca.element.Element = _RenderedText  # type: ignore[misc]
    try:
        yield
    finally:
        branca.element.Element = original  # type: ignore[misc]


def render_offline(m: folium.Map | branca.element.Figure) -> str:
    """Render a folium map to one self-contained, deterministic HTML page.

    Parameters
    ----------
    m
        The map (or its root Figure). Its elements' resource lists are rewritten in place, so
        render a map with this function only.

    Returns
    -------
    str
        The page, with Leaflet, jQuery and any plugin used inlined, unused CDN links removed,
        and element ids numbered in order of appearance.

    Raises
    ------
    OfflineAssetError
        If an element needs a library with no installed copy, or the page still refers to the
        network (see :func:`check_offline`).
    """
    root = m.get_root()
    _prepare(root)
    with _rendered_text_kept():
        html = root.render()
    # Elements may add children while rendering: walk again for the full set of ids.
    ids = {element._id for element in _walk(root)}
    html = _SCRIPT_LINK.sub(lambda match: _inline_tag(match.group(1)), html)
    html = _CSS_LINK.sub(lambda match: _inline_tag(match.group(1)), html)
    if _SENTINEL in html:
        raise OfflineAssetError("a resource link was rendered in an unexpected form")
    html = _renumber_ids(html, ids)
    check_offline(html)
    return html


_REMOTE = r"""(?:https?:)?//"""
_TAG_PATTERNS = (
    re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?(""" + _REMOTE + r"""[^"'\s>]*)""", re.I),
    re.compile(r"""<link\b[^>]*\bhref\s*=\s*["']?(""" + _REMOTE + r"""[^"'\s>]*)""", re.I),
    re.compile(
        r"""<(?:img|iframe|embed|source|audio|video)\b[^>]*\bsrc\s*=\s*["']?("""
        + _REMOTE
        + r"""[^"'\s>]*)""",
        re.I,
    ),
)
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style>", re.I | re.DOTALL)
_CSS_PATTERNS = (
    re.compile(r"""@import\s+(?:url\()?\s*["']?(""" + _REMOTE + r"""[^"')\s;]*)""", re.I),
    re.compile(r"""url\(\s*["']?(""" + _REMOTE + r"""[^"')\s]*)""", re.I),
)


def remote_references(html: str) -> list[str]:
    """List the network addresses an HTML page would load as it opens.

    Script and stylesheet links, images, frames and media, and ``@import`` and ``url()`` inside
    ``<style>`` blocks are looked at. Tile URL templates inside scripts
    (``https://tile.openstreetmap.org/{z}/{x}/{y}.png``) and links users click (``<a href>``)
    are not loads and are not listed.

    Parameters
    ----------
    html
        A rendered page.

    Returns
    -------
    list of str
        The addresses, in order of appearance (empty when the page is self-contained).
    """
    found = []
    for pattern in _TAG_PATTERNS:
        found.extend((match.start(1), match.group(1)) for match in pattern.finditer(html))
    for block in _STYLE_BLOCK.finditer(html):
        for pattern in _CSS_PATTERNS:
            found.extend(
                (block.start(1) + match.start(1), match.group(1))
                for match in pattern.finditer(block.group(1))
            )
    return [url for _, url in sorted(found)]


def check_offline(html: str) -> None:
    """Raise :class:`OfflineAssetError` if the page would load anything from the network.

    Parameters
    ----------
    html
        A rendered page.
    """
    remote = remote_references(html)
    if remote:
        listed = ", ".join(remote[:5]) + (" ..." if len(remote) > 5 else "")
        raise OfflineAssetError(f"map refers to {len(remote)} network resource(s): {listed}")
