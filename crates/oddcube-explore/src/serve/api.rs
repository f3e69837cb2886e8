//! The explorer's JSON API (`/api/…`): catalogue summary, the filtered/sorted/paginated table,
//! one galaxy's details with its latent neighbours, map tiles (PNG), the latent map, labels and
//! the review queue (`/api/next`, the active-learning blend of `oddcube_score::relevance`).
//! Every error is a JSON object `{"error": "..."}` with a matching status code.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{AppState, GalaxyMaps};
use crate::plot::anomaly::{NO_MAPS_FILE, PixelScaleSource, line_caption};
use crate::plot::colouring::{ColourStretch, colour_positions};
use crate::plot::galaxy::consensus_note;
use crate::plot::{ColourMap, Scale, bpt, tiles};
use oddcube_score::feedback::UserLabel;
use oddcube_score::knn::{self, LatentView, Metric};
use oddcube_score::results::Column;

/// An API failure: status code and a message for the page.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.message, "status": self.status.as_u16() })),
        )
            .into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// Largest page of the table API.
pub const MAX_PAGE: usize = 500;
/// Latent neighbours shown on a galaxy page.
pub const NEIGHBOURS: usize = 8;

/// Catalogue-wide facts the page needs to build its controls.
pub async fn summary(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let catalog = &state.results.catalog;
    let mut ifu_sizes: Vec<u32> = catalog
        .u32("ifu_size")
        .map(<[u32]>::to_vec)
        .unwrap_or_default();
    ifu_sizes.sort_unstable();
    ifu_sizes.dedup();
    let mut kinds: Vec<String> = state.kinds.iter().flatten().flatten().cloned().collect();
    kinds.sort();
    kinds.dedup();
    let n_flagged = catalog
        .bool("fdr_flag")
        .map(|f| f.iter().filter(|v| **v).count())
        .unwrap_or(0);
    let labels = state.labels.lock().map_err(ApiError::internal)?.all().len();
    let bandwidth = state
        .with_relevance(|m| m.bandwidth())
        .map_err(ApiError::internal)?;
    let manifest = &state.results.manifest;
    Ok(Json(json!({
        "n": state.len(),
        "score_columns": state.score_columns,
        "lines": state.lines,
        "size": state.size,
        "rank_by": manifest.rank_by,
        "fdr": manifest.fdr,
        "n_flagged": n_flagged,
        "n_residuals": state.residuals.as_ref().map(|r| r.len()).unwrap_or(0),
        "has_dataset": state.dataset.is_some(),
        "has_model": state.reconstructor.is_some(),
        "has_anomaly_maps": state.has_anomaly_maps(),
        "projection": state.projection.as_ref().map(|p| p.info.method.to_string()),
        "ifu_sizes": ifu_sizes,
        "kinds": kinds,
        "n_labels": labels,
        "label_warnings": state.label_warnings(),
        "live_columns": LIVE_COLUMNS,
        "relevance": { "bandwidth": bandwidth, "blend": "adjusted = anomaly percentile² × relevance / prior" },
        "results_dir": state.results.dir.display().to_string(),
    })))
}

/// Query of the table API.
#[derive(Debug, Default, Deserialize)]
pub struct TableQuery {
    /// Column to sort by (any score column, `rank`, `plateifu`, `ifu_size`, `z`, `qvalue`, ...).
    pub sort: Option<String>,
    /// `asc` or `desc` (default: descending for scores, ascending for rank and text).
    pub order: Option<String>,
    /// First row of the page.
    pub offset: Option<usize>,
    /// Rows per page (≤ [`MAX_PAGE`]).
    pub limit: Option<usize>,
    /// Case-insensitive substring of plate-ifu or MaNGA-ID.
    pub q: Option<String>,
    /// `1`/`true`: FDR-flagged galaxies only.
    pub flag: Option<String>,
    /// IFU size (fibres) to keep.
    pub ifu: Option<u32>,
    /// `interesting`, `artefact`, `normal`, a relevance grade `0`–`5`, `unlabelled` or
    /// `labelled`.
    pub label: Option<String>,
    /// A kind (from `--kinds` or a `kind` column).
    pub kind: Option<String>,
    /// `critical`: only galaxies the DAP or DRP flagged CRITICAL; `ok`: all but those.
    pub quality: Option<String>,
}

