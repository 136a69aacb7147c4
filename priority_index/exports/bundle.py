"""Every output of a run, written into one folder by the writers of this package.

``write_all`` is called by the pipeline with a fresh temporary folder that replaces the output
folder once everything is written (see ``pipeline.write_outputs``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import pandas as pd

from .. import __version__, indicators
from ..composite import top_drivers
from ..crime_groups import GROUP_LABELS
from ..micro import points_note
from ..sources.quarantine import REASONS
from . import geopackage, maps, rasters, report, styles
from .manifest import build_manifest, relative, write_json

if TYPE_CHECKING:
    from ..pipeline import RunResult

GPKG = "priority_index.gpkg"


def lsoa_index_layer(r: RunResult) -> gpd.GeoDataFrame:
    """One row per LSOA: indicators raw and normalised, contributions, score, rank, decile,
    rank uncertainty, Gi*, local Moran, neighbourhood id and the main drivers."""
    study = r.inputs.study
    res = r.index.result
    out = pd.DataFrame(index=study.index)
    out["lsoa_name"] = study["lsoa_name"]
    out["ward_name"] = r.inputs.wards if r.inputs.wards is not None else ""
    if r.inputs.population is not None:
        out["residents"] = r.inputs.population["residents"].round(0)
    out["score"] = res.score
    out["rank"] = res.rank.astype("int64")
    out["decile"] = pd.Series(res.decile, index=res.score.index).astype("int64")
    out["top_drivers"] = top_drivers(res.contributions)
    if r.index.mc is not None:
        out = out.join(r.index.mc.summary.drop(columns=["base_rank"], errors="ignore"))
    first = next(iter(r.hotspots.gi), None)
    if first is not None:
        g = r.hotspots.gi[first]
        out["gi_indicator"] = first
        for c in ["gi_z", "gi_p_sim", "gi_bin", "lisa_quadrant"]:
            if c in g:
                out[c] = g[c]
    out["neighbourhood_id"] = r.selection.assignment.astype("int64")
    if r.selection.lsoa_frequency is not None:
        out["selection_frequency"] = r.selection.lsoa_frequency
    if r.selection.roles is not None:
        roles = r.selection.roles
        out["selection_role"] = roles["role"]
        out["excluded_because"] = roles["excluded_because"]
        out["selection_detail"] = roles["detail"]
    for c in r.index.indicators.columns:
        out[c] = r.index.indicators[c]
    for c in res.normalised.columns:
        out[f"norm_{c}"] = res.normalised[c]
    for c in res.contributions.columns:
        out[f"contrib_{c}"] = res.contributions[c]
    out = out.reset_index()
    return gpd.GeoDataFrame(out, geometry=study.geometry.to_numpy(), crs=study.crs)


def _authorities(study: gpd.GeoDataFrame) -> tuple[pd.Series | None, dict[str, str]]:
    """Local authority code per LSOA and a display name per code (the boundaries' name
    column, else the LSOA names' common stem such as "Croydon", else the code)."""
    if "lad_code" not in study.columns:
        return None, {}
    codes = study["lad_code"].astype(str)
    if (codes == "").all():
        return None, {}
    names: dict[str, str] = {}
    lad_names = study["lad_name"].astype(str) if "lad_name" in study.columns else None
    stems = study["lsoa_name"].astype(str).str.replace(r"\s+\d{3}[A-Z]$", "", regex=True)
    for code, members in codes.groupby(codes).groups.items():
        given = sorted(set(lad_names.loc[members]) - {""}) if lad_names is not None else []
        stem = sorted(set(stems.loc[members]))
        names[str(code)] = given[0] if len(given) == 1 else stem[0] if len(stem) == 1 else code
    return codes, names


def _neighbourhoods_layer(r: RunResult) -> gpd.GeoDataFrame:
    sel = r.selection
    table = sel.summary.copy()
    if len(sel.stability):
        table = table.join(
            sel.stability.drop(columns=[c for c in sel.stability.columns if c in table.columns])
        )
    if sel.persistence is not None:
        table = table.join(sel.persistence[["share_priority_before", "also_priority_before"]])
    if "residents" in table:  # populations carried across LSOA vintages are fractional
        table["residents"] = table["residents"].round(0)
    geo = sel.polygons[["geometry"]].join(table, how="inner")
    geo.index.name = "neighbourhood_id"
    return gpd.GeoDataFrame(geo.reset_index(), geometry="geometry", crs=r.inputs.study.crs)


def _hotspots_layer(r: RunResult) -> gpd.GeoDataFrame:
    study = r.inputs.study
    parts = []
    for name, g in r.hotspots.gi.items():
        part = g.copy()
        part.insert(0, "indicator", name)
        part.insert(1, "value", r.index.indicators[name].reindex(part.index))
        part["lsoa_name"] = study["lsoa_name"].reindex(part.index)
        part["geometry"] = study.geometry.reindex(part.index)
        parts.append(part.reset_index())
    if not parts:
        return gpd.GeoDataFrame({"lsoa_code": [], "indicator": []}, geometry=[], crs=study.crs)
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=study.crs)


