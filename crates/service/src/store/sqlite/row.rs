//! Result rows of the SQLite backend, owned: a rusqlite row borrows its statement, which goes
//! back to the connection's cache as soon as the query ends.
//!
//! Columns decode the way sqlx's SQLite driver decoded them, so a database written by either
//! reads the same: integers and booleans from INTEGER values, text from TEXT, and times from
//! RFC 3339 text (what the store writes, `db::sqlite_text`) or any of SQLite's own date-time
//! text forms, from INTEGER Unix seconds, or from REAL Julian days.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};
use rusqlite::types::Value;

use crate::store::StoreError;
use crate::store::db::SqlRow;

/// One row: the statement's column names (shared by its rows) and the row's values.
#[derive(Debug, Clone)]
pub struct SqliteRow {
    columns: Arc<[Box<str>]>,
    values: Box<[Value]>,
}

impl SqliteRow {
    pub(super) fn new(columns: Arc<[Box<str>]>, values: Box<[Value]>) -> SqliteRow {
        SqliteRow { columns, values }
    }

    /// The column's index and value; an unknown name is an error (a bug in the SQL).
    fn value(&self, column: &str) -> Result<(usize, &Value), StoreError> {
        let index = self
            .columns
            .iter()
            .position(|name| &**name == column)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(column.to_owned()))?;
        Ok((index, &self.values[index]))
    }

    /// The value, or `None` for NULL, decoded by `decode` (which says `None` for a value of
    /// the wrong type).
    fn optional<T>(
        &self,
        column: &str,
        decode: impl FnOnce(&Value) -> Option<Result<T, StoreError>>,
    ) -> Result<Option<T>, StoreError> {
        let (index, value) = self.value(column)?;
        if let Value::Null = value {
            return Ok(None);
        }
        match decode(value) {
            Some(decoded) => decoded.map(Some),
            None => Err(wrong_type(index, column, value)),
        }
    }

    /// Like [`SqliteRow::optional`], NULL being an error.
    fn required<T>(
        &self,
        column: &str,
        decode: impl FnOnce(&Value) -> Option<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let (index, value) = self.value(column)?;
        match self.optional(column, decode)? {
            Some(decoded) => Ok(decoded),
            None => Err(wrong_type(index, column, value)),
        }
    }
}

fn wrong_type(index: usize, column: &str, value: &Value) -> StoreError {
    rusqlite::Error::InvalidColumnType(index, column.to_owned(), value.data_type()).into()
}

fn integer(value: &Value) -> Option<Result<i64, StoreError>> {
    match value {
        Value::Integer(i) => Some(Ok(*i)),
        _ => None,
    }
}

fn text(value: &Value) -> Option<Result<String, StoreError>> {
    match value {
        Value::Text(text) => Some(Ok(text.clone())),
        _ => None,
    }
}

fn boolean(value: &Value) -> Option<Result<bool, StoreError>> {
    integer(value).map(|i| i.map(|i| i != 0))
}

/// What sqlx's chrono decoding of a SQLite value accepts.
fn time(value: &Value) -> Option<Result<DateTime<Utc>, StoreError>> {
    let decoded = match value {
        Value::Text(text) => time_from_text(text),
        Value::Integer(seconds) => Utc.timestamp_opt(*seconds, 0).single(),
        Value::Real(julian_day) => time_from_julian_day(*julian_day),
        Value::Null | Value::Blob(_) => return None,
    };
    Some(
        decoded
            .ok_or_else(|| StoreError::Corrupt(format!("invalid datetime: {}", describe(value)))),
    )
}

fn describe(value: &Value) -> String {
    match value {
        Value::Text(text) => text.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Null | Value::Blob(_) => format!("{:?}", value.data_type()),
    }
}