/// A sort key of one row: numbers sort numerically (NaN last), text lexically.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key<'a> {
    Number(f64),
    Text(&'a str),
}

fn sort_key<'a>(column: &'a Column, row: usize) -> Key<'a> {
    match column {
        Column::F64(v) => Key::Number(v.get(row).copied().unwrap_or(f64::NAN)),
        Column::U32(v) => Key::Number(v.get(row).map(|&x| f64::from(x)).unwrap_or(f64::NAN)),
        Column::Bool(v) => Key::Number(
            v.get(row)
                .map(|&x| f64::from(u8::from(x)))
                .unwrap_or(f64::NAN),
        ),
        Column::Str(v) => Key::Text(v.get(row).map(String::as_str).unwrap_or("")),
    }
}

/// The live active-learning columns (computed from the labels, not stored in the catalogue):
/// the blend, the predicted relevance and its uncertainty, and the 1-based review rank.
pub const LIVE_COLUMNS: [&str; 4] = ["adjusted", "relevance", "relevance_sd", "review_rank"];

/// The live values of every row, copied out of the model under its lock.
struct Live {
    adjusted: Vec<f64>,
    relevance: Vec<f64>,
    uncertainty: Vec<f64>,
    review_rank: Vec<u32>,
    order: Vec<usize>,
}

impl Live {
    fn of(state: &AppState) -> ApiResult<Live> {
        state
            .with_relevance(|m| Live {
                adjusted: m.adjusted().to_vec(),
                relevance: m.relevance().to_vec(),
                uncertainty: m.uncertainty().to_vec(),
                review_rank: m.ranks(),
                order: m.order().to_vec(),
            })
            .map_err(ApiError::internal)
    }

    fn column(&self, name: &str) -> Option<Column> {
        Some(match name {
            "adjusted" => Column::F64(self.adjusted.clone()),
            "relevance" => Column::F64(self.relevance.clone()),
            "relevance_sd" => Column::F64(self.uncertainty.clone()),
            "review_rank" => Column::U32(self.review_rank.clone()),
            _ => return None,
        })
    }

    fn json(&self, row: usize) -> Value {
        json!({
            "adjusted": self.adjusted.get(row),
            "relevance": self.relevance.get(row),
            "relevance_sd": self.uncertainty.get(row),
            "review_rank": self.review_rank.get(row),
        })
    }
}

fn row_json(
    state: &AppState,
    row: usize,
    label: Option<&oddcube_score::feedback::LabelEntry>,
    live: &Live,
) -> Value {
    let catalog = &state.results.catalog;
    let str_at = |name: &str| catalog.str(name).and_then(|c| c.get(row)).cloned();
    let scores: serde_json::Map<String, Value> = state
        .score_columns
        .iter()
        .map(|c| {
            (
                c.clone(),
                json!(catalog.f64(c).and_then(|v| v.get(row)).copied()),
            )
        })
        .collect();
    json!({
        "row": row,
        "plateifu": str_at("plateifu"),
        "mangaid": str_at("mangaid"),
        "rank": catalog.u32("rank").and_then(|v| v.get(row)),
        "ifu_size": catalog.u32("ifu_size").and_then(|v| v.get(row)),
        "fdr_flag": catalog.bool("fdr_flag").and_then(|v| v.get(row)),
        "pvalue": catalog.f64("pvalue").and_then(|v| v.get(row)),
        "qvalue": catalog.f64("qvalue").and_then(|v| v.get(row)),
        "scores": scores,
        "label": label.map(|l| l.label.name()),
        "kind": state.kinds.as_ref().and_then(|k| k.get(row).cloned().flatten()),
        "live": live.json(row),
    })
}

