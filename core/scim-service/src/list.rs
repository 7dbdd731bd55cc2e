//! Queries: `GET /Users?filter=…`, `POST /.search`. The parsed filter goes
//! to the backend's [`Scan`], which narrows by what it can push down; the
//! full filter is re-checked in memory, except on a page of an exact filter
//! copied as stored JSON text (`crate::ready`: the rows are the matches,
//! nothing is parsed). When the backend narrows
//! exactly ([`Backend::filter_is_exact`]) and no `sortBy` is given (or the
//! backend sorts by it itself, [`Backend::can_sort`]), the backend counts
//! and pages; otherwise the engine filters (and sorts, unless the backend
//! does) the narrowed rows itself, reading at most `max_scan` of them (400
//! `tooMany` beyond); only an in-memory sort keeps sort keys. With `Capabilities::keyset`, index paging (`startIndex`/`count`)
//! continues from the last key of the previous page when a client walks
//! pages in order (bounded memory of recent walks, validated by the
//! backend generation, so only with `Capabilities::generation` too), and
//! RFC 9865 cursors carry their key; without, both page by offset. Totals
//! are cached per generation only with `Capabilities::generation`.
//! With native membership, the derived `User.groups` of a page (or of each
//! chunk of rows a filter on `groups` needs) come from one
//! [`Backend::groups_of_many`] call, not one `groups_of` per user.
//!
//! [`Backend::filter_is_exact`]: crate::backend::Backend::filter_is_exact
//! [`Backend::can_sort`]: crate::backend::Backend::can_sort
//! [`Backend::groups_of_many`]: crate::backend::Backend::groups_of_many

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use scimgate_abi::{PluginError, Request};
use scimgate_scim::filter::MAX_FILTER_DEPTH;
use scimgate_scim::sort::{check_sortable, compare, SortOrder};
use scimgate_scim::urn;
use scimgate_scim::{
    list_response, parse_filter, project_owned, strip_never_owned, AttrPath, AttributeSelection,
    Filter,
};
use serde_json::{json, Value};

use crate::backend::{GroupRef, Record, RecordText, Scan, Visit};
use crate::errors::{bad, from_scim, invalid_value, too_many};
use crate::resources::Kind;
use crate::service::{Call, ScimService};

/// How many recent page walks (and totals) are remembered.
const MEMORY: usize = 64;

/// Rows matched per batch of derived `groups` when a filter or sort needs
/// them for every scanned row.
const CHUNK: usize = 100;

/// The query parameters of a list or search.
#[derive(Debug, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    /// RFC 9865: `Some("")` asks for the first page.
    pub cursor: Option<String>,
    pub selection: AttributeSelection,
}

fn int_param(name: &str, text: &str) -> Result<i64, PluginError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| invalid_value(format!("{name} must be an integer, not '{text}'")))
}

impl ListParams {
    pub fn from_query(req: &Request) -> Result<ListParams, PluginError> {
        let mut params = ListParams::default();
        let (mut attributes, mut excluded) = (None, None);
        for (key, value) in req.query_pairs() {
            match key.to_ascii_lowercase().as_str() {
                "filter" => params.filter = Some(value),
                "sortby" => params.sort_by = Some(value),
                "sortorder" => params.sort_order = Some(value),
                "startindex" => params.start_index = Some(int_param("startIndex", &value)?),
                "count" => params.count = Some(int_param("count", &value)?),
                "cursor" => params.cursor = Some(value),
                "attributes" => attributes = Some(value),
                "excludedattributes" => excluded = Some(value),
                _ => {}
            }
        }
        params.selection = AttributeSelection::parse(attributes.as_deref(), excluded.as_deref())
            .map_err(from_scim)?;
        Ok(params)
    }

