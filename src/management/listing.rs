//! What every list endpoint shares: RabbitMQ's query parameters `sort` /
//! `sort_reverse`, `columns`, and `page` / `page_size` (which wrap the list in a page
//! object with its counts) with `name` / `use_regex` (a filter on names, which
//! RabbitMQ applies only to paged lists).

use std::cmp::Ordering;

use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    page: Option<String>,
    page_size: Option<String>,
    name: Option<String>,
    use_regex: Option<String>,
    sort: Option<String>,
    sort_reverse: Option<String>,
    columns: Option<String>,
}

const MAX_PAGE_SIZE: usize = 500;
const DEFAULT_PAGE_SIZE: usize = 100;

impl ListQuery {
    /// Filters, sorts, pages and trims `items` as the query asks.
    pub fn apply(&self, mut items: Vec<Value>) -> ApiResult<Json<Value>> {
        let total = items.len();
        let paged = self.page.is_some();
        // As RabbitMQ: the name filter goes with paging; without `page` it is ignored.
        if let Some(name) = self.name.as_deref().filter(|n| paged && !n.is_empty()) {
            let regex = self.use_regex.as_deref() == Some("true");
            let pattern = if regex {
                regex::RegexBuilder::new(name)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            } else {
                regex::RegexBuilder::new(&regex::escape(name))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            };
            items.retain(|i| i["name"].as_str().is_some_and(|n| pattern.is_match(n)));
        }
        if let Some(sort) = self.sort.as_deref().filter(|s| !s.is_empty()) {
            items.sort_by(|a, b| compare(lookup(a, sort), lookup(b, sort)));
        }
        if self.sort_reverse.as_deref() == Some("true") {
            items.reverse();
        }
        let filtered = items.len();
        let mut page_info = None;
        if paged {
            let page = number(self.page.as_deref(), 1, "page")?;
            let size = number(self.page_size.as_deref(), DEFAULT_PAGE_SIZE, "page_size")?;
            if page == 0 || size == 0 || size > MAX_PAGE_SIZE {
                return Err(ApiError::bad_request(format!(
                    "Invalid pagination parameters: page {page}, page_size {size}"
                )));
            }
            let page_count = filtered.div_ceil(size).max(1);
            if page > page_count {
                return Err(ApiError::bad_request(format!(
                    "Page out of range, page: {page} page size: {size}, len: {filtered}"
                )));
            }
            items = items
                .into_iter()
                .skip((page - 1) * size)
                .take(size)
                .collect();
            page_info = Some((page, size, page_count));
        }
        if let Some(columns) = self.columns.as_deref().filter(|c| !c.is_empty()) {
            let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
            items = items.iter().map(|i| pick(i, &columns)).collect();
        }
        Ok(Json(match page_info {
            None => Value::Array(items),
            Some((page, size, page_count)) => json!({
                "filtered_count": filtered,
                "item_count": items.len(),
                "items": items,
                "page": page,
                "page_count": page_count,
                "page_size": size,
                "total_count": total,
            }),
        }))
    }

    /// `columns=` on a single object.
    pub fn trim(&self, item: Value) -> Json<Value> {
        match self.columns.as_deref().filter(|c| !c.is_empty()) {
            Some(columns) => {
                let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
                Json(pick(&item, &columns))
            }
            None => Json(item),
        }
    }
}

fn number(v: Option<&str>, default: usize, what: &str) -> ApiResult<usize> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{what} must be a number, got {s:?}"))),
    }
}

/// `a.b.c` in a JSON object.
fn lookup<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Keeps only `columns` (dotted paths) of an object.
fn pick(item: &Value, columns: &[&str]) -> Value {
    let mut out = Map::new();
    for column in columns {
        // Columns the object does not have are left out, as RabbitMQ does.
        if let Some(value) = item.pointer(&format!("/{}", column.replace('.', "/"))) {
            insert_path(&mut out, column, value.clone());
        }
    }
    Value::Object(out)
}

fn insert_path(map: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}