/// The ranked table: filtered, sorted and paginated on the server.
pub async fn galaxies(
    State(state): State<Arc<AppState>>,
    query: std::result::Result<Query<TableQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let catalog = &state.results.catalog;
    let sort = query.sort.as_deref().unwrap_or("rank");
    // The labels and the live model are read together so a page never mixes two states.
    let labels = state.labels.lock().map_err(ApiError::internal)?.clone();
    let live = Live::of(&state)?;
    let live_column = live.column(sort);
    let column = match &live_column {
        Some(c) => c,
        None => catalog.column(sort).ok_or_else(|| {
            let names: Vec<&str> = catalog.columns.iter().map(|(n, _)| n.as_str()).collect();
            ApiError::bad_request(format!(
                "unknown sort column {sort:?}; columns: {}, {}",
                names.join(", "),
                LIVE_COLUMNS.join(", ")
            ))
        })?,
    };
    let descending = match query.order.as_deref() {
        Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order must be asc or desc, not {other:?}"
            )));
        }
        None => {
            matches!(column, Column::F64(_))
                && !matches!(sort, "pvalue" | "qvalue" | "relevance_sd")
        }
    };
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_PAGE}"
        )));
    }
    let offset = query.offset.unwrap_or(0);
    let needle = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_lowercase);
    let flagged_only = matches!(query.flag.as_deref(), Some("1" | "true" | "yes"));
    let label_filter = query
        .label
        .as_deref()
        .filter(|l| !l.is_empty() && *l != "any");
    if let Some(l) = label_filter.filter(|l| !matches!(*l, "labelled" | "unlabelled")) {
        l.parse::<UserLabel>().map_err(ApiError::bad_request)?;
    }
    let kind_filter = query
        .kind
        .as_deref()
        .filter(|k| !k.is_empty() && *k != "any");
    let quality_filter = match query.quality.as_deref() {
        None | Some("" | "any") => None,
        Some("critical") => Some(true),
        Some("ok") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "quality must be critical, ok or any, not {other:?}"
            )));
        }
    };
    // Catalogues written before the quality columns have no `critical`: nothing is critical.
    let critical = catalog.bool("critical");
    let plateifus = catalog.str("plateifu").unwrap_or(&[]);
    let flags = catalog.bool("fdr_flag");
    let ifus = catalog.u32("ifu_size");
    // Live columns change with every label: sorted per request (the blend's order is kept by
    // the model), never cached.
    let order = match (sort, descending, &live_column) {
        ("adjusted", true, _) => Arc::new(live.order.clone()),
        (_, _, Some(c)) => Arc::new(sorted_rows(c, state.len(), descending)),
        _ => state.sort_order(sort, column, descending),
    };
    let rows: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&r| {
            needle.as_ref().is_none_or(|q| {
                state
                    .search_keys
                    .get(r)
                    .is_some_and(|k| k.contains(q.as_str()))
            })
        })
        .filter(|&r| !flagged_only || flags.and_then(|f| f.get(r)).copied().unwrap_or(false))
        .filter(|&r| {
            quality_filter.is_none_or(|want| {
                critical.and_then(|c| c.get(r)).copied().unwrap_or(false) == want
            })
        })
        .filter(|&r| {
            query
                .ifu
                .is_none_or(|want| ifus.and_then(|v| v.get(r)) == Some(&want))
        })
        .filter(|&r| {
            let entry = plateifus.get(r).and_then(|p| labels.get(p));
            match label_filter {
                None => true,
                Some("labelled") => entry.is_some(),
                Some("unlabelled") => entry.is_none(),
                Some(name) => entry.is_some_and(|e| e.label.name() == name),
            }
        })
        .filter(|&r| {
            kind_filter.is_none_or(|want| {
                state
                    .kinds
                    .as_ref()
                    .and_then(|k| k.get(r))
                    .and_then(|k| k.as_deref())
                    == Some(want)
            })
        })
        .collect();
    let total = rows.len();
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|&r| {
            row_json(
                &state,
                r,
                plateifus.get(r).and_then(|p| labels.get(p)),
                &live,
            )
        })
        .collect();
    Ok(Json(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "order": if descending { "desc" } else { "asc" },
        "rows": page,
    })))
}