def _controls_layer(r: RunResult) -> gpd.GeoDataFrame:
    c = r.selection.controls.copy()
    polys = r.selection.control_polygons
    if "neighbourhood_id" not in c.columns:
        c = c.reset_index()
    c["geometry"] = polys.geometry.reindex(c["neighbourhood_id"].to_numpy()).to_numpy()
    return gpd.GeoDataFrame(c, geometry="geometry", crs=r.inputs.study.crs)


def field_descriptions(layers: dict[str, pd.DataFrame]) -> dict[str, dict[str, str]]:
    """Plain-words description of every field the analyst sees."""
    common = {
        "lsoa_code": "ONS Lower-layer Super Output Area code",
        "lsoa_name": "LSOA name",
        "ward_name": "Electoral ward (best fit)",
        "residents": "Usual residents",
        "score": "Priority Localities Index score (higher = more priority)",
        "rank": "Rank of the index score (1 = highest priority)",
        "decile": "Decile of the index (1 = the 10% of LSOAs with the highest priority)",
        "top_drivers": "Indicators contributing most to the score (share of positive part)",
        "median_rank": "Median rank over the Monte Carlo draws",
        "rank_p05": "5th percentile of the rank over the draws (90% interval, best end)",
        "rank_p95": "95th percentile of the rank over the draws (90% interval, worst end)",
        "p_top_decile": "Probability of being in the top decile over the draws",
        "gi_indicator": "Indicator tested by Gi* and local Moran in this layer",
        "gi_z": "Getis-Ord Gi* z-score",
        "gi_p_sim": "Gi* pseudo p-value (conditional permutations)",
        "gi_p_norm": "Gi* p-value from the normal approximation (two-sided)",
        "gi_bin": "Gi* confidence bin: +3/+2/+1 hot spot at 99/95/90%, -1/-2/-3 cold, 0 none",
        "lisa_quadrant": "Local Moran's I cluster type (High-High, Low-Low, High-Low, Low-High)",
        "neighbourhood_id": "Priority neighbourhood (0 = not in one)",
        "selection_frequency": "Share of Monte Carlo draws in which it was selected",
    }
    out: dict[str, dict[str, str]] = {}
    for name, frame in layers.items():
        d = {}
        for col in frame.columns:
            if col == "geometry":
                continue
            base = col
            prefix = ""
            for p, text in (("norm_", "Normalised: "), ("contrib_", "Contribution to score: ")):
                if col.startswith(p):
                    base, prefix = col[len(p) :], text
            if base in common and not prefix:
                d[col] = common[base]
                continue
            try:
                spec = indicators.indicator_spec(base)
                d[col] = f"{prefix}{spec.label} ({spec.unit}). {spec.description}"
            except (KeyError, ValueError):
                if col in REASONS:
                    d[col] = REASONS[col]
        out[name] = d
    out.setdefault("rejected_records", {})["reason"] = "; ".join(
        f"{k}: {v}" for k, v in REASONS.items()
    )
    return out


