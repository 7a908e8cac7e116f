//! Kisi's OpenAPI description (the subset for users, groups and role assignments, vendored in
//! `openapi/` unchanged) as a validator of request and response bodies, for the tests of the
//! client and of the simulator.
//!
//! Schemas are validated as JSON Schema 2020-12 (OpenAPI 3.1's dialect) with `format` checked
//! (`date-time`, `email`, `uri`). The document's few `$ref`s point inside it and are inlined
//! before validation, so nothing is ever fetched.

use serde_json::Value;

/// The vendored copy of `kisi-openapi-subset.yaml`, whose header says where it comes from.
pub const KISI_OPENAPI_SUBSET: &str = include_str!("../openapi/kisi-openapi-subset.yaml");

/// Nesting deeper than this while inlining `$ref`s means a reference cycle.
const MAX_REF_DEPTH: usize = 32;

/// Request schemas whose `oneOf` branches cannot be told apart, with the branch doorsync's
/// bodies are meant for. The PATCH of a role assignment has three branches that differ only in
/// the (mistyped) `notify`, so any body without `notify` matches all three and `oneOf` fails.
const AMBIGUOUS_REQUEST_BRANCHES: [(&str, &str); 1] = [("updateRoleAssignment", "Group Role Assignment")];

/// The `X-Collection-Range` of an empty collection, which Kisi's own client handles but the
/// header's pattern in the spec does not allow.
const EMPTY_COLLECTION_RANGE: &str = "*/0";

#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("the OpenAPI document does not parse: {0}")]
    Parse(String),
    #[error("the OpenAPI document has no operation {method} {path}")]
    NoOperation { method: String, path: String },
    #[error("{operation}: {what} is not described in the OpenAPI document")]
    NotDescribed { operation: String, what: String },
    #[error("{operation}: the schema at {pointer} cannot be used: {reason}")]
    BadSchema { operation: String, pointer: String, reason: String },
    #[error("{operation}: {what} does not match the schema: {}", violations.join("; "))]
    Invalid { operation: String, what: String, violations: Vec<String> },
}

/// Kisi's OpenAPI document, loaded once per test.
#[derive(Debug, Clone)]
pub struct KisiOpenApi {
    document: Value,
}

/// One HTTP exchange with Kisi (or the simulator), to check against the document.
#[derive(Debug, Clone, Copy)]
pub struct RecordedCall<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub request_body: Option<&'a Value>,
    /// `None` when no answer came (the connection was dropped).
    pub status: Option<u16>,
    pub response_body: Option<&'a Value>,
    pub collection_range: Option<&'a str>,
}

/// Whether the operation documents the status of a checked response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCheck {
    /// Checked against the operation's schema for the status.
    Documented,
    /// The operation does not list the status (429 everywhere, 5xx, or a 422 on a list); the body
    /// was checked against the document's general `Error` (or, for 422, `Errors`) schema.
    UndocumentedStatus,
    /// No answer came.
    NoResponse,
}

/// One operation of the document, e.g. `PATCH /role_assignments/{id}`.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    api: &'a KisiOpenApi,
    name: &'a str,
    method: &'a str,
    template: &'a str,
    node: &'a Value,
}

impl KisiOpenApi {
    /// The vendored subset.
    pub fn load() -> Result<Self, OpenApiError> {
        Self::from_yaml(KISI_OPENAPI_SUBSET)
    }

    pub fn from_yaml(yaml: &str) -> Result<Self, OpenApiError> {
        let document: Value = serde_yaml_ng::from_str(yaml).map_err(|error| OpenApiError::Parse(error.to_string()))?;
        Ok(Self { document })
    }