fn find_row(state: &AppState, plateifu: &str) -> ApiResult<usize> {
    state
        .results
        .catalog
        .row_of(plateifu)
        .ok_or_else(|| ApiError::not_found(format!("no galaxy {plateifu:?} in this catalogue")))
}

/// One galaxy: metadata, scores, per-line shares, latent neighbours, links and map availability.
pub async fn galaxy(
    State(state): State<Arc<AppState>>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let Path(plateifu) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let row = find_row(&state, &plateifu)?;
    let catalog = &state.results.catalog;
    let f = |name: &str| catalog.f64(name).and_then(|v| v.get(row)).copied();
    let labels = state.labels.lock().map_err(ApiError::internal)?.clone();
    let live = Live::of(&state)?;
    let mut value = row_json(&state, row, labels.get(&plateifu), &live);
    let shares: Vec<Value> = catalog
        .line_columns()
        .iter()
        .map(|(name, v)| json!({ "line": name.trim_start_matches(oddcube_score::results::LINE_COLUMN_PREFIX), "share": v.get(row) }))
        .collect();
    let n = state.len();
    let dim = state.results.latent_dim;
    let neighbours: Vec<Value> = if n > 1 && dim > 0 {
        let view = LatentView::new(&state.results.latents, n, dim).map_err(ApiError::internal)?;
        let found = knn::nearest_to(&view, row, NEIGHBOURS.min(n - 1), Metric::Euclidean)
            .map_err(ApiError::internal)?;
        let plateifus = catalog.str("plateifu").unwrap_or(&[]);
        found
            .iter()
            .map(|nb| {
                let id = plateifus.get(nb.index).cloned().unwrap_or_default();
                json!({
                    "plateifu": id,
                    "distance": nb.distance,
                    "rank": catalog.u32("rank").and_then(|v| v.get(nb.index)),
                    "label": labels.get(&id).map(|l| l.label.name()),
                    "has_maps": state.has_maps(nb.index),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let maps = state.galaxy_maps(row);
    let bpt_counts = maps.as_ref().map(|m| {
        let count = |flux: &[f32]| {
            bpt::class_map(flux, &m.w, &state.lines, state.size, state.stretch)
                .ok()
                .map(|c| {
                    let counts = bpt::class_counts(&c);
                    oddcube_data::bpt::BptClass::ALL
                        .iter()
                        .zip(counts)
                        .map(|(k, n)| (k.name().to_string(), json!(n)))
                        .collect::<serde_json::Map<_, _>>()
                })
        };
        json!({ "input": count(&m.x), "recon": m.xhat.as_deref().and_then(count) })
    });
    let (ra, dec) = (f("ra"), f("dec"));
    let skyserver =
        oddcube_data::links::skyserver_url(ra.unwrap_or(f64::NAN), dec.unwrap_or(f64::NAN));
    // The DAP/DRP quality flags and the BPT class of the centre, when the catalogue has them
    // (RESULTS scored before they existed do not: the page then shows none).
    let s = |name: &str| catalog.str(name).and_then(|v| v.get(row)).cloned();
    let quality = catalog
        .bool("critical")
        .and_then(|v| v.get(row))
        .map(|&critical| {
            json!({
                "critical": critical,
                "dapqual": catalog.u32("dapqual").and_then(|v| v.get(row)),
                "dapqual_bits": s("dapqual_bits"),
                "drp3qual": catalog.u32("drp3qual").and_then(|v| v.get(row)),
                "drp3qual_bits": s("drp3qual_bits"),
            })
        });
    if let Value::Object(obj) = &mut value {
        obj.insert("ra".into(), json!(ra));
        obj.insert("dec".into(), json!(dec));
        obj.insert("z".into(), json!(f("z")));
        obj.insert("anomaly".into(), anomaly_json(&state, row));
        obj.insert(
            "n_good".into(),
            json!(catalog.u32("n_good").and_then(|v| v.get(row))),
        );
        obj.insert("line_shares".into(), json!(shares));
        obj.insert("neighbours".into(), json!(neighbours));
        obj.insert(
            "maps".into(),
            json!(
                maps.as_ref()
                    .map(|m| json!({ "source": m.source, "has_recon": m.xhat.is_some() }))
            ),
        );
        obj.insert("bpt".into(), json!(bpt_counts));
        obj.insert("quality".into(), json!(quality));
        obj.insert("daptype".into(), json!(s("daptype")));
        obj.insert("bpt_class".into(), json!(s("bpt_class")));
        obj.insert(
            "links".into(),
            json!({ "marvin": oddcube_data::links::marvin_url(&plateifu), "skyserver": skyserver }),
        );
        obj.insert("lines".into(), json!(state.lines));
        obj.insert(
            "time_labelled".into(),
            json!(labels.get(&plateifu).map(|l| l.time.clone())),
        );
    }
    Ok(Json(value))
}

/// The galaxy page's anomaly-map block: whether there is a map (and why not), the localized
/// score, the region (catalogue values and its outline in grid pixels) and the map's stretch.
fn anomaly_json(state: &AppState, row: usize) -> Value {
    let catalog = &state.results.catalog;
    let local = catalog.f64("local").and_then(|v| v.get(row)).copied();
    let Some(view) = state.anomaly_view(row) else {
        let reason = if state.has_anomaly_maps() {
            "no anomaly map for this galaxy (no usable pixels)"
        } else {
            NO_MAPS_FILE
        };
        return json!({ "available": false, "reason": reason, "local": local });
    };
    let region = view.region.as_ref().map(|r| {
        json!({
            "dx": r.dx,
            "dy": r.dy,
            "area": r.area,
            "line": (!r.line.is_empty()).then_some(r.line.as_str()),
        })
    });
    let outline = view.outline.map(|o| {
        json!({
            "col": o.col,
            "row": o.row,
            "radius": o.radius,
            "pixel_arcsec": o.pixel_arcsec,
            "pixel_scale_from": match o.source {
                PixelScaleSource::Dataset => "dataset",
                PixelScaleSource::Map => "map",
            },
        })
    });
    json!({
        "available": true,
        "local": local,
        // Runs whose maps this one is the consensus of (1: the model's own), and what the
        // figure of `plot galaxy` says about it, so that page and figure say the same.
        "runs": state.map_runs(),
        "consensus_note": consensus_note(state.map_runs()),
        "region": region,
        "outline": outline,
        "line": line_caption(view.region.as_ref()),
        "stretch": { "kind": "log", "lo": view.stretch.lo, "hi": view.stretch.hi },
    })
}

/// All `n` rows sorted by `column` (NaN last, ties by row).
fn sorted_rows(column: &Column, n: usize, descending: bool) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..n).collect();
    rows.sort_by(|&a, &b| {
        let (ka, kb) = (sort_key(column, a), sort_key(column, b));
        let nan = |k: &Key<'_>| matches!(k, Key::Number(v) if v.is_nan());
        match (nan(&ka), nan(&kb)) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => {
                let ord = ka.partial_cmp(&kb).unwrap_or(std::cmp::Ordering::Equal);
                (if descending { ord.reverse() } else { ord }).then(a.cmp(&b))
            }
        }
    });
    rows
}

impl AppState {
    /// All catalogue rows sorted by `column` (NaN last, ties by row), cached per column and
    /// direction: sorting 10^5 rows once instead of per request keeps table pages fast.
    fn sort_order(&self, name: &str, column: &Column, descending: bool) -> Arc<Vec<usize>> {
        let key = (name.to_string(), descending);
        if let Some(hit) = self
            .sort_cache
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            return hit;
        }
        let rows = Arc::new(sorted_rows(column, self.len(), descending));
        if let Ok(mut cache) = self.sort_cache.lock() {
            cache.insert(key, Arc::clone(&rows));
        }
        rows
    }

    /// True when maps of catalogue row `row` can be shown.
    fn has_maps(&self, row: usize) -> bool {
        let stored = self.residuals.as_ref().is_some_and(|r| {
            self.results
                .catalog
                .str("plateifu")
                .and_then(|p| p.get(row))
                .is_some_and(|id| r.index_of(id).is_some())
        });
        stored || self.dataset_rows.get(row).copied().flatten().is_some()
    }
}

/// Query of the tile API.
#[derive(Debug, Default, Deserialize)]
pub struct TileQuery {
    /// Magnification (1..=16, default 4).
    pub zoom: Option<usize>,
}

fn png_response(bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// A PNG tile: `kind` ∈ input | recon | residual | bpt-input | bpt-recon | anomaly; `line` is a
/// line name (or anything for BPT and anomaly tiles) with an optional `.png` suffix.
pub async fn tile(
    State(state): State<Arc<AppState>>,
    path: std::result::Result<Path<(String, String, String)>, PathRejection>,
    query: std::result::Result<Query<TileQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path((plateifu, kind, line)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let row = find_row(&state, &plateifu)?;
    let zoom = query.zoom.unwrap_or(4);
    if kind == "anomaly" {
        // The anomaly map lives in the RESULTS directory, not with the line maps: it is shown
        // even when neither residuals nor a dataset are there.
        let view = state.anomaly_view(row).ok_or_else(|| {
            ApiError::not_found(if state.has_anomaly_maps() {
                format!("no anomaly map for {plateifu} (no usable pixels)")
            } else {
                NO_MAPS_FILE.to_string()
            })
        })?;
        let bytes = tiles::anomaly_tile(
            view.map,
            state.size,
            view.stretch,
            view.outline.as_ref(),
            zoom,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        return Ok(png_response(bytes));
    }
    let maps: GalaxyMaps = state.galaxy_maps(row).ok_or_else(|| {
        ApiError::not_found(format!(
            "no maps for {plateifu}: store them with `oddcube score --residuals all`, or start serve with --data DATASET"
        ))
    })?;
    let pixels = state.size * state.size;
    let no_recon = || {
        ApiError::not_found(format!(
            "no reconstruction for {plateifu} (store residuals or pass --model)"
        ))
    };
    let bytes = match kind.as_str() {
        "bpt-input" | "bpt-recon" => {
            let flux = if kind == "bpt-input" {
                &maps.x
            } else {
                maps.xhat.as_ref().ok_or_else(no_recon)?
            };
            let classes = bpt::class_map(flux, &maps.w, &state.lines, state.size, state.stretch)
                .map_err(|e| ApiError::not_found(e.to_string()))?;
            tiles::class_tile(&classes, state.size, zoom)
        }
        "input" | "recon" | "residual" => {
            let name = line.strip_suffix(".png").unwrap_or(&line);
            let l = state.lines.iter().position(|n| n == name).ok_or_else(|| {
                ApiError::not_found(format!(
                    "no line {name:?}; lines: {}",
                    state.lines.join(", ")
                ))
            })?;
            let range = l * pixels..(l + 1) * pixels;
            let w = &maps.w[range.clone()];
            match kind.as_str() {
                "residual" => {
                    let residual = maps.residual.as_ref().ok_or_else(no_recon)?;
                    let abs = residual
                        .iter()
                        .zip(&maps.w)
                        .filter(|(_, w)| **w > 0.0)
                        .map(|(r, _)| f64::from(r.abs()));
                    let half = Scale::percentile(abs, 0.0, 99.0)
                        .map(|s| s.hi)
                        .unwrap_or(3.0)
                        .max(3.0)
                        .ceil();
                    tiles::map_tile(
                        &residual[range],
                        w,
                        state.size,
                        Scale::symmetric(half),
                        ColourMap::Diverging,
                        zoom,
                    )
                }
                _ => {
                    let good = maps.x[range.clone()]
                        .iter()
                        .zip(w)
                        .filter(|(_, w)| **w > 0.0)
                        .map(|(x, _)| f64::from(*x));
                    let scale =
                        Scale::percentile(good, 1.0, 99.5).unwrap_or(Scale { lo: 0.0, hi: 1.0 });
                    let values = if kind == "input" {
                        &maps.x[range]
                    } else {
                        &maps.xhat.as_ref().ok_or_else(no_recon)?[range]
                    };
                    tiles::map_tile(values, w, state.size, scale, ColourMap::Viridis, zoom)
                }
            }
        }
        other => {
            return Err(ApiError::not_found(format!(
                "unknown tile kind {other:?} (input, recon, residual, bpt-input, bpt-recon, anomaly)"
            )));
        }
    }
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(png_response(bytes))
}

/// A colour-bar strip: `viridis`, `plasma`, `inferno` or `diverging` (with optional `.png`).
pub async fn colourbar(Path(name): Path<String>) -> ApiResult<Response> {
    let cmap = match name.strip_suffix(".png").unwrap_or(&name) {
        "viridis" => ColourMap::Viridis,
        "plasma" => ColourMap::Plasma,
        "diverging" => ColourMap::Diverging,
        "inferno" => ColourMap::Inferno,
        other => return Err(ApiError::not_found(format!("unknown colour map {other:?}"))),
    };
    Ok(png_response(
        tiles::colourbar_tile(cmap, 256, 12).map_err(ApiError::internal)?,
    ))
}

/// Query of the map API.
#[derive(Debug, Default, Deserialize)]
pub struct MapQuery {
    /// Column that colours the points (default: the ranking score).
    pub colour: Option<String>,
}

/// The latent map: coordinates, colour values, plate-ifus and ranks of every galaxy (columnar).
pub async fn map(
    State(state): State<Arc<AppState>>,
    query: std::result::Result<Query<MapQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let projection = state.projection.as_ref().ok_or_else(|| {
        ApiError::not_found("no latent map yet: run `oddcube project RESULTS` first")
    })?;
    let catalog = &state.results.catalog;
    let name = query
        .colour
        .unwrap_or_else(|| state.results.manifest.rank_by.clone());
    let live = Live::of(&state)?;
    let live_column = live.column(&name);
    let column = match &live_column {
        Some(c) => c,
        None => catalog
            .column(&name)
            .ok_or_else(|| ApiError::bad_request(format!("unknown colour column {name:?}")))?,
    };
    let rows = &state.projection_rows;
    let colour: Vec<Option<f64>> = rows
        .iter()
        .map(|r| {
            r.and_then(|r| match sort_key(column, r) {
                Key::Number(v) if v.is_finite() => Some(v),
                _ => None,
            })
        })
        .collect();
    // Where each point falls on the colour scale is decided here, by the same per-column rule
    // as `oddcube plot map` (plot::colouring), so the page and the figure agree.
    let values: Vec<f64> = colour.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let positions = colour_positions(&name, &values);
    let ranks: Vec<Option<u32>> = rows
        .iter()
        .map(|r| r.and_then(|r| catalog.u32("rank").and_then(|v| v.get(r).copied())))
        .collect();
    #[derive(Serialize)]
    struct MapPayload<'a> {
        method: String,
        colour: &'a str,
        x: Vec<f32>,
        y: Vec<f32>,
        c: Vec<Option<f64>>,
        t: Vec<Option<f64>>,
        stretch: ColourStretch,
        reversed: bool,
        low_end: f64,
        high_end: f64,
        plateifu: &'a [String],
        rank: Vec<Option<u32>>,
    }
    let payload = MapPayload {
        method: projection.info.method.to_string(),
        colour: &name,
        x: projection.xy.iter().map(|p| p[0]).collect(),
        y: projection.xy.iter().map(|p| p[1]).collect(),
        c: colour,
        t: positions.t,
        stretch: positions.rule.stretch,
        reversed: positions.rule.reversed,
        low_end: positions.low_end,
        high_end: positions.high_end,
        plateifu: &projection.plateifus,
        rank: ranks,
    };
    Ok(Json(
        serde_json::to_value(payload).map_err(ApiError::internal)?,
    ))
}

/// All labels.
pub async fn list_labels(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let labels = state.labels.lock().map_err(ApiError::internal)?;
    let list: Vec<Value> = labels
        .all()
        .iter()
        .map(|(p, e)| json!({ "plateifu": p, "label": e.label.name(), "time": e.time }))
        .collect();
    Ok(Json(json!({ "labels": list })))
}

/// Body of a label change: `label` null clears it.
#[derive(Debug, Deserialize)]
struct LabelRequest {
    plateifu: String,
    label: Option<String>,
}

/// Sets or clears a galaxy's label (JSON body `{"plateifu": ..., "label": "interesting"|"artefact"|"normal"|"0"…"5"|null}`;
/// the digits are relevance grades on Astronomaly's 0–5 scale).
pub async fn set_label(State(state): State<Arc<AppState>>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: LabelRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"plateifu\", \"label\"}}: {e}")))?;
    find_row(&state, &request.plateifu)?;
    let label = match request.label.as_deref() {
        None | Some("" | "none") => None,
        Some(name) => Some(name.parse::<UserLabel>().map_err(ApiError::bad_request)?),
    };
    let entry = state
        .set_label(&request.plateifu, label)
        .map_err(ApiError::internal)?;
    let next = next_json(&state, 0.0)?;
    Ok(Json(json!({
        "plateifu": request.plateifu,
        "label": entry.as_ref().map(|e| e.label.name()),
        "time": entry.as_ref().map(|e| e.time.clone()),
        "next": next,
    })))
}

