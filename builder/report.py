"""Quality report of a built store: stride counts, ensemble curves per dataset, build report.

``write_report(url, out_dir)`` writes ``out_dir/index.html`` (self-contained: inline CSS,
relative links to PNG figures in ``out_dir/figures/``) with

- strides per dataset (subjects, strides, share of the total) and per dataset × activity;
- the share of each dataset's strides in which each component is present (masks);
- per activity (and over all activities), every dataset's ensemble mean ± SD over the gait
  cycle of the 9 kinematic and 9 kinetic components and the 13 EMG envelopes, overlaid (one
  colour per dataset, the same in every figure), so that disagreements between datasets (a
  flipped sign, an axis in the wrong slot, a unit off by 1000) jump out;
- strides whose masks disagree with their data (the contract: absent is NaN, present is finite);
- the trials left out and the sources unavailable, with reasons; the build version and date.

Reading is one pass per variable: a dask reduction over the store's stride chunks computes,
per (dataset, activity) group, the counts, sums and sums of squares of the masked values
(absent components never count) and the mask checks; every curve (per activity, or pooled)
is derived from those sums. No Python loop runs over strides.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import dask
import dask.array
import numpy as np
import pandas as pd
import xarray as xr

from builder._version import __version__
from builder.conventions import ACTIVITIES, MUSCLE_ABBREVIATIONS
from builder.errors import BuilderError
from builder.pipeline.report import BuildReport, parse_report
from builder.processing.quality import CHECK_DESCRIPTIONS, KINDS
from builder.store.location import StoreLocation

# Signal variables, their masks and the non-stride dims of their components.
_SIGNALS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kinematics": ("kinematics_mask", ("joint", "plane")),
    "kinetics": ("kinetics_mask", ("joint", "plane")),
    "emg_envelope": ("emg_mask", ("muscle",)),
}
_ALL = "all_activities"  # figure suffix of the curves pooled over activities

# 20 dataset colours, pairwise distinguishable: matplotlib's tab10, then 10 colours added one at
# a time (Glasbey et al. 2007's greedy method: from a 32-level sRGB grid with CIELAB L* 25–70,
# so every line stands out on white, the colour farthest by CIEDE2000 from those already chosen,
# white and black). The smallest CIEDE2000 difference between any two is 16.2 (tab10's red and
# brown; 2.3 is a just-noticeable difference); tests/test_report_page.py checks it.
_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#00523a", "#0000ce", "#6b5a00", "#7b0052", "#4a4a63",
    "#d69c94", "#94a5ff", "#008c7b", "#ad8c52", "#004a5a",
)  # fmt: skip
# Beyond 20 datasets the colours repeat with another line style.
_LINESTYLES = ("-", "--", ":", "-.")

_PLANE_TITLES = {
    "adduction": "adduction (+) / abduction",
    "rotation": "internal (+) / external rotation",
    "flexion": "flexion (+) / extension",
}
_ANKLE_FLEXION = "dorsiflexion (+) / plantarflexion"
_UNITS = {"kinematics": "angle (deg)", "kinetics": "internal moment (N·m/kg)"}
_TITLES = {
    "kinematics": "Joint angles",
    "kinetics": "Internal net joint moments",
    "emg_envelope": "EMG linear envelopes",
}


# --- statistics ---------------------------------------------------------------------------


def ensemble_curves(ds: xr.Dataset, *, activity: str | None = None) -> xr.Dataset:
    """Every dataset's ensemble mean and SD over strides of each component, masks honoured.

    ``ds`` is a store as ``xarray.open_zarr`` gives it (dask-backed or in memory); with
    ``activity`` only that activity's strides count. Returns, along a ``dataset`` dimension:
    ``<var>_mean`` and ``<var>_sd`` (sample SD, ddof=1) with dims (dataset, sample, <components>)
    ``<var>_n`` (strides in which the component is present) and ``<var>_any`` (strides with
    any component of the variable) for ``var`` in kinematics, kinetics and emg_envelope, and
    ``n_strides`` (the dataset's strides in the selection). A component no stride of a dataset
    has is NaN with n = 0. The values are read in one pass per variable (see :func:`_moments`).
    """
    return _curves(_moments(ds), activity)


# Sums per group of one variable: over (sample, <components>), over <components>, or one number.
_PER_SAMPLE = ("sum", "sumsq", "count")
_PER_COMPONENT = ("n", "present_not_finite", "absent_not_nan")
Partial = dict[int, dict[str, np.ndarray]]  # group code -> statistic -> summed values


def _moments(ds: xr.Dataset) -> xr.Dataset:
    """Per (dataset, activity) group: count, sum and sum of squares of every masked component.

    Dims (group, sample, <components>) for ``<var>_sum``, ``_sumsq`` and ``_count`` (finite
    present values), (group, <components>) for ``_n`` (strides with the component present),
    ``_present_not_finite`` and ``_absent_not_nan`` (mask checks), (group,) for ``_any``
    (strides with any component of the variable); ``dataset`` and ``activity`` are
    coordinates along ``group``.

    One dask reduction per variable, one pass over its chunks: each chunk of strides (with its
    mask) is reduced to sums for the groups it holds (a sort and ``np.add.reduceat``: work in
    proportion to the chunk, however many groups there are), and the partial sums are added
    in a tree (the "map-reduce" of flox, with sparse partials: a chunk usually holds strides of
    one trial, so of one or two groups).
    """
    keys = pd.MultiIndex.from_arrays([_strings(ds["dataset"]), _strings(ds["activity"])])
    codes, groups = pd.factorize(keys, sort=True)
    codes = np.asarray(codes, dtype=np.intp)
    n_groups = len(groups)

    out: dict[str, xr.DataArray] = {
        "n_strides": xr.DataArray(np.bincount(codes, minlength=n_groups), dims="group")
    }
    for name, (mask_name, comps) in _SIGNALS.items():
        values = ds[name].variable.transpose("stride", "sample", *comps)
        mask = ds[mask_name].variable.transpose("stride", *comps)
        total = _grouped_stats(values.data, mask.data, codes)
        for stat in (*_PER_SAMPLE, *_PER_COMPONENT, "any"):
            dims = ("sample", *comps) if stat in _PER_SAMPLE else comps
            if stat == "any":
                dims = ()
            dense = np.zeros((n_groups, *(ds.sizes[d] for d in dims)))
            for code, stats in total.items():
                dense[code] = stats[stat]
            if stat not in ("sum", "sumsq"):
                dense = dense.round().astype(np.int64)  # counts of strides or samples
            out[f"{name}_{stat}"] = xr.DataArray(dense, dims=("group", *dims))
    return xr.Dataset(out).assign_coords(
        {
            "dataset": ("group", np.asarray([g[0] for g in groups], dtype=object)),
            "activity": ("group", np.asarray([g[1] for g in groups], dtype=object)),
            "gait_cycle_pct": ("sample", np.asarray(ds["gait_cycle_pct"].values)),
            **{dim: ds[dim].values for dim in ("joint", "plane", "muscle")},
        }
    )


def _grouped_stats(values: Any, mask: Any, codes: np.ndarray) -> Partial:
    """Sums per group over strides of one variable: a dask reduction over stride chunks."""
    if not isinstance(values, dask.array.Array) and not isinstance(mask, dask.array.Array):
        return _chunk_stats(np.asarray(values), np.asarray(mask), codes)
    values = dask.array.asarray(values)
    values = values.rechunk({axis: -1 for axis in range(1, values.ndim)})  # strides only
    mask = dask.array.asarray(mask).rechunk((values.chunks[0], *mask.shape[1:]))
    bounds = np.cumsum((0, *values.chunks[0]))
    chunk_stats = dask.delayed(_chunk_stats, pure=True)
    partials = [
        chunk_stats(v, m, codes[lo:hi])
        for v, m, lo, hi in zip(
            values.to_delayed().ravel(),
            mask.to_delayed().ravel(),
            bounds[:-1],
            bounds[1:],
            strict=True,
        )
    ]
    merge = dask.delayed(_merge, pure=True)
    while len(partials) > 1:  # a tree of 8-way merges
        partials = [merge(*partials[i : i + 8]) for i in range(0, len(partials), 8)]
    return dask.compute(partials[0])[0] if partials else {}


def _chunk_stats(values: np.ndarray, mask: np.ndarray, codes: np.ndarray) -> Partial:
    """Sums per group over the strides of one chunk (values (stride, sample, ...))."""
    if len(codes) == 0:
        return {}
    comps = mask.shape[1:]  # flattened to one axis here, restored at the end
    values = values.reshape(*values.shape[:2], -1)
    mask = mask.astype(bool, copy=False).reshape(len(mask), -1)
    finite = np.isfinite(values)
    every_finite, every_present = bool(finite.all()), bool(mask.all())
    masked = values if every_finite else np.where(finite, values, values.dtype.type(0))
    if not every_present:
        masked = masked * mask[:, None]  # absent components never count
    if every_finite:
        bad = np.zeros(mask.shape, dtype=np.float32)  # non-finite samples per component
        count = None  # = n (per component), broadcast over samples
    else:  # count by a matrix product: reductions over the middle axis are slow in numpy
        bad = np.ones(values.shape[1], np.float32) @ (~finite).astype(np.float32)
        count = finite & mask[:, None]
    per_stride = {
        "sum": masked,
        "sumsq": masked * masked,  # float32 squares, float64 sums
        "n": mask,
        "any": mask.any(axis=1),
        # The contract: a present component is finite throughout, an absent one all NaN.
        "present_not_finite": mask & (bad > 0),
        "absent_not_nan": ~mask & (bad < values.shape[1]),
    }
    if count is not None:
        per_stride["count"] = count
    if np.any(codes[1:] < codes[:-1]):  # the strides of a trial are contiguous: rarely
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        per_stride = {k: v[order] for k, v in per_stride.items()}
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    if len(starts) == 1:  # one group in the chunk (the usual case): a plain sum is faster
        sums = {k: v.sum(axis=0, dtype=np.float64)[None] for k, v in per_stride.items()}
    else:
        sums = {
            k: np.add.reduceat(v, starts, axis=0, dtype=np.float64) for k, v in per_stride.items()
        }
    if count is None:
        sums["count"] = np.broadcast_to(sums["n"][:, None], sums["sum"].shape).copy()
    sums = {
        k: v.reshape(len(v), *v.shape[1:-1], *comps) if k != "any" else v for k, v in sums.items()
    }
    return {int(code): {k: v[i] for k, v in sums.items()} for i, code in enumerate(codes[starts])}


def _merge(*partials: Partial) -> Partial:
    total: Partial = {}
    for partial in partials:
        for code, stats in partial.items():
            if code in total:
                total[code] = {k: total[code][k] + v for k, v in stats.items()}
            else:
                total[code] = dict(stats)
    return total


def _strings(column: xr.DataArray) -> np.ndarray:
    """A text column as an object array of str (the store's columns are numpy StringDType)."""
    return np.asarray(column.values).astype(object)


def _curves(moments: xr.Dataset, activity: str | None) -> xr.Dataset:
    """Mean, SD and counts per dataset from the group sums (optionally one activity only)."""
    if activity is not None:
        moments = moments.isel(group=np.flatnonzero(moments["activity"].values == activity))
        if moments.sizes["group"] == 0:
            raise ValueError(f"no strides of activity {activity!r}")
    per_dataset = (
        moments.drop_vars("activity")
        .groupby("dataset")  # in memory: a handful of groups of small arrays
        .sum("group")
    )
    out: dict[str, xr.DataArray] = {"n_strides": per_dataset["n_strides"]}
    for name in _SIGNALS:
        count = per_dataset[f"{name}_count"].astype(np.float64)
        total, squares = per_dataset[f"{name}_sum"], per_dataset[f"{name}_sumsq"]
        mean = (total / count).where(count > 0)
        var = ((squares - total * total / count) / (count - 1)).where(count > 1)
        out[f"{name}_mean"] = mean.astype(np.float32)
        sd = cast(xr.DataArray, np.sqrt(var.clip(min=0.0)))  # numpy's stubs lose the type
        out[f"{name}_sd"] = sd.astype(np.float32)
        out[f"{name}_n"] = per_dataset[f"{name}_n"]
        out[f"{name}_any"] = per_dataset[f"{name}_any"]
    curves = xr.Dataset(out)
    curves["dataset"] = curves["dataset"].astype(object)
    return curves


# --- figures ------------------------------------------------------------------------------


def _dataset_styles(datasets: Iterable[str]) -> dict[str, dict[str, Any]]:
    """One colour (and line style) per dataset, by sorted name: the same in every figure of
    the report, and distinct for up to ``len(_COLOURS)`` datasets (solid lines); beyond that
    colours repeat with another line style."""
    n = len(_COLOURS)
    return {
        name: {
            "color": _COLOURS[i % n],
            "linestyle": _LINESTYLES[(i // n) % len(_LINESTYLES)],
        }
        for i, name in enumerate(sorted(set(datasets)))
    }


def _new_figure(width: float, height: float, *, constrained: bool = True):
    from matplotlib.figure import Figure  # Agg canvas; no pyplot global state

    return Figure(figsize=(width, height), dpi=100, layout="constrained" if constrained else None)


def _panel_labels(name: str, coords: dict[str, str]) -> tuple[str, str]:
    if name == "emg_envelope":
        muscle = coords["muscle"]
        return (
            f"{muscle.replace('_', ' ')} ({MUSCLE_ABBREVIATIONS.get(muscle, '')})",
            "envelope (× subject median peak)",
        )
    joint, plane = coords["joint"], coords["plane"]
    what = _ANKLE_FLEXION if (joint, plane) == ("ankle", "flexion") else _PLANE_TITLES[plane]
    suffix = " moment" if name == "kinetics" else ""
    return f"{joint} {what}{suffix}", _UNITS[name]


def _panel_note(absent: list[str], partial: list[str], n_datasets: int) -> str:
    """One short line under a panel's title: datasets without the component, or with it in
    only some strides (the coverage figure has the details)."""
    notes = []
    if absent:
        named = ", ".join(absent)
        fits = len(absent) <= 2 and len(named) <= 32
        notes.append(f"no data: {named}" if fits else f"no data: {len(absent)} of {n_datasets}")
    if partial:
        notes.append(f"partial: {partial[0]}" if len(partial) == 1 else f"partial: {len(partial)}")
    return "; ".join(notes)


def _short_list(names: Sequence[str], limit: int = 3) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" +{len(names) - limit} more"


def _plot_curves(
    curves: xr.Dataset,
    name: str,
    styles: dict[str, dict[str, Any]],
    title: str,
    path: Path,
    *,
    xlabel: str = "gait cycle (%)",
) -> None:
    """A grid of mean ± SD panels, one per component, every dataset overlaid."""
    from matplotlib.lines import Line2D

    pct = curves["gait_cycle_pct"].values
    datasets = [str(d) for d in curves["dataset"].values if curves[f"{name}_any"].sel(dataset=d)]
    if name == "emg_envelope":
        cells = [{"muscle": str(m)} for m in curves["muscle"].values]
        nrows, ncols = 3, 5
        fig = _new_figure(18, 9.5, constrained=False)
    else:
        cells = [
            {"joint": str(j), "plane": str(p)}
            for j in curves["joint"].values
            for p in curves["plane"].values
        ]
        nrows, ncols = 3, 3
        fig = _new_figure(15, 10, constrained=False)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    handles: dict[str, Any] = {}
    band_alpha = 0.15 if len(datasets) <= 4 else 0.07  # many bands would hide the means
    for ax, cell in zip(axes, cells, strict=False):
        panel_title, ylabel = _panel_labels(name, cell)
        ax.set_title(panel_title, fontsize=10, pad=13)  # room for a note below it
        ax.set_xlim(0, 100)
        ax.grid(True, alpha=0.3)
        ax.axhline(0, color="0.6", linewidth=0.6)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(ylabel, fontsize=9)
        absent, partial = [], []
        for dataset in datasets:
            sel = curves.sel({"dataset": dataset, **cell})
            n = int(sel[f"{name}_n"])
            if n == 0:
                absent.append(dataset)
                continue
            if n < int(sel[f"{name}_any"]):
                partial.append(f"{dataset} n={n}")
            mean, sd = sel[f"{name}_mean"].values, sel[f"{name}_sd"].values
            style = styles[dataset]
            (line,) = ax.plot(pct, mean, linewidth=1.6, **style)
            ax.fill_between(pct, mean - sd, mean + sd, color=style["color"], alpha=band_alpha, lw=0)
            handles.setdefault(dataset, line)
        if len(absent) == len(datasets):
            ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=14, color="0.5",
                    transform=ax.transAxes)  # fmt: skip
            ax.set_yticks([])
        else:
            note = _panel_note(absent, partial, len(datasets))
            ax.text(0.5, 1.005, note, ha="center", va="bottom", fontsize=7.5, color="0.35",
                    transform=ax.transAxes)  # fmt: skip
    for ax in axes[len(cells) :]:
        ax.set_visible(False)
    for i, ax in enumerate(axes[: len(cells)]):
        if i + ncols >= len(cells):  # nothing visible below it
            ax.set_xlabel(xlabel, fontsize=9)
            ax.tick_params(labelbottom=True)
    entries = [(handles[d], f"{d} (n={int(curves[f'{name}_any'].sel(dataset=d))})")
               for d in datasets if d in handles]  # fmt: skip
    for d in curves["dataset"].values:  # datasets of the selection without this variable
        if str(d) not in handles:
            style = styles[str(d)]
            entries.append((Line2D([], [], alpha=0.35, **style), f"{d} (no data)"))
    # Fixed margins (constrained layout costs more than drawing): legend in the right margin.
    right = 0.85 if name == "emg_envelope" else 0.8
    fig.subplots_adjust(left=0.06, right=right, bottom=0.07, top=0.9, hspace=0.38, wspace=0.22)
    if entries:
        fig.legend(
            [h for h, _ in entries],
            [label for _, label in entries],
            loc="upper left",
            bbox_to_anchor=(right + 0.01, 0.9),
            title="dataset (strides)",
            fontsize=9,
        )
    fig.suptitle(title, fontsize=13)
    fig.savefig(path)


def _plot_counts(counts: pd.DataFrame, styles: dict[str, dict[str, Any]], path: Path) -> None:
    """Horizontal bars: strides per dataset, split by activity."""
    pivot = counts.pivot_table(
        index="dataset", columns="activity", values="strides", aggfunc="sum", fill_value=0
    )
    pivot = pivot[_ordered_activities(pivot.columns)].sort_index(ascending=False)
    fig = _new_figure(11, 1.6 + 0.42 * len(pivot))
    ax = fig.subplots()
    left = np.zeros(len(pivot))
    activity_colours = _activity_colours(pivot.columns)
    for activity in pivot.columns:
        values = pivot[activity].to_numpy()
        ax.barh(pivot.index, values, left=left, color=activity_colours[activity], label=activity)
        left += values
    for i, total in enumerate(left):
        ax.text(total, i, f" {int(total)}", va="center", fontsize=9)
    for tick in ax.get_yticklabels():
        tick.set_color(styles.get(tick.get_text(), {}).get("color", "black"))
    ax.set_xlabel("strides")
    ax.set_xlim(0, max(left.max(), 1) * 1.12)
    ax.set_title("Strides per dataset and activity")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="activity")
    ax.grid(True, axis="x", alpha=0.3)
    fig.savefig(path)


def _plot_coverage(coverage: pd.DataFrame, path: Path) -> None:
    """Heat map: share of each dataset's strides in which each component is present."""
    fig = _new_figure(max(10, 0.32 * coverage.shape[1] + 3), 2.4 + 0.38 * len(coverage))
    ax = fig.subplots()
    share = coverage.to_numpy() * 100
    image = ax.imshow(
        share, vmin=0, vmax=100, cmap="viridis", aspect="auto", interpolation="nearest"
    )
    labels = [c.split(" ", 1)[1] for c in coverage.columns]
    ax.set_xticks(range(coverage.shape[1]), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(coverage)), coverage.index, fontsize=9)
    groups: dict[str, list[int]] = {}
    for i, column in enumerate(coverage.columns):
        groups.setdefault(column.split(" ", 1)[0], []).append(i)
    top = ax.secondary_xaxis("top")  # group names above the columns
    top.set_xticks(
        [(m[0] + m[-1]) / 2 for m in groups.values()], list(groups), fontsize=10,
        fontweight="bold",
    )  # fmt: skip
    top.tick_params(length=0)
    for members in groups.values():
        if members[0]:
            ax.axvline(members[0] - 0.5, color="white", linewidth=2.5)
    for (row, col), value in np.ndenumerate(share):
        if 0 < value < 100:  # partial coverage: say how much
            ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 60 else "black")  # fmt: skip
    ax.set_title("Components present (% of each dataset's strides)")
    fig.colorbar(image, ax=ax, label="% of strides", shrink=0.9, pad=0.01)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.1)