    /// The operation serving `method` on a concrete `path` such as `/users/17` (a query string
    /// is ignored); literal path segments win over `{parameters}`.
    pub fn operation<'a>(&'a self, method: &str, path: &str) -> Result<Operation<'a>, OpenApiError> {
        let method = method.to_ascii_lowercase();
        let path = path.split('?').next().unwrap_or(path);
        let no_operation = || OpenApiError::NoOperation { method: method.to_uppercase(), path: path.to_owned() };
        let paths = self.document.get("paths").and_then(Value::as_object).ok_or_else(no_operation)?;
        let wanted: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (template, item) = paths
            .iter()
            .filter_map(|(template, item)| {
                let segments: Vec<&str> = template.trim_matches('/').split('/').collect();
                let matches = segments.len() == wanted.len()
                    && segments.iter().zip(&wanted).all(|(pattern, actual)| is_parameter(pattern) || pattern == actual);
                matches.then(|| (segments.iter().filter(|segment| is_parameter(segment)).count(), template, item))
            })
            .min_by_key(|(parameters, ..)| *parameters)
            .map(|(_, template, item)| (template, item))
            .ok_or_else(no_operation)?;
        let (method, node) = item.as_object().and_then(|item| item.get_key_value(&method)).ok_or_else(no_operation)?;
        let name = node.get("operationId").and_then(Value::as_str).unwrap_or(template);
        Ok(Operation { api: self, name, method, template, node })
    }

    /// Checks a whole exchange: [`check_request`](Self::check_request) and
    /// [`check_response`](Self::check_response).
    pub fn check_call(&self, call: &RecordedCall<'_>) -> Result<ResponseCheck, OpenApiError> {
        self.check_request(call)?;
        self.check_response(call)
    }

    /// Checks the request body of an exchange, if it has one (against the branch meant, where the
    /// spec's `oneOf` is ambiguous).
    pub fn check_request(&self, call: &RecordedCall<'_>) -> Result<(), OpenApiError> {
        let operation = self.operation(call.method, call.path)?;
        let Some(body) = call.request_body else {
            return Ok(());
        };
        match AMBIGUOUS_REQUEST_BRANCHES.iter().find(|(name, _)| *name == operation.name()) {
            Some((_, branch)) => operation.validate_request_body_variant(branch, body),
            None => operation.validate_request_body(body),
        }
    }

    /// Checks the response of an exchange: its body for its status, and `X-Collection-Range`.
    pub fn check_response(&self, call: &RecordedCall<'_>) -> Result<ResponseCheck, OpenApiError> {
        let operation = self.operation(call.method, call.path)?;
        let Some(status) = call.status else {
            return Ok(ResponseCheck::NoResponse);
        };
        if let Some(range) = call.collection_range.filter(|range| *range != EMPTY_COLLECTION_RANGE) {
            operation.validate_response_header(status, "X-Collection-Range", range)?;
        }
        if operation.statuses().contains(&status) {
            operation.validate_response(status, call.response_body)?;
            return Ok(ResponseCheck::Documented);
        }
        let component = if status == 422 { "Errors" } else { "Error" };
        let body = call
            .response_body
            .ok_or_else(|| operation.invalid(format!("the {status} response"), vec!["has no body".into()]))?;
        self.validate_component(component, body)?;
        Ok(ResponseCheck::UndocumentedStatus)
    }

    /// Validates a value against one of `components/schemas` (`Error`, `Errors`).
    pub fn validate_component(&self, name: &str, instance: &Value) -> Result<(), OpenApiError> {
        let pointer = format!("/components/schemas/{name}");
        let label = format!("component {name}");
        let raw = self
            .document
            .pointer(&pointer)
            .ok_or_else(|| OpenApiError::NotDescribed { operation: label.clone(), what: "the schema".into() })?;
        let schema = self.resolve(raw, 0).map_err(|reason| OpenApiError::BadSchema {
            operation: label.clone(),
            pointer: pointer.clone(),
            reason,
        })?;
        validate_against(&schema, &label, &pointer, &format!("the {name} body"), instance)
    }

    /// Validates a request body against its operation's schema.
    pub fn validate_request_body(&self, method: &str, path: &str, body: &Value) -> Result<(), OpenApiError> {
        self.operation(method, path)?.validate_request_body(body)
    }

    /// Validates a response: its status must be one the operation lists, and its body must match
    /// that status's schema (or be absent when the status has no content, e.g. 204).
    pub fn validate_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: Option<&Value>,
    ) -> Result<(), OpenApiError> {
        self.operation(method, path)?.validate_response(status, body)
    }

    fn resolve(&self, node: &Value, depth: usize) -> Result<Value, String> {
        if depth > MAX_REF_DEPTH {
            return Err("$ref nesting too deep (a cycle?)".to_owned());
        }
        match node {
            Value::Object(object) => {
                if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
                    let pointer = reference
                        .strip_prefix('#')
                        .ok_or_else(|| format!("$ref {reference:?} points outside the document"))?;
                    let target =
                        self.document.pointer(pointer).ok_or_else(|| format!("$ref {reference:?} points nowhere"))?;
                    return self.resolve(target, depth + 1);
                }
                let resolved = object
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), self.resolve(value, depth)?)))
                    .collect::<Result<serde_json::Map<_, _>, String>>()?;
                Ok(Value::Object(resolved))
            }
            Value::Array(items) => {
                items.iter().map(|item| self.resolve(item, depth)).collect::<Result<_, _>>().map(Value::Array)
            }
            other => Ok(other.clone()),
        }
    }
}

