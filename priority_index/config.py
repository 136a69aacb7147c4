"""Settings: one validated object loaded from one pipeline TOML file.

Every number a user might argue about (weights, bandwidths, thresholds, the "nine") is a field
here, with its default and a comment; ``pipelines/*.toml`` repeat them with comments for the
analyst. Unknown keys and wrong types are errors naming the dotted key. Relative paths in the
TOML are relative to the TOML file's own folder, so a pipeline can be run from anywhere.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineMeta(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # names the output folder outputs/<name>/
    title: str = ""  # shown on maps and in the report
    description: str = ""
    seed: int = 20240301  # every random draw (Monte Carlo, permutations, trials) derives from it
    output_dir: str | None = None  # default: outputs/<name>/ beside the pipelines/ folder


class WardLookup(_Strict):
    """A table giving each LSOA's ward, used to name neighbourhoods as residents do."""

    path: str
    lsoa_column: str = "LSOA21CD"
    ward_code_column: str = "WD24CD"
    ward_name_column: str = "WD24NM"
    boundaries: str | None = None  # optional ward polygons (context on maps)
    boundaries_name_column: str = "WD24NM"


class StudyArea(_Strict):
    boundaries: str  # any OGR layer of LSOAs (Shapefile, GeoPackage, GeoJSON), any CRS
    layer: str | None = None  # layer name inside a multi-layer source
    code_column: str = "LSOA21CD"
    name_column: str = "LSOA21NM"
    lad_code_column: str | None = "LAD22CD"
    lad_name_column: str | None = "LAD22NM"
    lad_codes: list[str] = []  # keep LSOAs of these local authorities (codes)...
    lad_names: list[str] = []  # ...or these names; both empty = every LSOA of the layer
    wards: WardLookup | None = None


class Period(_Strict):
    name: str  # label used in tables, e.g. "2024/25"
    start: str  # first month, YYYY-MM
    end: str  # last month, YYYY-MM (inclusive)

    @field_validator("start", "end")
    @classmethod
    def _month(cls, v: str) -> str:
        if not _MONTH.match(v):
            raise ValueError(f"{v!r} is not a month of the form YYYY-MM")
        return v

    @model_validator(mode="after")
    def _order(self) -> Period:
        if self.end < self.start:
            raise ValueError(f"period {self.name!r} ends ({self.end}) before it starts")
        return self


class PoliceUkSource(_Strict):
    path: str  # a folder tree of months, a glob of CSVs, or the downloaded .zip
    label: str = "police.uk street-level crime"
    lsoa_tolerance_m: float = 150.0  # a point farther than this from its stated LSOA is rejected
    points_are_generated: bool = False  # label outputs when positions were generated, not real


class AreaCountsSource(_Strict):
    path: str
    format: Literal["met_monthly", "met_annual"]
    crime_group: str | None = None  # met_annual: the canonical group the file counts
    label: str = "Metropolitan Police LSOA crime counts"


class DeprivationSource(_Strict):
    path: str
    # iod_file7: official File 7 headers; humaniverse: <domain>_score columns as in the IMD R
    # package; columns: a mapping given below.
    format: Literal["iod_file7", "humaniverse", "columns"] = "iod_file7"
    code_column: str | None = None  # required for format "columns"
    columns: dict[str, str] = {}  # domain -> column header (format "columns")
    measure: Literal["score", "rank"] = "score"  # IoD2019 on the humaniverse layout has no scores


class PopulationSource(_Strict):
    path: str
    # census_age_long: lsoa code, age_group, usual_residents rows (ONS custom dataset);
    # ons_mid_year: ONS mid-year estimate layout (Persons_All-Ages, Persons_16-29, ...);
    # columns: code_column / total_column / young_columns given below.
    format: Literal["census_age_long", "ons_mid_year", "columns"] = "census_age_long"
    code_column: str | None = None
    total_column: str | None = None
    young_columns: list[str] = []  # columns (or age_group labels) counted as young residents
    vintage_lookup: str | None = None  # ONS LSOA11<->LSOA21 lookup, when vintages differ