    /// A SearchRequest body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Value) -> Result<ListParams, PluginError> {
        let object = body.as_object().ok_or_else(|| {
            bad(
                400,
                "invalidSyntax",
                "a SearchRequest must be a JSON object",
            )
        })?;
        let mut params = ListParams::default();
        let (mut attributes, mut excluded) = (Vec::new(), Vec::new());
        for (key, value) in object {
            let text = || match value {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(
                    400,
                    "invalidSyntax",
                    format!("'{key}' must be a string"),
                )),
            };
            let int = || match value {
                Value::Number(n) => n
                    .as_i64()
                    .ok_or_else(|| invalid_value(format!("'{key}' must be an integer"))),
                Value::String(s) => int_param(key, s),
                _ => Err(invalid_value(format!("'{key}' must be an integer"))),
            };
            let list = || -> Result<Vec<String>, PluginError> {
                match value {
                    Value::String(s) => Ok(s
                        .split(',')
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty())
                        .collect()),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            i.as_str().map(str::to_string).ok_or_else(|| {
                                bad(400, "invalidSyntax", format!("'{key}' must hold strings"))
                            })
                        })
                        .collect(),
                    _ => Err(bad(
                        400,
                        "invalidSyntax",
                        format!("'{key}' must be an array of strings"),
                    )),
                }
            };
            match key.to_ascii_lowercase().as_str() {
                "filter" => params.filter = Some(text()?),
                "sortby" => params.sort_by = Some(text()?),
                "sortorder" => params.sort_order = Some(text()?),
                "startindex" => params.start_index = Some(int()?),
                "count" => params.count = Some(int()?),
                "cursor" => params.cursor = Some(text()?),
                "attributes" => attributes = list()?,
                "excludedattributes" => excluded = list()?,
                _ => {}
            }
        }
        params.selection =
            AttributeSelection::from_lists(&attributes, &excluded).map_err(from_scim)?;
        Ok(params)
    }
}

/// Recent index walks and totals, each validated by the backend generation.
#[derive(Debug, Default)]
pub struct PageMemory {
    /// (shape, count, next startIndex) → (last seq returned, generation).
    walks: VecDeque<((u64, u64, u64), i64, u64)>,
    /// shape → (generation, totalResults).
    totals: VecDeque<(u64, u64, u64)>,
}

impl PageMemory {
    fn continuation(&mut self, key: (u64, u64, u64), generation: u64) -> Option<i64> {
        let at = self.walks.iter().position(|(k, _, _)| *k == key)?;
        let (_, seq, gen) = self.walks.remove(at)?;
        (gen == generation).then_some(seq)
    }

    fn remember(&mut self, key: (u64, u64, u64), seq: i64, generation: u64) {
        self.walks.retain(|(k, _, _)| *k != key);
        if self.walks.len() >= MEMORY {
            self.walks.pop_back();
        }
        self.walks.push_front((key, seq, generation));
    }

    fn total(&self, shape: u64, generation: u64) -> Option<u64> {
        self.totals
            .iter()
            .find(|(s, g, _)| *s == shape && *g == generation)
            .map(|(_, _, t)| *t)
    }

    fn remember_total(&mut self, shape: u64, generation: u64, total: u64) {
        self.totals.retain(|(s, _, _)| *s != shape);
        if self.totals.len() >= MEMORY {
            self.totals.pop_back();
        }
        self.totals.push_front((shape, generation, total));
    }
}

/// An RFC 9865 cursor: where the next page starts, for which query, since when.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    /// 0-based position of the first result.
    offset: u64,
    /// The `seq` after which the page starts (unsorted queries).
    after: Option<i64>,
    issued_ms: i64,
    shape: u64,
}

impl Cursor {
    fn encode(&self) -> String {
        let body = json!({"o": self.offset, "k": self.after, "t": self.issued_ms, "h": format!("{:016x}", self.shape)});
        URL_SAFE_NO_PAD.encode(body.to_string())
    }