def write_all(r: RunResult, out: Path, progress) -> None:
    """Write the GeoPackage, rasters, maps, tables, report and manifest into ``out``."""
    s = r.settings
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    lsoa_index = lsoa_index_layer(r)
    neighbourhoods = _neighbourhoods_layer(r)
    micro = r.selection.micro
    rejected = r.inputs.quarantine.frame()
    layers = {
        "lsoa_index": lsoa_index,
        "priority_neighbourhoods": neighbourhoods,
        "hotspots_gi": _hotspots_layer(r),
        "micro_hotspots": micro,
        "control_areas": _controls_layer(r),
        "lsoa_boundaries": lsoa_index[["lsoa_code", "lsoa_name", "geometry"]],
        "rejected_records": rejected,
    }
    if r.inputs.ward_polygons is not None:
        layers["ward_boundaries"] = r.inputs.ward_polygons.reset_index(drop=True)
    layer_desc = {
        "lsoa_index": "Priority Localities Index per LSOA, with indicators and contributions",
        "priority_neighbourhoods": f"The {s.selection.n} priority neighbourhoods",
        "hotspots_gi": "Getis-Ord Gi* and local Moran's I per LSOA and indicator",
        "micro_hotspots": "Micro-places for patrols inside each priority neighbourhood",
        "control_areas": "Proposed comparison areas for before/after evaluation",
        "lsoa_boundaries": "Study-area LSOA boundaries",
        "rejected_records": "Every input record not used, with its reason, file and line",
        "ward_boundaries": "Electoral wards",
    }
    input_sha = {p: _sha(p) for p in r.inputs.input_files}
    gpkg_meta = {
        "title": s.pipeline.title or s.pipeline.name,
        "pipeline": s.pipeline.name,
        "priority_index_version": __version__,
        "seed": str(s.pipeline.seed),
        "config_toml": s.toml_text,
        "inputs": "\n".join(
            f"{relative(p, s.base_dir)} sha256={input_sha[p]}" for p in r.inputs.input_files
        ),
        # GeoPackage timestamps: the day after the current period, so that identical inputs give
        # identical files (the run's own timestamp is in manifest.json run_info)
        "run_date": (pd.Period(s.current_period.end, freq="M") + 1).start_time.strftime(
            "%Y-%m-%dT00:00:00Z"
        ),
        "licence": "Contains public sector information licensed under the Open Government "
        "Licence v3.0. Contains OS data (c) Crown copyright and database right.",
    }

    def write_gis() -> dict[str, Path]:
        """The GeoPackage and the rasters (GDAL releases the GIL: they are written while the
        maps are built)."""
        done: dict[str, Path] = {}
        geopackage.write_geopackage(
            out / GPKG,
            layers,
            styles=styles.default_styles(layers),
            field_descriptions=field_descriptions(layers),
            layer_descriptions=layer_desc,
            metadata=gpkg_meta,
        )
        done[GPKG] = out / GPKG
        progress(f"{GPKG}: {len(layers)} layers")
        for key, grid in r.hotspots.surfaces.items():
            name = "harm" if key == "total_harm" else key
            path = out / f"density_{name}.tif"
            label = (
                "all crime, weighted by harm" if key == "total_harm" else GROUP_LABELS.get(key, key)
            )
            rasters.write_cog(
                grid, path, description=f"Kernel density: {label}", min_overview_size=32
            )
            done[path.name] = path
            if path.with_suffix(".qml").exists():
                done[path.with_suffix(".qml").name] = path.with_suffix(".qml")
        return done

    background = ThreadPoolExecutor(max_workers=1)
    gis = background.submit(write_gis)
    try:
        map_files = _write_maps(r, out, lsoa_index, neighbourhoods, micro, progress)
        written.update(gis.result())
    finally:
        background.shutdown(wait=True)
    written.update(map_files)

    tables = {
        "harm_table.csv": r.harm_table,
        "concentration.csv": r.concentration,
        "neighbourhoods.csv": neighbourhoods.drop(columns="geometry"),
        "lsoa_index.csv": lsoa_index.drop(columns="geometry"),
        "sensitivity_drop_one.csv": r.index.sensitivity.reset_index(),
        "control_areas.csv": r.selection.controls,
        "trial_allocation.csv": r.selection.trial,
        "micro_places.csv": pd.DataFrame(micro.drop(columns="geometry")),
        "rejected_records.csv": rejected,
        "data_quality.csv": r.inputs.quarantine.summary(),
    }
    if r.face_validity is not None:
        tables["face_validity.csv"] = r.face_validity
    for name, frame in tables.items():
        path = out / name
        frame.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
        written[name] = path

    rep = report.render_report(_report_data(r, lsoa_index, neighbourhoods), top_n=s.report.top_n)
    report.write_report(rep, out / "report.html")
    written["report.html"] = out / "report.html"

    outputs = {k: {"bytes": p.stat().st_size, "sha256": _sha(p)} for k, p in written.items()}
    manifest = build_manifest(
        pipeline={
            "name": s.pipeline.name,
            "title": s.pipeline.title,
            "file": relative(s.source_file, s.base_dir.parent),
        },
        inputs=[
            {"path": relative(p, s.base_dir.parent), "sha256": input_sha[p], "bytes": _size(p)}
            for p in r.inputs.input_files
        ],
        settings=s.model_dump(mode="json"),
        seed=s.pipeline.seed,
        counts=stage_counts(r, layers),
        outputs=outputs,
        notes=r.inputs.notes + [r.hotspots.density_note],
        timings=r.timings,
    )
    write_json(manifest, out / "manifest.json")