/// Query of the review queue.
#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    /// Weight of the uncertainty bonus (0 = the best blended galaxy; see
    /// `docs/active-learning.md`).
    pub explore: Option<f64>,
}

fn next_json(state: &AppState, explore: f64) -> ApiResult<Value> {
    let plateifus = state.results.catalog.str("plateifu").unwrap_or(&[]);
    state
        .with_relevance(|m| {
            let row = m.next(explore);
            json!({
                "plateifu": row.and_then(|r| plateifus.get(r)),
                "row": row,
                "adjusted": row.map(|r| m.adjusted()[r]),
                "relevance": row.map(|r| m.relevance()[r]),
                "relevance_sd": row.map(|r| m.uncertainty()[r]),
                "n_labels": m.n_labels(),
                "explore": explore,
            })
        })
        .map_err(ApiError::internal)
}

/// The review queue: the unlabelled galaxy with the highest blended value (`plateifu` null when
/// every galaxy is labelled). `?explore=K` (K ≥ 0) adds K × the relevance uncertainty first.
pub async fn next(
    State(state): State<Arc<AppState>>,
    query: std::result::Result<Query<NextQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let explore = query.explore.unwrap_or(0.0);
    if !(explore.is_finite() && explore >= 0.0) {
        return Err(ApiError::bad_request(format!(
            "explore must be a finite number ≥ 0, not {explore}"
        )));
    }
    Ok(Json(next_json(&state, explore)?))
}

/// Unknown API paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint")
}