class OtherPointsSource(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # becomes the indicator name
    label: str
    path: str
    x_column: str
    y_column: str
    crs: str = "EPSG:4326"
    date_column: str | None = None  # YYYY-MM or ISO dates
    weight_column: str | None = None  # harm or weight per record (default 1)


class Sources(_Strict):
    police_uk: list[PoliceUkSource] = []
    area_counts: list[AreaCountsSource] = []
    deprivation: DeprivationSource | None = None
    population: PopulationSource | None = None
    other_points: list[OtherPointsSource] = []
    # Sources on the other LSOA vintage (2011 vs 2021) are converted to the study area's codes by
    # a best-fit lookup: built by area overlap from the other vintage's boundaries (preferred)...
    other_vintage_boundaries: str | None = None
    other_vintage_code_column: str = "LSOA11CD"
    # ...or read from the ONS lookup (LSOA11CD, LSOA21CD columns)
    lsoa_lookup: str | None = None


class Harm(_Strict):
    table: str | None = None  # a CSV (crime_group, days[, source]) overriding the packaged CCHI
    asb_weight: float = 0.0  # CCHI days per ASB incident (ASB is not a crime: 0 keeps it out)
    violence_groups: list[str] = ["violence", "violence_and_sexual", "sexual_offences"]


class Indicators(_Strict):
    shrink_rates: bool = True  # empirical-Bayes shrinkage of per-capita rates to the borough mean
    per: float = 1000.0  # rates per this many residents


class IndexSpec(_Strict):
    normalisation: Literal["zscore", "minmax", "rank", "exponential"] = "zscore"
    aggregation: Literal["linear", "geometric"] = "linear"
    weights: dict[str, Annotated[float, Field(ge=0)]]  # indicator -> weight (any scale)


class Uncertainty(_Strict):
    draws: int = Field(default=1000, ge=0)  # Monte Carlo draws (0 = skip)
    weight_spread: float = Field(default=0.25, ge=0, lt=1)  # each weight x U(1-s, 1+s)
    resample_counts: bool = True  # Poisson-resample the crime counts in every draw
    top_fraction: float = Field(default=0.1, gt=0, le=1)  # "top decile" for P(top)
    fragile_below: float = Field(default=0.5, ge=0, le=1)  # selection frequency flagged fragile


class Hotspots(_Strict):
    indicators: list[str] = ["harm_total", "harm_violence"]  # Gi* and local Moran on these
    weights: Literal["queen", "rook", "distance_band", "knn"] = "queen"
    k: int = Field(default=8, ge=1)  # neighbours for knn
    threshold_m: float | None = None  # distance band; None = smallest band leaving no island
    permutations: int = Field(default=999, ge=0)
    fdr: bool = True  # Benjamini-Hochberg control of the false discovery rate
    alpha: float = Field(default=0.05, gt=0, lt=1)


class Density(_Strict):
    cell_size_m: float = Field(default=50.0, gt=0)
    bandwidth_m: float | None = None  # None = ArcGIS-style spatial-variant Silverman rule
    kernel: Literal["quartic", "gaussian"] = "quartic"
    groups: list[str] | None = None  # None = every crime group with points, plus total harm


class Micro(_Strict):
    cell_size_m: float = Field(default=150.0, gt=0)
    top_n: int = Field(default=10, ge=1)  # micro-places listed per neighbourhood
    density_quantile: float = Field(default=0.95, gt=0, lt=1)  # "KDE hot spot" threshold
    # street segments instead of grid cells when a road layer is given (e.g. OS Open Roads)
    roads: str | None = None  # any OGR line layer, any CRS; None = grid cells
    roads_layer: str | None = None  # e.g. "road_link" in OS Open Roads
    roads_name_column: str | None = None  # e.g. "name1" (OS Open Roads)
    segment_length_m: float = Field(default=150.0, ge=1)  # longest street segment
    max_snap_m: float = Field(default=50.0, gt=0)  # records farther from any road are counted apart
    min_records: int = Field(default=1, ge=1)  # places with fewer records are not listed
    # share of a cell's area (segment's length) inside its neighbourhood needed to be listed
    min_overlap: float = Field(default=0.0, ge=0, le=1)
    max_crime_types: int = Field(default=3, ge=1)  # groups named in crime_types (+N more)
    clip_cells: bool = True  # draw cells clipped to their neighbourhood (cell_id names the square)


class Selection(_Strict):
    n: int = Field(default=9, ge=1)  # the number of priority neighbourhoods
    min_lsoas: int = Field(default=3, ge=1)
    max_lsoas: int = Field(default=8, ge=1)
    min_residents: int | None = None
    max_residents: int | None = None
    # an LSOA joins a neighbourhood only if its index score is at least this quantile of the
    # borough's scores (0.8: the top 20%)
    threshold_quantile: float = Field(default=0.8, gt=0, lt=1)
    separate: bool = True  # neighbourhoods may not touch each other (distinct working groups)
    # a neighbourhood that cannot reach min_lsoas with LSOAs above the threshold: "borrow" its
    # best neighbours below it (listed as borrowed) or "drop" it and try the next seed
    pad: Literal["borrow", "drop"] = "borrow"

    @model_validator(mode="after")
    def _bounds(self) -> Selection:
        if self.max_lsoas < self.min_lsoas:
            raise ValueError("max_lsoas is smaller than min_lsoas")
        return self


class Trial(_Strict):
    units: Literal["micro_places", "neighbourhoods"] = "micro_places"
    block_size: int = Field(default=2, ge=2)  # units per randomisation block
    block_within_neighbourhood: bool = True  # blocks never mix two neighbourhoods (micro-places)
    min_harm: float | None = Field(default=None, ge=0)  # units below this harm are excluded
    buffer_m: float | None = Field(default=None, ge=0)  # treatment/control kept > this apart


class Maps(_Strict):
    simplify_m: float = Field(default=10.0, ge=0)  # topology-preserving simplification
    basemap: bool = True  # OpenStreetMap tiles when online (layers draw without them)
    # The overview draws every LSOA while the page stays within this size (MB); beyond it (a
    # whole force or region) it draws local authorities, else grid squares, coloured by the
    # share of their LSOAs in the top index decile
    overview_budget_mb: float = Field(default=2.0, gt=0)
    max_areas: int = Field(default=400, ge=2)  # most authorities or grid squares drawn
    area_maps: bool = True  # then also one LSOA map per local authority (maps/area_<code>.html)
    aggregate_simplify_m: float = Field(default=50.0, ge=0)  # authority outlines, metres


class Report(_Strict):
    top_n: int = Field(default=20, ge=1)  # LSOAs listed in the report's top table
    # places residents name as unsafe (CSV: place, wards separated by ";"), held against the nine
    face_validity: str | None = None


class Engine(_Strict):
    """Where ingest and density run: in this process, or on Dask (see docs/DASK.md)."""

    kind: Literal["local", "dask"] = "local"
    scheduler: str | None = None  # e.g. "tcp://host:8786"; None = a LocalCluster on this machine
    n_workers: int = Field(default=2, ge=1)  # LocalCluster only
    threads_per_worker: int = Field(default=1, ge=1)  # LocalCluster only


class Settings(_Strict):
    pipeline: PipelineMeta
    study_area: StudyArea
    periods: list[Period] = Field(min_length=1)  # the last is the current period
    sources: Sources
    harm: Harm = Harm()
    indicators: Indicators = Indicators()
    index: IndexSpec
    uncertainty: Uncertainty = Uncertainty()
    hotspots: Hotspots = Hotspots()
    density: Density = Density()
    micro: Micro = Micro()
    selection: Selection = Selection()
    trial: Trial = Trial()
    maps: Maps = Maps()
    report: Report = Report()
    engine: Engine = Engine()

    #: folder of the TOML file; relative paths resolve against it (not part of the TOML)
    base_dir: Path = Field(default=Path("."), exclude=True)
    source_file: Path = Field(default=Path("pipeline.toml"), exclude=True)
    toml_text: str = Field(default="", exclude=True, repr=False)

    @model_validator(mode="after")
    def _periods(self) -> Settings:
        names = [p.name for p in self.periods]
        if len(set(names)) != len(names):
            raise ValueError("period names must be unique")
        ordered = sorted(self.periods, key=lambda p: p.start)
        if ordered != list(self.periods):
            raise ValueError("periods must be listed oldest first")
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.start <= a.end:
                raise ValueError(f"periods {a.name!r} and {b.name!r} overlap")
        return self

    def path(self, value: str) -> Path:
        """Resolve a path from the TOML against the TOML file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def current_period(self) -> Period:
        return self.periods[-1]

    def output_dir(self, override: str | Path | None = None) -> Path:
        """The output folder: ``--out``, else ``pipeline.output_dir``, else outputs/<name>."""
        if override is not None:
            return Path(override)
        if self.pipeline.output_dir:
            return self.path(self.pipeline.output_dir)
        return self.base_dir.parent / "outputs" / self.pipeline.name


def _format_errors(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
        elif e["type"] == "missing":
            problems.append(f"{key}: required key is missing")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            problems.append(f"{key}: {e['msg']}{shown}")
    return problems


def load_settings(path: str | Path) -> Settings:
    """Read and validate a pipeline TOML file.

    Parameters
    ----------
    path
        The pipeline file, e.g. ``pipelines/croydon.toml``.

    Returns
    -------
    Settings
        The validated settings, with paths resolving against the file's folder.

    Raises
    ------
    ConfigError
        When the file is missing, is not TOML, or breaks the schema (each problem names its key).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    try:
        return Settings.model_validate(
            {
                **data,
                "base_dir": path.resolve().parent,
                "source_file": path.resolve(),
                "toml_text": text,
            }
        )
    except ValidationError as exc:
        raise ConfigError(path, _format_errors(exc)) from None
