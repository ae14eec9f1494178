"""The report page on a phone and in print: viewport, no fixed widths, figures that open full
size, wide tables that scroll, and dataset colours that stay distinguishable for 15+ datasets."""

from __future__ import annotations

import itertools
import math
import random
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_rgb

from builder.pipeline.report import BuildReport
from builder.report import _COLOURS, _CSS, _dataset_styles, write_report

# The 15 datasets of the demo store (the page tests check that the demo has exactly these).
DEMO_DATASETS = (
    "Angelidou", "Bacek2024", "Camargo2021", "Embry2018", "Gait120", "Grimmer",
    "Hu2018-ENABL3S", "K2MUSE", "Lencioni2019", "Macaluso2020", "Moghadam2023",
    "Moreira2021", "SIAT-LLMD", "VanCriekinge2023", "demo",
)  # fmt: skip
PHONE_WIDTH_PX = 360  # the narrowest common phone viewport (CSS pixels)
MIN_DELTA_E = 15.0  # CIEDE2000 between any two dataset colours (2.3 is just noticeable)
FIXED_WIDTH = re.compile(r"(?<![\w-])(?:min-)?width\s*:\s*([\d.]+)px", re.IGNORECASE)


# --- colour difference ----------------------------------------------------------------------


def cielab(colour: str) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB colour as matplotlib names it."""
    rgb = np.asarray(to_rgb(colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return (116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2]))


def ciede2000(lab1: tuple[float, float, float], lab2: tuple[float, float, float]) -> float:
    """CIEDE2000 colour difference (Sharma, Wu and Dalal 2005, kL = kC = kH = 1)."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_bar**7 / (c_bar**7 + 25**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360
    h2p = math.degrees(math.atan2(b2, a2p)) % 360
    dh = 0.0 if c1p * c2p == 0 else h2p - h1p
    dh = dh - 360 if dh > 180 else dh + 360 if dh < -180 else dh
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh / 2))
    l_bar, cp_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_bar = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        h_bar = (h1p + h2p) / 2
    else:
        h_bar = (h1p + h2p + (360 if h1p + h2p < 360 else -360)) / 2
    t = (
        1
        - 0.17 * math.cos(math.radians(h_bar - 30))
        + 0.24 * math.cos(math.radians(2 * h_bar))
        + 0.32 * math.cos(math.radians(3 * h_bar + 6))
        - 0.20 * math.cos(math.radians(4 * h_bar - 63))
    )
    rotation = 30 * math.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(cp_bar**7 / (cp_bar**7 + 25**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / math.sqrt(20 + (l_bar - 50) ** 2)
    s_c, s_h = 1 + 0.045 * cp_bar, 1 + 0.015 * cp_bar * t
    r_t = -math.sin(math.radians(2 * rotation)) * r_c
    return math.sqrt(
        (d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h)
    )


@pytest.mark.parametrize(
    ("lab1", "lab2", "expected"),
    [  # pairs 1, 7, 17 and 25 of Sharma, Wu and Dalal's (2005) test data
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ],
)
def test_the_colour_difference_matches_the_published_ciede2000_values(
    lab1: tuple[float, float, float], lab2: tuple[float, float, float], expected: float
) -> None:
    assert ciede2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)
    assert ciede2000(lab2, lab1) == pytest.approx(expected, abs=1e-4)


# --- dataset colours ------------------------------------------------------------------------


def _min_difference(colours: list[str]) -> tuple[float, str, str]:
    labs = {c: cielab(c) for c in colours}
    return min((ciede2000(labs[a], labs[b]), a, b) for a, b in itertools.combinations(colours, 2))


@pytest.mark.parametrize("n", [len(DEMO_DATASETS), len(_COLOURS)])
def test_every_dataset_gets_its_own_distinguishable_colour(n: int) -> None:
    names = [*DEMO_DATASETS, *(f"extra{i}" for i in range(n))][:n]
    styles = _dataset_styles(names)
    colours = [styles[name]["color"] for name in names]
    assert len(set(colours)) == n
    worst = _min_difference(colours)
    assert worst[0] > MIN_DELTA_E, worst
    white = cielab("white")
    assert min(ciede2000(cielab(c), white) for c in colours) > 20  # lines stand out on white
    assert {s["linestyle"] for s in styles.values()} == {"-"}  # colour alone tells them apart


def test_colours_follow_the_sorted_names_and_repeat_only_with_another_line_style() -> None:
    names = list(DEMO_DATASETS)
    shuffled = random.Random(0).sample(names, len(names))
    assert _dataset_styles(shuffled) == _dataset_styles(names) == _dataset_styles(names * 2)
    many = [f"d{i:02d}" for i in range(len(_COLOURS) + 5)]
    styles = _dataset_styles(many)
    pairs = {(s["color"], s["linestyle"]) for s in styles.values()}
    assert len(pairs) == len(many)  # colour or line style differs for every two datasets


# --- the page -------------------------------------------------------------------------------


def test_the_stylesheet_fits_a_phone() -> None:
    widths = [float(w) for w in FIXED_WIDTH.findall(_CSS)]
    assert all(w <= PHONE_WIDTH_PX for w in widths), widths
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", _CSS))
    img = next(body for selector, body in rules.items() if selector.strip() == "img")
    assert "max-width: 100%" in img and "height: auto" in img
    scroll = next(body for selector, body in rules.items() if selector.strip() == ".scroll")
    assert "overflow-x: auto" in scroll


class _Tags(HTMLParser):
    """Every start tag with its attributes and its open ancestors."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, dict[str, str]]] = []
        self.tags: list[tuple[str, dict[str, str], list[tuple[str, dict[str, str]]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values, list(self.open)))
        if tag not in self.VOID:
            self.open.append((tag, values))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID:
            assert self.open and self.open[-1][0] == tag, (tag, self.open[-3:])
            self.open.pop()

    def all(self, tag: str) -> list[tuple[dict[str, str], list[tuple[str, dict[str, str]]]]]:
        return [(attrs, parents) for t, attrs, parents in self.tags if t == tag]


@pytest.fixture(scope="module")
def page(
    demo_store: tuple[Path, BuildReport], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, _Tags]:
    index = write_report(str(demo_store[0]), tmp_path_factory.mktemp("report_page") / "out")
    tags = _Tags()
    tags.feed(index.read_text(encoding="utf-8"))
    tags.close()
    assert tags.open == []
    return index, tags


def test_the_page_has_a_viewport_and_no_fixed_width_wider_than_a_phone(
    page: tuple[Path, _Tags],
) -> None:
    _, tags = page
    viewports = [a for a, _ in tags.all("meta") if a.get("name") == "viewport"]
    assert [a["content"] for a in viewports] == ["width=device-width, initial-scale=1"]
    inline = " ".join(attrs.get("style", "") for _, attrs, _ in tags.tags)
    widths = [float(w) for w in FIXED_WIDTH.findall(inline)]
    assert all(w <= PHONE_WIDTH_PX for w in widths), widths
    sized = [(t, a["width"]) for t, a, _ in tags.tags if "width" in a]
    assert sized == [], sized  # no width attributes (tables, images)
    for _, parents in tags.all("table"):  # wide tables scroll inside their own box
        assert parents and parents[-1] == ("div", {"class": "scroll"}), parents[-1:]


def test_every_figure_opens_its_own_full_size_file(page: tuple[Path, _Tags]) -> None:
    index, tags = page
    images = tags.all("img")
    assert len(images) >= 3 + 2  # counts, coverage and at least one activity's curves
    for attrs, parents in images:
        assert parents and parents[-1][0] == "a", attrs["src"]
        link = parents[-1][1]["href"]
        assert link == attrs["src"] and attrs["alt"], (link, attrs)
        target = (index.parent / link).resolve()
        assert target.is_file() and target.is_relative_to(index.parent.resolve()), link


def test_the_legend_gives_the_demos_15_datasets_15_distinguishable_colours(
    demo_store: tuple[Path, BuildReport], page: tuple[Path, _Tags]
) -> None:
    ds = xr.open_zarr(demo_store[0])
    datasets = sorted({str(d) for d in ds["dataset"].values})
    assert datasets == sorted(DEMO_DATASETS)
    _, tags = page
    swatches = [a["style"] for a, _ in tags.all("span") if a.get("class") == "swatch"]
    colours = [s.removeprefix("background:") for s in swatches]
    styles = _dataset_styles(datasets)
    assert colours == [styles[d]["color"] for d in datasets]  # the figures' colours
    assert len(set(colours)) == 15 and _min_difference(colours)[0] > MIN_DELTA_E


# --- in a browser, when one is installed ------------------------------------------------------

BROWSER = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)
# Reports the page's width and every element that sticks out of it (tables inside their
# scrolling box excepted) to the framing page, which writes it into its own DOM.
_PROBE = """<script>window.addEventListener("load", function () {
  var root = document.documentElement, wide = [];
  document.querySelectorAll("body *").forEach(function (e) {
    if (e.getBoundingClientRect().right > root.clientWidth + 1 && !e.closest(".scroll"))
      wide.push(e.tagName.toLowerCase());
  });
  parent.postMessage("scrollWidth=" + root.scrollWidth + " clientWidth=" + root.clientWidth +
    " innerWidth=" + window.innerWidth + " wide=" + wide.join(","), "*");
});</script>"""
_PHONE = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="phone-probe.html" width="{width}" height="844" style="border:0"></iframe>
<pre id="out">no answer</pre><script>window.addEventListener("message", function (m) {{
  document.getElementById("out").textContent = "RESULT " + m.data; }});</script></body></html>"""


@pytest.mark.skipif(BROWSER is None, reason="no chromium or google-chrome installed")
def test_in_a_browser_390_px_wide_the_page_never_scrolls_sideways(
    page: tuple[Path, _Tags],
) -> None:
    """A headless browser lays the page out in a 390 px frame (a phone's width; a headless
    window cannot be that narrow): nothing but a table's own scrolling box is wider."""
    index, _ = page
    html = index.read_text(encoding="utf-8")
    (index.parent / "phone-probe.html").write_text(html.replace("</body>", _PROBE + "</body>"))
    (index.parent / "phone.html").write_text(_PHONE.format(width=390))
    assert BROWSER is not None
    result = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=800,900",
         "--virtual-time-budget=10000", "--dump-dom", (index.parent / "phone.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    found = re.search(
        r"RESULT scrollWidth=(\d+) clientWidth=(\d+) innerWidth=(\d+) wide=([^<]*)", result.stdout
    )
    assert found, result.stdout[-500:]
    scroll_width, client_width, inner_width = (int(v) for v in found.groups()[:3])
    assert inner_width == 390
    assert scroll_width <= client_width <= 390 and found.group(4) == "", found.group(0)