    fn decode(text: &str, shape: u64, now_ms: i64, timeout_ms: i64) -> Result<Cursor, PluginError> {
        let invalid = || {
            bad(
                400,
                "invalidCursor",
                format!("'{text}' is not a cursor this server issued"),
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| invalid())?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        let offset = body.get("o").and_then(Value::as_u64).ok_or_else(invalid)?;
        let after = match body.get("k") {
            Some(Value::Null) | None => None,
            Some(v) => Some(v.as_i64().ok_or_else(invalid)?),
        };
        let issued_ms = body.get("t").and_then(Value::as_i64).ok_or_else(invalid)?;
        let hash = body.get("h").and_then(Value::as_str).ok_or_else(invalid)?;
        if hash != format!("{shape:016x}") {
            return Err(bad(
                400,
                "invalidCursor",
                "the cursor belongs to a different query (filter, sort or resource type changed)",
            ));
        }
        if now_ms.saturating_sub(issued_ms) > timeout_ms {
            return Err(bad(
                400,
                "expiredCursor",
                "the cursor has expired; start again with an empty cursor",
            ));
        }
        Ok(Cursor {
            offset,
            after,
            issued_ms,
            shape,
        })
    }
}

/// Where a page starts.
enum Position {
    Index { start: u64 },
    Cursor { offset: u64, after: Option<i64> },
}

/// Whether a filter or sort path names a derived attribute (members/groups).
fn names_relations(path: &AttrPath) -> bool {
    path.attr.eq_ignore_ascii_case("members") || path.attr.eq_ignore_ascii_case("groups")
}

fn filter_needs_relations(filter: &Filter) -> bool {
    match filter {
        Filter::Compare { path, .. } | Filter::Present(path) => names_relations(path),
        Filter::ValuePath { attr, .. } => names_relations(attr),
        Filter::And(a, b) | Filter::Or(a, b) => {
            filter_needs_relations(a) || filter_needs_relations(b)
        }
        Filter::Not(inner) => filter_needs_relations(inner),
    }
}

fn depth(filter: &Filter) -> usize {
    match filter {
        Filter::And(a, b) | Filter::Or(a, b) => 1 + depth(a).max(depth(b)),
        Filter::Not(inner) => 1 + depth(inner),
        Filter::ValuePath { filter, .. } => 1 + depth(filter),
        _ => 1,
    }
}

/// A list or search request read and checked against the types it lists:
/// its parameters, its filter and `sortBy` parsed. Built once per request:
/// the inline decision ([`ScimService::quick_read`]) and the list it runs
/// read the same one.
#[derive(Debug)]
pub(crate) struct ListQuery {
    params: ListParams,
    filter: Option<Filter>,
    sort_by: Option<AttrPath>,
    order: SortOrder,
}

impl ListQuery {
    /// Parses the filter and `sortBy` of `params` and checks them against
    /// every type in `kinds` (filterable, sortable, not nested too deeply).
    pub(crate) fn parse(params: ListParams, kinds: &[Kind<'_>]) -> Result<ListQuery, PluginError> {
        let filter = match params.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                let filter = parse_filter(text).map_err(from_scim)?;
                if depth(&filter) > MAX_FILTER_DEPTH {
                    return Err(bad(400, "invalidFilter", "the filter is nested too deeply"));
                }
                for kind in kinds {
                    filter.check_filterable(&kind.ctx).map_err(from_scim)?;
                }
                Some(filter)
            }
        };
        let sort_by = match params.sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(AttrPath::parse(text).map_err(|e| invalid_value(e.detail))?),
        };
        if let Some(path) = &sort_by {
            for kind in kinds {
                check_sortable(&kind.ctx, path).map_err(from_scim)?;
            }
        }
        let order = SortOrder::parse(params.sort_order.as_deref()).map_err(from_scim)?;
        Ok(ListQuery {
            params,
            filter,
            sort_by,
            order,
        })
    }

    /// The parsed filter, if the request has one.
    pub(crate) fn filter(&self) -> Option<&Filter> {
        self.filter.as_ref()
    }

    /// Whether the request pages in natural order from its first page on
    /// (no `sortBy`, no cursor): what a point read looks like.
    pub(crate) fn is_plain(&self) -> bool {
        self.sort_by.is_none() && self.params.cursor.is_none()
    }
}