def _activity_colours(activities: Iterable[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    known, other = colormaps["tab10"], colormaps["Set3"]
    extra = sorted(set(activities) - set(ACTIVITIES))
    return {
        a: known(ACTIVITIES.index(a) % 10) if a in ACTIVITIES else other(extra.index(a) % 12)
        for a in activities
    }


def _ordered_activities(activities: Iterable[str]) -> list[str]:
    known = [a for a in ACTIVITIES if a in set(activities)]
    return known + sorted(set(activities) - set(known))


# --- the report ---------------------------------------------------------------------------


def write_report(
    url: str, out_dir: str | Path, *, storage_options: dict[str, Any] | None = None
) -> Path:
    """Write the quality report of the store at ``url`` into ``out_dir``; return index.html."""
    # The report and the figures from one version.
    location = StoreLocation(StoreLocation(url, storage_options).pin(), storage_options)
    url = location.url
    report = parse_report(url, location.read_report())
    ds = location.open_dataset()
    out = Path(out_dir)
    figures = out / "figures"
    try:
        figures.mkdir(parents=True, exist_ok=True)
        for old in figures.glob("*.png"):  # this report's figures from an earlier run
            if old.name in ("strides_per_dataset.png", "coverage.png") or old.name.startswith(
                tuple(f"{name}_" for name in _SIGNALS)
            ):
                old.unlink()
    except OSError as exc:
        raise BuilderError(f"{out}: cannot write the report ({exc})") from None

    table = pd.DataFrame(
        {
            "dataset": _strings(ds["dataset"]),
            "activity": _strings(ds["activity"]),
            "patient_id": np.asarray(ds["patient_id"].values),
        }
    )
    moments = _moments(ds)
    datasets = sorted(set(table["dataset"]))
    styles = _dataset_styles(datasets)
    activities = _ordered_activities(set(table["activity"]))
    counts = table.groupby(["dataset", "activity"]).size().rename("strides").reset_index()

    try:
        _plot_counts(counts, styles, figures / "strides_per_dataset.png")
        pooled = _curves(moments, None)
        coverage = _coverage(pooled)
        _plot_coverage(coverage, figures / "coverage.png")
        curve_figures: list[tuple[str, str, list[tuple[str, str]]]] = []
        pooled_too = [_ALL] if len(activities) > 1 else []  # else the same curves again
        for activity in [*activities, *pooled_too]:
            curves = pooled if activity == _ALL else _curves(moments, activity)
            label = "all activities pooled" if activity == _ALL else activity.replace("_", " ")
            files = []
            for name in _SIGNALS:
                file = f"{name}_{_slug(activity)}.png"
                n_total = int(curves["n_strides"].sum())
                _plot_curves(
                    curves,
                    name,
                    styles,
                    f"{_TITLES[name]} — {label} — mean ± SD over strides "
                    f"({n_total} stride{'s' if n_total != 1 else ''})",
                    figures / file,
                    xlabel=_cycle_label(activity),
                )
                files.append((f"{_TITLES[name]} ({label})", f"figures/{file}"))
            curve_figures.append((activity, label, files))
    except OSError as exc:
        raise BuilderError(f"{out}: cannot write the report ({exc})") from None

    page = _html(url, report, table, counts, moments, activities, curve_figures)
    index = out / "index.html"
    try:
        index.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise BuilderError(f"{index}: cannot write the report ({exc})") from None
    return index


def default_report_dir(url: str) -> Path:
    """``<store name>-report`` in the current folder (``gait.zarr`` → ``gait-report``)."""
    name = url.rstrip("/").rsplit("/", 1)[-1] or "store"
    return Path(re.sub(r"\.zarr$", "", name) + "-report")


def _cycle_label(activity: str) -> str:
    """The x axis: a gait cycle, except for movements that are not gait."""
    if activity in ("sit_to_stand", "stand_to_sit"):
        return "movement cycle (%)"
    return "gait cycle (%)"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text) or "_"


def _coverage(pooled: xr.Dataset) -> pd.DataFrame:
    columns: dict[str, np.ndarray] = {}
    n = pooled["n_strides"].values.astype(np.float64)
    short = {"adduction": "add", "rotation": "rot", "flexion": "flex"}
    for name, prefix in (("kinematics", "angles"), ("kinetics", "moments")):
        for joint in pooled["joint"].values:
            for plane in pooled["plane"].values:
                present = pooled[f"{name}_n"].sel(joint=joint, plane=plane).values
                columns[f"{prefix} {joint} {short.get(str(plane), plane)}"] = present / n
    for muscle in pooled["muscle"].values:
        columns[f"EMG {MUSCLE_ABBREVIATIONS.get(str(muscle), muscle)}"] = (
            pooled["emg_envelope_n"].sel(muscle=muscle).values / n
        )
    return pd.DataFrame(columns, index=[str(d) for d in pooled["dataset"].values])


# --- HTML ---------------------------------------------------------------------------------

# Responsive: nothing has a fixed width, figures shrink to the page (a click opens the PNG at
# full size), and a wide table scrolls sideways inside its own box instead of widening the page.
_CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1500px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; font-size: 1.7em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
.scroll { max-width: 100%; overflow-x: auto; margin: 0.6em 0; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; background: #fafafa; }
a.figure { display: block; max-width: 100%; margin: 0.4em 0; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em;
          vertical-align: -0.1em; border-radius: 2px; }
.legend span.item { white-space: nowrap; margin-right: 1em; }
.meta td:first-child { font-weight: bold; } .muted { color: #666; } .ok { color: #2a7a2a; }
.warn { color: #b03a2e; } nav a { display: inline-block; margin: 0 1em 0.3em 0; }
code { font-size: 0.95em; overflow-wrap: anywhere; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: set[int]) -> str:
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        css = ' class="total"' if row and str(row[0]) == "total" else ""
        cells = "".join(
            f'<td class="num">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return _scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _scroll(table: str) -> str:
    """A table in a box that scrolls sideways when the table is wider than the screen."""
    return f'<div class="scroll">{table}</div>'


def _figure(src: str, alt: str, *, lazy: bool = False) -> str:
    """An image that opens at full size when clicked (a plain link: no script needed)."""
    loading = ' loading="lazy"' if lazy else ""
    return (
        f'<a class="figure" href="{_e(src)}" title="open the full-size figure">'
        f'<img src="{_e(src)}" alt="{_e(alt)}"{loading}></a>'
    )


def _quality_table(quality: dict[str, dict[str, dict[str, int]]]) -> str:
    """Rows dataset × check with the EMG, kinematics and kinetics components left out."""
    rows = [
        (
            dataset,
            check,
            *(per_kind.get(kind, "") for kind in KINDS),
            CHECK_DESCRIPTIONS.get(check, ""),
        )
        for dataset, checks in sorted(quality.items())
        for check, per_kind in sorted(checks.items())
    ]
    if not rows:
        return "<p>The gate left nothing out.</p>"
    return _table(("dataset", "check", *KINDS, "what it means"), rows, {2, 3, 4})


def _html(
    url: str,
    report: BuildReport,
    table: pd.DataFrame,
    counts: pd.DataFrame,
    moments: xr.Dataset,
    activities: list[str],
    curve_figures: list[tuple[str, str, list[tuple[str, str]]]],
) -> str:
    total = len(table)
    styles = _dataset_styles(sorted(set(table["dataset"])))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Quality report — {_e(url)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Gait store quality report</h1>",
        f'<p class="muted"><code>{_e(url)}</code></p>',
        "<nav>"
        + "".join(
            f'<a href="#{a}">{_e(t)}</a>'
            for a, t in (
                ("build", "Build"),
                ("counts", "Stride counts"),
                ("coverage", "Coverage"),
                ("quality", "Quality gate"),
                ("curves", "Ensemble curves"),
                ("contract", "Mask checks"),
                ("left-out", "Trials left out"),
                ("unavailable", "Sources unavailable"),
            )
        )
        + "</nav>",
    ]

    # Build
    meta_rows = [
        ("build version", report.version),
        ("built", report.created),
        ("builder version", report.builder_version),
        ("catalogue", report.catalog),
        ("catalogue sha256", report.catalog_sha256),
        ("strides", total),
        ("datasets", table["dataset"].nunique()),
        ("trials built", report.n_trials_built),
        ("trials left out", report.n_trials_left_out),
        ("sources unavailable", len(report.sources_unavailable)),
    ]
    parts.append('<h2 id="build">Build</h2>')
    parts.append(
        _scroll(
            '<table class="meta"><tbody>'
            + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta_rows)
            + "</tbody></table>"
        )
    )

    # Stride counts per dataset
    per_dataset = table.groupby("dataset").agg(
        strides=("activity", "size"), subjects=("patient_id", "nunique")
    )
    rows: list[tuple[Any, ...]] = []
    for dataset, row in per_dataset.iterrows():
        rows.append(
            (dataset, row.subjects, row.strides, f"{100.0 * row.strides / max(total, 1):.2f}")
        )
    rows.append(("total", table["patient_id"].nunique(), total, "100.00"))
    parts.append('<h2 id="counts">Stride counts</h2>')
    parts.append("<h3>Per dataset</h3>")
    parts.append(_table(("dataset", "subjects", "strides", "% of total"), rows, {1, 2, 3}))
    parts.append(_figure("figures/strides_per_dataset.png", "strides per dataset and activity"))

    # Per dataset x activity
    pivot = counts.pivot_table(
        index="dataset", columns="activity", values="strides", aggfunc="sum", fill_value=0
    )[activities]
    header = ["dataset", *activities, "total", "% of total"]
    rows = []
    for dataset, row in pivot.iterrows():
        n = int(row.sum())
        rows.append(
            (
                dataset,
                *(int(v) if v else "" for v in row.to_numpy()),
                n,
                f"{100.0 * n / max(total, 1):.2f}",
            )
        )
    sums = pivot.sum(axis=0)
    rows.append(("total", *(int(v) for v in sums.to_numpy()), total, "100.00"))
    rows.append(
        (
            "% of total",
            *(f"{100.0 * v / max(total, 1):.2f}" for v in sums.to_numpy()),
            "100.00",
            "",
        )
    )
    parts.append("<h3>Per dataset and activity (strides)</h3>")
    parts.append(_table(header, rows, set(range(1, len(header)))))

    # Coverage
    parts.append('<h2 id="coverage">Coverage</h2>')
    parts.append(
        "<p>Share of each dataset's strides in which a component is present (its mask is set); "
        "absent components are NaN in the store and never enter the curves below.</p>"
    )
    parts.append(_figure("figures/coverage.png", "component coverage per dataset"))

    # Quality gate
    parts.append('<h2 id="quality">Quality gate</h2>')
    parts.append(
        "<p>Stride-components the quality gate left out (mask clear, values NaN) before the "
        "store was written, per dataset and check; each trial's notes in the build report say "
        "which component of which stride and why.</p>"
    )
    parts.append(_quality_table(report.quality))

    # Curves
    parts.append('<h2 id="curves">Ensemble curves</h2>')
    legend = " ".join(
        f'<span class="item"><span class="swatch" style="background:{_e(styles[d]["color"])}">'
        f"</span>{_e(d)}</span>"
        for d in sorted(styles)
    )
    parts.append(
        "<p>Mean ± SD (sample SD) over strides, per dataset, over the gait cycle (heel strike "
        "to heel strike of the same leg, 0–100 %). Only strides in which a component is "
        "present count; the legend gives each dataset's strides (n), panels note datasets "
        "without the component (“no data”) or with it in fewer strides (“partial”). Angles "
        "in degrees, internal moments in N·m/kg, envelopes in units of the subject's median "
        "stride envelope peak. Signs: flexion / dorsiflexion, adduction and internal rotation "
        "positive. Click a figure to open it at full size.</p>"
        f'<p class="legend">Dataset colours: {legend}</p>'
    )
    parts.append(
        "<nav>"
        + "".join(
            f'<a href="#curves-{_e(_slug(a))}">{_e(label)}</a>' for a, label, _ in curve_figures
        )
        + "</nav>"
    )
    for activity, label, files in curve_figures:
        parts.append(f'<h3 id="curves-{_e(_slug(activity))}">{_e(label)}</h3>')
        for alt, src in files:
            parts.append(_figure(src, alt, lazy=True))

    # Mask / data contract
    parts.append('<h2 id="contract">Mask checks</h2>')
    bad = []
    for name in _SIGNALS:
        for kind, text in (
            ("present_not_finite", "mask set but values not finite throughout"),
            ("absent_not_nan", "mask clear but finite values"),
        ):
            per = moments[f"{name}_{kind}"].groupby("dataset").sum("group")
            comp_dims = [d for d in per.dims if d != "dataset"]
            for dataset in per["dataset"].values:
                strides = per.sel(dataset=dataset)
                n = int(strides.sum())
                if n:
                    worst = strides.stack(c=comp_dims)
                    which = [
                        " ".join(str(v) for v in (c if isinstance(c, tuple) else (c,)))
                        for c, k in zip(worst["c"].values, worst.values, strict=True)
                        if k
                    ]
                    bad.append((dataset, name, text, n, _short_list(which, 5)))
    if bad:
        parts.append(
            '<p class="warn">Strides whose masks disagree with their data (the contract: '
            "a present component is finite throughout, an absent one is all NaN):</p>"
        )
        parts.append(
            _table(("dataset", "variable", "problem", "stride-components", "components"), bad, {3})
        )
    else:
        parts.append(
            '<p class="ok">Every mask agrees with its data: present components are finite '
            "throughout, absent ones are NaN.</p>"
        )

    # Left out and unavailable
    left = report.trials_left_out
    parts.append(f'<h2 id="left-out">Trials left out ({len(left)})</h2>')
    if left:
        parts.append(
            _table(
                ("trial", "source", "file", "reason"),
                ((e.trial, e.source, e.url, e.reason) for e in left),
                set(),
            )
        )
    else:
        parts.append('<p class="ok">None: every trial of the catalogue was built.</p>')
    gone = report.sources_unavailable
    parts.append(f'<h2 id="unavailable">Sources unavailable ({len(gone)})</h2>')
    if gone:
        parts.append(
            _table(
                ("source", "reason"),
                ((e.source, e.reason) for e in gone),
                set(),
            )
        )
    else:
        parts.append('<p class="ok">None.</p>')
    parts.append(
        f'<p class="muted">Generated by gait-builder {_e(__version__)} from build '
        f"{_e(report.version)} of {_e(url)}.</p></body></html>"
    )
    return "\n".join(parts) + "\n"
