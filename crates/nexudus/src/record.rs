//! Reading one Nexudus record (a JSON object) into a typed model, field by field, so that a
//! malformed record is reported with its entity, id and field instead of failing its whole page.

use std::fmt;

use serde_json::{Map, Value};

use crate::datetime::NexudusDateTime;

/// A record that could not be read as its entity. The caller parks it with this reason and goes
/// on with the others.
///
/// `Debug` and `Display` leave out the record itself (it may hold names and emails); `raw` is
/// there for whoever parks it.
#[derive(Clone, PartialEq, thiserror::Error)]
#[error("nexudus: {entity} {} is malformed: {field}: {problem}", display_id(*.id))]
pub struct MalformedRecord {
    /// The Nexudus entity name, e.g. `Booking`.
    pub entity: &'static str,
    /// The record's `Id`, when it had a readable one.
    pub id: Option<u64>,
    /// The field at fault, e.g. `FromTime` (or `record` when the record is not an object).
    pub field: String,
    /// What is wrong with it, without its value.
    pub problem: String,
    /// The record exactly as received.
    pub raw: Value,
}

fn display_id(id: Option<u64>) -> String {
    id.map_or_else(|| "(no id)".to_owned(), |id| id.to_string())
}

impl fmt::Debug for MalformedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MalformedRecord")
            .field("entity", &self.entity)
            .field("id", &self.id)
            .field("field", &self.field)
            .field("problem", &self.problem)
            .finish_non_exhaustive()
    }
}

/// The fields of one record of `entity`, with readers that name the field when it is wrong.
pub(crate) struct Fields<'a> {
    entity: &'static str,
    id: u64,
    map: &'a Map<String, Value>,
    raw: &'a Value,
}

impl<'a> Fields<'a> {
    /// The record's fields, if it is an object with a numeric `Id`.
    pub(crate) fn of(entity: &'static str, raw: &'a Value) -> Result<Self, MalformedRecord> {
        let malformed = |field: &str, problem: &str, id| MalformedRecord {
            entity,
            id,
            field: field.to_owned(),
            problem: problem.to_owned(),
            raw: raw.clone(),
        };
        let map = raw.as_object().ok_or_else(|| malformed("record", "is not a JSON object", None))?;
        let id = match map.get("Id") {
            None | Some(Value::Null) => return Err(malformed("Id", "is missing", None)),
            Some(value) => value.as_u64().ok_or_else(|| malformed("Id", "is not a whole number >= 0", None))?,
        };
        Ok(Self { entity, id, map, raw })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn malformed(&self, field: &str, problem: &str) -> MalformedRecord {
        MalformedRecord {
            entity: self.entity,
            id: Some(self.id),
            field: field.to_owned(),
            problem: problem.to_owned(),
            raw: self.raw.clone(),
        }
    }

    /// The field's value; absent and `null` are both "no value".
    fn present(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|value| !value.is_null())
    }

    fn required<T>(
        &self,
        field: &str,
        read: impl Fn(&Self, &str) -> Result<Option<T>, MalformedRecord>,
    ) -> Result<T, MalformedRecord> {
        read(self, field)?.ok_or_else(|| self.malformed(field, "is missing"))
    }

    /// The field converted by `convert`, which answers `None` for a value of the wrong kind.
    fn optional_as<T>(
        &self,
        field: &str,
        problem: &str,
        convert: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<T>, MalformedRecord> {
        self.present(field).map(|value| convert(value).ok_or_else(|| self.malformed(field, problem))).transpose()
    }

    pub(crate) fn optional_u64(&self, field: &str) -> Result<Option<u64>, MalformedRecord> {
        self.optional_as(field, "is not a whole number >= 0", Value::as_u64)
    }

    pub(crate) fn required_u64(&self, field: &str) -> Result<u64, MalformedRecord> {
        self.required(field, Self::optional_u64)
    }

    pub(crate) fn optional_i64(&self, field: &str) -> Result<Option<i64>, MalformedRecord> {
        self.optional_as(field, "is not a whole number", Value::as_i64)
    }

    pub(crate) fn optional_bool(&self, field: &str) -> Result<Option<bool>, MalformedRecord> {
        self.optional_as(field, "is not true or false", Value::as_bool)
    }

    pub(crate) fn required_bool(&self, field: &str) -> Result<bool, MalformedRecord> {
        self.required(field, Self::optional_bool)
    }

    /// A text field; an empty text is no value.
    pub(crate) fn optional_string(&self, field: &str) -> Result<Option<String>, MalformedRecord> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.malformed(field, "is not a text")),
        }
    }

    pub(crate) fn required_string(&self, field: &str) -> Result<String, MalformedRecord> {
        self.required(field, Self::optional_string)
    }

    /// An external system's id, which Nexudus may write as a text or a number; empty is no value.
    pub(crate) fn optional_external_id(&self, field: &str) -> Result<Option<String>, MalformedRecord> {
        match self.present(field) {
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            _ => self.optional_string(field),
        }
    }

    /// A date-time field; an empty text is no value.
    pub(crate) fn optional_datetime(&self, field: &str) -> Result<Option<NexudusDateTime>, MalformedRecord> {
        self.optional_string(field)?
            .map(|text| NexudusDateTime::parse(&text).map_err(|_| self.malformed(field, "is not a date-time")))
            .transpose()
    }

    pub(crate) fn required_datetime(&self, field: &str) -> Result<NexudusDateTime, MalformedRecord> {
        self.required(field, Self::optional_datetime)
    }

    /// A list of ids, as numbers or as objects with an `Id`; `None` when the field is absent,
    /// which in Nexudus usually means "only sent when fetched by id".
    pub(crate) fn optional_id_list(&self, field: &str) -> Result<Option<Vec<u64>>, MalformedRecord> {
        let Some(value) = self.present(field) else { return Ok(None) };
        let items = value.as_array().ok_or_else(|| self.malformed(field, "is not a list"))?;
        items
            .iter()
            .map(|item| {
                let id = item.as_object().map_or(item, |object| object.get("Id").unwrap_or(&Value::Null));
                id.as_u64().ok_or_else(|| self.malformed(field, "holds an item that is not an id"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Ids that Nexudus mirrors as one comma-separated text, e.g. `"12,13"`; empty when absent.
    pub(crate) fn comma_separated_ids(&self, field: &str) -> Result<Vec<u64>, MalformedRecord> {
        let Some(text) = self.optional_string(field)? else { return Ok(Vec::new()) };
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| part.parse().map_err(|_| self.malformed(field, "holds an item that is not an id")))
            .collect()
    }
}