def _write_maps(
    r: RunResult,
    out: Path,
    lsoa_index: gpd.GeoDataFrame,
    neighbourhoods: gpd.GeoDataFrame,
    micro: gpd.GeoDataFrame,
    progress,
) -> dict[str, Path]:
    """Every HTML map page, in ``out/maps``."""
    s = r.settings
    done: dict[str, Path] = {}
    maps_dir = out / "maps"
    maps_dir.mkdir()
    dens = r.hotspots.surfaces.get("total_harm")
    web_lsoas = lsoa_index.set_index("lsoa_code")
    nb = neighbourhoods.set_index("neighbourhood_id")
    title = s.pipeline.title or s.pipeline.name
    cur = r.inputs.points_in(r.points_period)
    groups = sorted(cur["crime_group"].dropna().unique())
    note = None
    if groups:
        note = points_note(
            groups,
            r.points_period,
            all_groups=r.inputs.counts["crime_group"].unique(),
            source="GENERATED police.uk-style" if r.inputs.points_generated else "police.uk",
        )
    label = (
        f"{GROUP_LABELS.get(groups[0], groups[0]).lower()} harm days per km2"
        if len(groups) == 1
        else None
    )
    areas, area_names = _authorities(r.inputs.study)
    pages = maps.map_pages(
        web_lsoas,
        nb,
        micro,
        density=dens,
        title=title,
        areas=areas,
        area_names=area_names,
        overview_budget_mb=s.maps.overview_budget_mb,
        max_areas=s.maps.max_areas,
        area_maps=s.maps.area_maps,
        aggregate_simplify_m=s.maps.aggregate_simplify_m,
        basemap=s.maps.basemap,
        simplify_tolerance=s.maps.simplify_m,
        points_note=note,
        density_label=label,
        min_records=s.micro.min_records,
        min_overlap=s.micro.min_overlap,
    )
    for name, html in pages.items():
        maps.write_map(html, maps_dir / name)
        done[f"maps/{name}"] = maps_dir / name
    n_areas = sum(name.startswith("area_") for name in pages)
    progress(
        f"maps: overview + {len(nb)} neighbourhood maps"
        + (f" + {n_areas} authority maps" if n_areas else "")
    )

    return done


def stage_counts(r: RunResult, layers: dict[str, pd.DataFrame]) -> dict:
    """Row counts per stage and the per-source reconciliation."""
    pts = r.inputs.points
    return {
        "ingest": {t: v.as_dict() for t, v in r.inputs.quarantine.tallies.items()},
        "study_area": r.inputs.study_report,
        "join": {
            "points_in_study_area": int(len(pts)),
            "points_by_group": {
                str(k): int(v) for k, v in pts["crime_group"].value_counts().sort_index().items()
            },
            "count_source_by_group": dict(sorted(r.inputs.count_sources.items())),
            "offences_by_period": {
                str(k): float(v)
                for k, v in r.inputs.counts.groupby("period")["count"].sum().items()
            },
        },
        "indicators": {
            "lsoas": int(len(r.index.indicators)),
            "indicators": list(r.index.indicators.columns),
        },
        "index": {
            "effective_weights": {
                k: round(float(v), 6) for k, v in r.index.result.effective_weights.items()
            },
            "monte_carlo_draws": r.settings.uncertainty.draws if r.index.mc else 0,
        },
        "hotspots": {
            "weights": r.hotspots.weights_report,
            "hot_95": {k: int((g["gi_bin"] >= 2).sum()) for k, g in r.hotspots.gi.items()},
            "density_surfaces": sorted(r.hotspots.surfaces),
            "density_note": r.hotspots.density_note,
        },
        "selection": {
            "neighbourhoods": int(len(r.selection.summary)),
            "lsoas_selected": int((r.selection.assignment > 0).sum()),
            "micro_places": int(len(r.selection.micro)),
        },
        "exports": {name: int(len(f)) for name, f in layers.items()},
    }


def _report_data(
    r: RunResult, lsoa_index: gpd.GeoDataFrame, neighbourhoods: gpd.GeoDataFrame
) -> report.ReportData:
    return report.build_report_data(r, lsoa_index, neighbourhoods)


def _sha(path: Path) -> str:
    from ..pipeline import sha256

    return sha256(path)


def _size(path: Path) -> int:
    if path.is_dir():
        return int(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
    return int(path.stat().st_size)