fn validate_against(
    schema: &Value,
    label: &str,
    pointer: &str,
    what: &str,
    instance: &Value,
) -> Result<(), OpenApiError> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|error| OpenApiError::BadSchema {
            operation: label.to_owned(),
            pointer: pointer.to_owned(),
            reason: error.to_string(),
        })?;
    let violations: Vec<String> =
        validator.iter_errors(instance).map(|error| format!("{error} (at {})", error.instance_path())).collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(OpenApiError::Invalid { operation: label.to_owned(), what: what.to_owned(), violations })
    }
}

fn is_parameter(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

impl Operation<'_> {
    /// The operationId, e.g. `createRoleAssignment`.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The statuses the operation documents.
    pub fn statuses(&self) -> Vec<u16> {
        let responses = self.node.get("responses").and_then(Value::as_object);
        responses.into_iter().flat_map(|responses| responses.keys().filter_map(|status| status.parse().ok())).collect()
    }

    pub fn validate_request_body(&self, body: &Value) -> Result<(), OpenApiError> {
        let pointer = "requestBody/content/application~1json/schema";
        let schema = self.schema_at(pointer, "a request body")?;
        self.validate(&schema, pointer, "the request body", body)
    }

    /// Validates a request body against one branch of a `oneOf` request schema, chosen by its
    /// `title`: for bodies that several branches accept alike (the PATCH of a role assignment,
    /// whose three branches differ only in the type of `notify`), where `oneOf` itself must fail.
    pub fn validate_request_body_variant(&self, title: &str, body: &Value) -> Result<(), OpenApiError> {
        let pointer = "requestBody/content/application~1json/schema";
        let schema = self.schema_at(pointer, "a request body")?;
        let variant = schema
            .get("oneOf")
            .and_then(Value::as_array)
            .and_then(|variants| {
                variants.iter().find(|variant| variant.get("title").and_then(Value::as_str) == Some(title))
            })
            .ok_or_else(|| self.not_described(format!("a request body variant titled {title:?}")))?;
        self.validate(variant, pointer, "the request body", body)
    }

    pub fn validate_response(&self, status: u16, body: Option<&Value>) -> Result<(), OpenApiError> {
        let response = format!("responses/{status}");
        let described =
            self.node.pointer(&format!("/{response}")).ok_or_else(|| self.not_described(format!("status {status}")))?;
        match (described.get("content"), body) {
            (None, None) => Ok(()),
            (None, Some(_)) => {
                Err(self.invalid(format!("the {status} response"), vec!["has a body but none is described".into()]))
            }
            (Some(_), None) => {
                Err(self.invalid(format!("the {status} response"), vec!["has no body but one is described".into()]))
            }
            (Some(_), Some(body)) => {
                let pointer = format!("{response}/content/application~1json/schema");
                let schema = self.schema_at(&pointer, "a response body")?;
                self.validate(&schema, &pointer, &format!("the {status} response body"), body)
            }
        }
    }

    /// Validates a response header's value against its schema (e.g. the pattern of
    /// `X-Collection-Range`).
    pub fn validate_response_header(&self, status: u16, header: &str, value: &str) -> Result<(), OpenApiError> {
        let pointer = format!("responses/{status}/headers/{header}/schema");
        let schema = self.schema_at(&pointer, &format!("header {header}"))?;
        self.validate(&schema, &pointer, &format!("header {header}"), &Value::String(value.to_owned()))
    }

    fn schema_at(&self, pointer: &str, what: &str) -> Result<Value, OpenApiError> {
        let raw = self.node.pointer(&format!("/{pointer}")).ok_or_else(|| self.not_described(what.to_owned()))?;
        self.api.resolve(raw, 0).map_err(|reason| self.bad_schema(pointer, reason))
    }

    fn validate(&self, schema: &Value, pointer: &str, what: &str, instance: &Value) -> Result<(), OpenApiError> {
        validate_against(schema, &self.label(), pointer, what, instance)
    }

    fn label(&self) -> String {
        format!("{} ({} {})", self.name, self.method.to_uppercase(), self.template)
    }

    fn not_described(&self, what: String) -> OpenApiError {
        OpenApiError::NotDescribed { operation: self.label(), what }
    }

    fn bad_schema(&self, pointer: &str, reason: String) -> OpenApiError {
        OpenApiError::BadSchema { operation: self.label(), pointer: pointer.to_owned(), reason }
    }

    fn invalid(&self, what: String, violations: Vec<String>) -> OpenApiError {
        OpenApiError::Invalid { operation: self.label(), what, violations }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn operations_are_found_by_concrete_path() {
        let api = KisiOpenApi::load().unwrap();
        assert_eq!(api.operation("PATCH", "/role_assignments/17").unwrap().name(), "updateRoleAssignment");
        assert_eq!(api.operation("get", "/users?query=x").unwrap().name(), "fetchUsers");
        assert_eq!(api.operation("GET", "/user").unwrap().name(), "fetchCurrentUser");
        assert!(matches!(api.operation("GET", "/locks"), Err(OpenApiError::NoOperation { .. })));
        assert_eq!(api.operation("POST", "/role_assignments").unwrap().statuses(), vec![200, 401, 403, 404, 422]);
    }

    #[test]
    fn request_bodies_are_checked_against_their_schema() {
        let api = KisiOpenApi::load().unwrap();
        api.validate_request_body("POST", "/users", &json!({"user": {"email": "ann@example.com"}})).unwrap();
        let missing_email = api.validate_request_body("POST", "/users", &json!({"user": {"name": "Ann"}}));
        assert!(matches!(missing_email, Err(OpenApiError::Invalid { .. })), "{missing_email:?}");
        let bad_date = json!({"role_assignment": {"applies_to_type": "Group", "applies_to_id": 1, "assignee_type": "User",
            "assignee_id": 2, "role_id": "group_basic", "valid_until": "tomorrow"}});
        assert!(api.validate_request_body("POST", "/role_assignments", &bad_date).is_err());
    }

    #[test]
    fn error_responses_resolve_their_refs() {
        let api = KisiOpenApi::load().unwrap();
        api.validate_response("GET", "/users/3", 404, Some(&json!({"error": "Not found", "code": "000404"}))).unwrap();
        api.validate_response("POST", "/users", 422, Some(&json!({"errors": {"email": ["is invalid"]}}))).unwrap();
        assert!(api.validate_response("GET", "/users/3", 404, Some(&json!({"error": "no code"}))).is_err());
        assert!(api.validate_response("DELETE", "/users/3", 204, None).is_ok());
        assert!(api.validate_response("DELETE", "/users/3", 204, Some(&json!({}))).is_err());
        assert!(matches!(api.validate_response("GET", "/users/3", 500, None), Err(OpenApiError::NotDescribed { .. })));
    }

    #[test]
    fn the_patch_of_a_role_assignment_matches_every_branch_so_one_is_chosen() {
        let api = KisiOpenApi::load().unwrap();
        let body = json!({"role_assignment": {"valid_from": null, "valid_until": "2025-01-31T23:59:59Z"}});
        assert!(api.validate_request_body("PATCH", "/role_assignments/4", &body).is_err(), "oneOf with three matches");
        let operation = api.operation("PATCH", "/role_assignments/4").unwrap();
        operation.validate_request_body_variant("Group Role Assignment", &body).unwrap();
    }

    #[test]
    fn collection_range_headers_follow_the_pattern() {
        let operation = KisiOpenApi::load().unwrap();
        let operation = operation.operation("GET", "/groups").unwrap();
        operation.validate_response_header(200, "X-Collection-Range", "10-19/15").unwrap();
        assert!(operation.validate_response_header(200, "X-Collection-Range", "*/0").is_err());
    }
}