/// RFC 3339 first (what the store writes), then SQLite's date-time forms; a time without an
/// offset is UTC.
fn time_from_text(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    const FORMATS: [&str; 12] = [
        "%F %T%.f",
        "%F %R",
        "%F %RZ",
        "%F %R%:z",
        "%F %T%.fZ",
        "%F %T%.f%:z",
        "%FT%R",
        "%FT%RZ",
        "%FT%R%:z",
        "%FT%T%.f",
        "%FT%T%.fZ",
        "%FT%T%.f%:z",
    ];
    FORMATS.iter().find_map(|format| {
        DateTime::<FixedOffset>::parse_from_str(text, format)
            .map(|t| t.to_utc())
            .or_else(|_| {
                NaiveDateTime::parse_from_str(text, format)
                    .map(|t| Utc.fix().from_utc_datetime(&t).to_utc())
            })
            .ok()
    })
}

fn time_from_julian_day(day: f64) -> Option<DateTime<Utc>> {
    const UNIX_EPOCH_JULIAN_DAY: f64 = 2_440_587.5;
    let seconds = (day - UNIX_EPOCH_JULIAN_DAY) * 86_400.0;
    if !seconds.is_finite() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Utc.timestamp_opt(seconds.trunc() as i64, (seconds.fract() * 1e9).abs() as u32)
        .single()
}

impl SqlRow for SqliteRow {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.required(column, integer)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.optional(column, integer)
    }

    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.required(column, text)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.optional(column, text)
    }

    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        self.required(column, boolean)
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        self.required(column, time)
    }

    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.optional(column, time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: Vec<Value>) -> SqliteRow {
        let columns: Vec<Box<str>> = (0..values.len()).map(|i| format!("c{i}").into()).collect();
        SqliteRow::new(columns.into(), values.into())
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn typed_columns_decode_and_null_is_none_or_an_error() {
        let r = row(vec![
            Value::Integer(7),
            Value::Text("x".into()),
            Value::Null,
            Value::Integer(0),
        ]);
        assert_eq!(r.int("c0").unwrap(), 7);
        assert_eq!(r.opt_int("c0").unwrap(), Some(7));
        assert_eq!(r.text("c1").unwrap(), "x");
        assert_eq!(r.opt_text("c2").unwrap(), None);
        assert_eq!(r.opt_int("c2").unwrap(), None);
        assert!(!r.boolean("c3").unwrap());
        assert!(r.int("c2").is_err(), "NULL is not an integer");
        assert!(r.int("c1").is_err(), "text is not an integer");
        assert!(r.text("c0").is_err(), "an integer is not text");
        let missing = r.int("nope").unwrap_err().to_string();
        assert!(missing.contains("nope"), "{missing}");
    }

    #[test]
    fn times_decode_as_sqlx_decoded_them() {
        let expected = at("2026-11-20T08:00:01.123Z");
        for text in [
            "2026-11-20T08:00:01.123Z",
            "2026-11-20T09:00:01.123+01:00",
            "2026-11-20 08:00:01.123",
            "2026-11-20T08:00:01.123",
        ] {
            let r = row(vec![Value::Text(text.into())]);
            assert_eq!(r.time("c0").unwrap(), expected, "{text}");
        }
        let whole = row(vec![Value::Text("2026-11-20 08:00:01".into())]);
        assert_eq!(whole.time("c0").unwrap(), at("2026-11-20T08:00:01Z"));
        let minutes = row(vec![Value::Text("2026-11-20 08:00".into())]);
        assert_eq!(minutes.time("c0").unwrap(), at("2026-11-20T08:00:00Z"));
        let unix = row(vec![Value::Integer(1_795_161_601)]);
        assert_eq!(unix.time("c0").unwrap(), at("2026-11-20T08:00:01Z"));
        let julian = row(vec![Value::Real(2_440_588.0)]);
        assert_eq!(julian.time("c0").unwrap(), at("1970-01-01T12:00:00Z"));
        let bad = row(vec![Value::Text("yesterday".into()), Value::Null]);
        let error = bad.time("c0").unwrap_err().to_string();
        assert!(error.contains("invalid datetime: yesterday"), "{error}");
        assert_eq!(bad.opt_time("c1").unwrap(), None);
        assert!(bad.time("c1").is_err());
    }
}