impl ScimService {
    /// Runs a list or search over `kinds` and renders the ListResponse.
    pub(crate) fn run_list(
        &self,
        call: &Call<'_>,
        kinds: &[Kind<'_>],
        query: ListQuery,
    ) -> Result<Vec<u8>, PluginError> {
        let ListQuery {
            params,
            filter,
            sort_by,
            order,
        } = query;
        let count = match params.count {
            None => self.settings.default_page_size,
            Some(n) if n < 0 => 0,
            Some(n) => (n as u64).min(self.settings.max_results),
        };
        let types: Vec<String> = kinds.iter().map(|k| k.rt.name.clone()).collect();
        let shape = {
            let mut h = DefaultHasher::new();
            types.hash(&mut h);
            // The filter as written (what `to_string` would give), straight
            // into the hash.
            match &filter {
                Some(filter) => {
                    1u8.hash(&mut h);
                    let _ = write!(HashWriter(&mut h), "{filter}");
                    0xffu8.hash(&mut h);
                }
                None => 0u8.hash(&mut h),
            }
            sort_by
                .as_ref()
                .map(ToString::to_string)
                .map(|s| s.to_ascii_lowercase())
                .hash(&mut h);
            (order == SortOrder::Descending).hash(&mut h);
            h.finish()
        };
        let position = match (&params.cursor, params.start_index) {
            (Some(_), Some(_)) => {
                return Err(invalid_value(
                    "'cursor' and 'startIndex' cannot be combined",
                ))
            }
            (Some(c), None) if c.trim().is_empty() => Position::Cursor {
                offset: 0,
                after: None,
            },
            (Some(c), None) => {
                let cursor =
                    Cursor::decode(c, shape, call.now_ms, self.settings.cursor_timeout_ms())?;
                Position::Cursor {
                    offset: cursor.offset,
                    after: cursor.after,
                }
            }
            (None, start) => Position::Index {
                start: start.unwrap_or(1).max(1) as u64,
            },
        };
        let (pushed, exact) = match (&filter, kinds) {
            (None, _) => (None, true),
            (Some(f), [kind]) => (
                Some((f, &kind.ctx)),
                self.backend.filter_is_exact(f, &kind.ctx),
            ),
            (Some(_), _) => (None, false),
        };
        let relations = filter.as_ref().is_some_and(filter_needs_relations)
            || sort_by.as_ref().is_some_and(names_relations);
        // Sort push-down: one type, a path the backend orders exactly as
        // `compare` does (derived attributes never).
        let pushed_sort = match (&sort_by, kinds) {
            (Some(path), [kind])
                if !names_relations(path) && self.backend.can_sort(path, &kind.ctx) =>
            {
                Some((path, order))
            }
            _ => None,
        };
        let scan = Scan {
            resource_types: types,
            filter: pushed,
            sort: pushed_sort,
            ..Scan::default()
        };
        // Exact pages of resources the engine may copy as stored text.
        let copy = params.selection == AttributeSelection::default()
            && kinds.iter().all(|kind| self.copies_stored_text(kind));
        // The count, the page and its groups from one snapshot of the store.
        let mut read = None;
        self.backend.snapshot(&mut || {
            read = Some(if (sort_by.is_none() || pushed_sort.is_some()) && exact {
                self.page_from_store(
                    call,
                    kinds,
                    &scan,
                    filter.as_ref(),
                    &position,
                    count,
                    shape,
                    copy,
                )?
            } else {
                // With the order pushed down, the engine only filters and
                // counts, in the backend's order; otherwise it sorts too.
                let sort_in_memory = sort_by.as_ref().filter(|_| pushed_sort.is_none());
                self.page_in_memory(
                    call,
                    kinds,
                    &scan,
                    filter.as_ref(),
                    sort_in_memory,
                    order,
                    &position,
                    count,
                    relations,
                )?
            });
            Ok(())
        })?;
        let page = read.ok_or_else(|| {
            PluginError::internal(
                "the backend's snapshot returned without running the list's reads",
            )
        })?;
        let returned = page.docs.len() as u64;
        let resources = page.docs.into_iter().map(|doc| match doc {
            Doc::Tree(kind_index, doc) => {
                let ctx = &kinds[kind_index].ctx;
                let shown = project_owned(ctx, strip_never_owned(ctx, doc), &params.selection);
                serde_json::to_vec(&shown).unwrap_or_default()
            }
            Doc::Ready(bytes) => bytes,
        });
        match position {
            Position::Index { start } => Ok(list_body(
                ListHead::Index {
                    total: page.total,
                    start,
                },
                returned,
                resources,
            )),
            Position::Cursor { offset, .. } => {
                let mut body = list_response(Vec::new(), page.total, offset + 1);
                if let Some(object) = body.as_object_mut() {
                    object.remove("startIndex");
                    if offset + returned < page.total && returned > 0 {
                        let next = Cursor {
                            offset: offset + returned,
                            after: page.last_seq.filter(|_| self.caps.keyset),
                            issued_ms: call.now_ms,
                            shape,
                        };
                        object.insert("nextCursor".into(), Value::String(next.encode()));
                    }
                    if offset > 0 {
                        let previous = Cursor {
                            offset: offset.saturating_sub(count.max(1)),
                            after: None,
                            issued_ms: call.now_ms,
                            shape,
                        };
                        object.insert("previousCursor".into(), Value::String(previous.encode()));
                    }
                }
                Ok(list_body(ListHead::Members(body), returned, resources))
            }
        }
    }

    /// Exact filter, natural or pushed-down order: the backend pages, and
    /// counts unless the page itself tells the total.
    #[allow(clippy::too_many_arguments)]
    fn page_from_store(
        &self,
        call: &Call<'_>,
        kinds: &[Kind<'_>],
        scan: &Scan<'_>,
        filter: Option<&Filter>,
        position: &Position,
        count: u64,
        shape: u64,
        copy: bool,
    ) -> Result<Page, PluginError> {
        // Keys are `seq`s: they only continue a walk in natural order.
        let keyset = self.caps.keyset && scan.sort.is_none();
        // Totals and walks are remembered only against a generation.
        let generation = self.caps.generation.then(|| self.backend.generation());
        let mut page = Page {
            total: 0,
            docs: Vec::new(),
            last_seq: None,
        };
        let remembered = generation.and_then(|generation| {
            self.pages
                .lock()
                .ok()
                .and_then(|p| p.total(shape, generation))
        });
        // The remembered total, else the backend's count.
        let total = || match remembered {
            Some(total) => Ok(total),
            None => self.count_and_remember(scan, shape, generation),
        };
        if count == 0 {
            page.total = total()?;
            return Ok(page);
        }
        // Index walks continue from the last key of the previous page.
        let walk_generation = generation.filter(|_| keyset);
        let mut scan_page = scan.clone();
        scan_page.limit = Some(count);
        match position {
            Position::Index { start } => {
                let key = (shape, count, *start);
                let resume = walk_generation.and_then(|generation| {
                    self.pages
                        .lock()
                        .ok()
                        .and_then(|mut p| p.continuation(key, generation))
                });
                match resume {
                    Some(after) => scan_page.after = Some(after),
                    None => scan_page.offset = start - 1,
                }
            }
            Position::Cursor { offset, after } => match after.filter(|_| keyset) {
                Some(after) => scan_page.after = Some(after),
                None => scan_page.offset = *offset,
            },
        }
        // The page (at most `count` rows) first, then its derived `groups`
        // in one batch, then rendering. Copying, the rows stay text.
        let mut rows: Vec<RecordText> = Vec::new();
        let mut visit = |row: RecordText| {
            if keyset {
                page.last_seq = Some(row.record.seq);
            }
            rows.push(row);
            Ok(Visit::Continue)
        };
        if copy {
            self.backend.scan_text(&scan_page, &mut visit)?;
        } else {
            self.backend.scan(&scan_page, &mut |rec| {
                visit(RecordText {
                    record: self.adopt(rec),
                    text: String::new(),
                })
            })?;
        }
        // A first page with room to spare holds every match: its length is
        // the total, and the count (a second query, a round trip on a
        // network store) is not needed. The common case of a point filter
        // (`userName eq`, `externalId eq`): zero or one match.
        let whole =
            scan_page.offset == 0 && scan_page.after.is_none() && (rows.len() as u64) < count;
        page.total = if whole { rows.len() as u64 } else { total()? };
        let groups = self.page_groups(kinds, rows.iter().map(|row| &row.record), true)?;
        for row in rows {
            if copy {
                // The filter is exact: every row matches.
                if let Some(ready) = self.copy_row(call, kinds, &row, groups.as_ref())? {
                    page.docs.push(Doc::Ready(ready));
                    continue;
                }
            }
            let rec = if copy { row.into_record()? } else { row.record };
            if let Some((i, doc)) =
                self.match_doc(call, kinds, &rec, filter, true, groups.as_ref())?
            {
                page.docs.push(Doc::Tree(i, doc));
            }
        }
        if let (Position::Index { start }, Some(last), Some(generation)) =
            (position, page.last_seq, walk_generation)
        {
            if let Ok(mut pages) = self.pages.lock() {
                pages.remember(
                    (shape, count, start + page.docs.len() as u64),
                    last,
                    generation,
                );
            }
        }
        Ok(page)
    }

    /// The total of `scan`: the backend's count (or a counting scan),
    /// remembered against `generation`.
    fn count_and_remember(
        &self,
        scan: &Scan<'_>,
        shape: u64,
        generation: Option<u64>,
    ) -> Result<u64, PluginError> {
        let total = match self.backend.count(scan)? {
            Some(total) => total,
            None => {
                let mut n = 0u64;
                self.backend.scan(scan, &mut |_| {
                    n += 1;
                    Ok(Visit::Continue)
                })?;
                n
            }
        };
        if let Some(generation) = generation {
            if let Ok(mut pages) = self.pages.lock() {
                pages.remember_total(shape, generation, total);
            }
        }
        Ok(total)
    }

    /// Anything else: stream the narrowed rows, filter (and sort) in memory,
    /// keeping only sort keys, then load the page.
    #[allow(clippy::too_many_arguments)]
    fn page_in_memory(
        &self,
        call: &Call<'_>,
        kinds: &[Kind<'_>],
        scan: &Scan<'_>,
        filter: Option<&Filter>,
        sort_by: Option<&AttrPath>,
        order: SortOrder,
        position: &Position,
        count: u64,
        relations: bool,
    ) -> Result<Page, PluginError> {
        let offset = match position {
            Position::Index { start } => start - 1,
            Position::Cursor { offset, .. } => *offset,
        };
        let end = offset.saturating_add(count);
        let mut page = Page {
            total: 0,
            docs: Vec::new(),
            last_seq: None,
        };
        match sort_by {
            None if relations => {
                // The filter needed `groups`: the matches come rendered with them.
                self.scan_matches(call, kinds, scan, filter, relations, &mut |i, doc, _| {
                    if page.total >= offset && page.total < end {
                        page.docs.push(Doc::Tree(i, doc));
                    }
                    page.total += 1;
                    Ok(())
                })?;
            }
            None => {
                let mut window: Vec<(usize, Record)> = Vec::new();
                self.scan_matches(call, kinds, scan, filter, relations, &mut |i, _, rec| {
                    if page.total >= offset && page.total < end {
                        window.push((i, rec));
                    }
                    page.total += 1;
                    Ok(())
                })?;
                page.docs = self.render_page(call, kinds, &window)?;
            }
            Some(sort_by) => {
                let selection = AttributeSelection {
                    attributes: vec![sort_by.clone()],
                    excluded: Vec::new(),
                };
                let mut keys: Vec<(Value, usize, String)> = Vec::new();
                self.scan_matches(call, kinds, scan, filter, relations, &mut |i, doc, rec| {
                    keys.push((project_owned(&kinds[i].ctx, doc, &selection), i, rec.id));
                    Ok(())
                })?;
                // Stable: ties keep insertion order.
                keys.sort_by(|a, b| compare(&kinds[a.1].ctx, &a.0, &b.0, sort_by, order));
                page.total = keys.len() as u64;
                let window = keys
                    .into_iter()
                    .skip(offset.min(usize::MAX as u64) as usize)
                    .take(count.min(usize::MAX as u64) as usize);
                let mut recs: Vec<(usize, Record)> = Vec::new();
                for (_, i, id) in window {
                    if let Some(rec) = self.backend.get(&kinds[i].rt.name, &id)? {
                        recs.push((i, self.adopt(rec)));
                    }
                }
                page.docs = self.render_page(call, kinds, &recs)?;
            }
        }
        Ok(page)
    }

    /// Streams the rows of `scan` (at most `max_scan` of them: 400 `tooMany`
    /// beyond) and hands each one that matches `filter` to `matched`, with
    /// its kind, its rendered document and the record. With `relations` the
    /// document carries the derived attributes, the `groups` of each chunk
    /// of rows fetched at once; without, rows are matched one by one.
    fn scan_matches(
        &self,
        call: &Call<'_>,
        kinds: &[Kind<'_>],
        scan: &Scan<'_>,
        filter: Option<&Filter>,
        relations: bool,
        matched: &mut dyn FnMut(usize, Value, Record) -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        let max_scan = self.settings.max_scan;
        let chunk_size = if relations { CHUNK } else { 1 };
        let mut scanned = 0u64;
        let mut chunk: Vec<Record> = Vec::new();
        let mut flush = |chunk: &mut Vec<Record>| {
            let groups = self.page_groups(kinds, chunk.iter(), relations)?;
            for rec in chunk.drain(..) {
                if let Some((i, doc)) =
                    self.match_doc(call, kinds, &rec, filter, relations, groups.as_ref())?
                {
                    matched(i, doc, rec)?;
                }
            }
            Ok::<(), PluginError>(())
        };
        self.backend.scan(scan, &mut |rec| {
            scanned += 1;
            if scanned > max_scan {
                return Err(too_many(max_scan));
            }
            chunk.push(self.adopt(rec));
            if chunk.len() >= chunk_size {
                flush(&mut chunk)?;
            }
            Ok(Visit::Continue)
        })?;
        flush(&mut chunk)
    }

    /// The page's rows rendered with their derived attributes (`groups`
    /// fetched for the whole page at once).
    fn render_page(
        &self,
        call: &Call<'_>,
        kinds: &[Kind<'_>],
        recs: &[(usize, Record)],
    ) -> Result<Vec<Doc>, PluginError> {
        let groups = self.page_groups(kinds, recs.iter().map(|(_, rec)| rec), true)?;
        recs.iter()
            .map(|(i, rec)| {
                let doc = self.render_with(&kinds[*i], rec, call.base, true, groups.as_ref())?;
                Ok(Doc::Tree(*i, doc))
            })
            .collect()
    }

    /// The rendered resource if it matches the filter (`groups`: the
    /// page's derived groups fetched beforehand, if any).
    fn match_doc(
        &self,
        call: &Call<'_>,
        kinds: &[Kind<'_>],
        rec: &Record,
        filter: Option<&Filter>,
        relations: bool,
        groups: Option<&HashMap<String, Vec<GroupRef>>>,
    ) -> Result<Option<(usize, Value)>, PluginError> {
        let Some(i) = kinds.iter().position(|k| k.rt.name == rec.resource_type) else {
            return Ok(None);
        };
        let doc = self.render_with(&kinds[i], rec, call.base, relations, groups)?;
        if let Some(filter) = filter {
            if !filter.matches(&doc, &kinds[i].ctx).map_err(from_scim)? {
                return Ok(None);
            }
        }
        Ok(Some((i, doc)))
    }

    /// A row of an exact page as stored text with `id`, `meta` and
    /// `groups` spliced in; `None` when it needs the long way.
    fn copy_row(
        &self,
        call: &Call<'_>,
        kinds: &[Kind<'_>],
        row: &RecordText,
        groups: Option<&HashMap<String, Vec<GroupRef>>>,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let rec = &row.record;
        let Some(kind) = kinds.iter().find(|k| k.rt.name == rec.resource_type) else {
            return Ok(None);
        };
        self.copy_stored(kind, row, call.base, groups)
    }
}

/// Feeds formatted text into a hasher.
struct HashWriter<'a, H: Hasher>(&'a mut H);

impl<H: Hasher> std::fmt::Write for HashWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// What a ListResponse holds besides its resources.
enum ListHead {
    /// A page by `startIndex`: `schemas`, `totalResults`, `startIndex`.
    Index { total: u64, start: u64 },
    /// Any other members, as a ListResponse object without `Resources`.
    Members(Value),
}

/// The bytes of a ListResponse: `head` with `itemsPerPage` set to
/// `returned` and `Resources` the serialized `resources`. The members are
/// written in the order a serialized `serde_json::Map` has them: by name,
/// `Resources` first (`R` sorts before every lower-case name).
fn list_body(head: ListHead, returned: u64, resources: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(br#"{"Resources":["#);
    for (i, resource) in resources.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&resource);
    }
    out.push(b']');
    match head {
        ListHead::Index { total, start } => {
            // itemsPerPage < schemas < startIndex < totalResults.
            use std::io::Write;
            let _ = write!(
                out,
                r#","itemsPerPage":{returned},"schemas":["{}"],"startIndex":{start},"totalResults":{total}}}"#,
                urn::LIST_RESPONSE
            );
        }
        ListHead::Members(mut head) => {
            if let Some(object) = head.as_object_mut() {
                object.remove("Resources");
                object.insert("itemsPerPage".into(), Value::from(returned));
            }
            let rest = serde_json::to_vec(&head).unwrap_or_default();
            match rest.get(1..) {
                Some(members) if members.len() > 1 => {
                    out.push(b',');
                    out.extend_from_slice(members);
                }
                _ => out.push(b'}'),
            }
        }
    }
    out
}

struct Page {
    total: u64,
    docs: Vec<Doc>,
    last_seq: Option<i64>,
}

/// One resource of a page.
enum Doc {
    /// Rendered, of `kinds[.0]`: still to be stripped and projected.
    Tree(usize, Value),
    /// The stored text with the engine's members spliced in, ready to send
    /// ([`crate::ready::splice`]).
    Ready(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_body_is_the_serialized_list_response() {
        let users = [json!({"id": "1", "userName": "a"}), json!({"id": "2"})];
        for (resources, cursor) in [
            (&users[..], false),
            (&users[..1], true),
            (&users[..0], false),
        ] {
            let mut whole = list_response(resources.to_vec(), 7, 3);
            let mut head = list_response(Vec::new(), 7, 3);
            if cursor {
                for body in [&mut whole, &mut head] {
                    let object = body.as_object_mut().expect("object");
                    object.remove("startIndex");
                    object.insert("nextCursor".into(), json!("abc"));
                }
            }
            let serialized = || {
                resources
                    .iter()
                    .map(|r| serde_json::to_vec(r).expect("json"))
            };
            let returned = resources.len() as u64;
            let expected = serde_json::to_string(&whole).expect("json");
            let bytes = list_body(ListHead::Members(head), returned, serialized());
            assert_eq!(String::from_utf8_lossy(&bytes), expected);
            if !cursor {
                let index = ListHead::Index { total: 7, start: 3 };
                let bytes = list_body(index, returned, serialized());
                assert_eq!(String::from_utf8_lossy(&bytes), expected);
            }
        }
    }

    #[test]
    fn cursors_round_trip_and_expire() {
        let c = Cursor {
            offset: 100,
            after: Some(42),
            issued_ms: 1_000,
            shape: 7,
        };
        let text = c.encode();
        assert_eq!(Cursor::decode(&text, 7, 2_000, 60_000).expect("valid"), c);
        let e = Cursor::decode(&text, 7, 100_000, 60_000).expect_err("expired");
        assert_eq!(e.code(), Some("expiredCursor"));
        let e = Cursor::decode(&text, 8, 2_000, 60_000).expect_err("other query");
        assert_eq!(e.code(), Some("invalidCursor"));
        let e = Cursor::decode("garbage!", 7, 2_000, 60_000).expect_err("garbage");
        assert_eq!(e.code(), Some("invalidCursor"));
    }

    #[test]
    fn page_memory_is_bounded_and_generation_checked() {
        let mut memory = PageMemory::default();
        memory.remember((1, 100, 101), 100, 5);
        assert_eq!(memory.continuation((1, 100, 101), 6), None, "data changed");
        memory.remember((1, 100, 101), 100, 5);
        assert_eq!(memory.continuation((1, 100, 101), 5), Some(100));
        for i in 0..200 {
            memory.remember((i, 1, 1), 1, 1);
        }
        assert!(memory.walks.len() <= MEMORY);
    }
}
