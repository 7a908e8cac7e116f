//! NATS subject rules, applied the same way by every backend.

use crate::LogError;

/// Whether `subject` (no wildcards) is matched by `filter` (`*` = one token, `>` = the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for filter_token in filter.split('.') {
        match (filter_token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// A concrete subject a message can be appended to.
pub fn validate_subject(subject: &str) -> Result<(), LogError> {
    check_tokens("subject", subject, false)
}

/// A subject filter: tokens may be `*`, and the last one may be `>`.
pub fn validate_filter(filter: &str) -> Result<(), LogError> {
    check_tokens("subject filter", filter, true)
}

fn check_tokens(what: &'static str, value: &str, wildcards: bool) -> Result<(), LogError> {
    let tokens: Vec<&str> = value.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(LogError::invalid(what, value, "empty token (two dots, or a dot at an end)"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(LogError::invalid(what, value, "whitespace is not allowed"));
        }
        let is_wildcard = *token == "*" || *token == ">";
        if is_wildcard && !wildcards {
            return Err(LogError::invalid(what, value, "wildcards are only allowed in filters"));
        }
        if *token == ">" && index + 1 != tokens.len() {
            return Err(LogError::invalid(what, value, "`>` must be the last token"));
        }
        if !is_wildcard && (token.contains('*') || token.contains('>')) {
            return Err(LogError::invalid(what, value, "`*` and `>` must stand alone as a token"));
        }
    }
    Ok(())
}

/// Stream, consumer and bucket names: what JetStream accepts everywhere.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), LogError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(allowed) {
        return Err(LogError::invalid(what, name, "use letters, digits, `_` and `-` only"));
    }
    Ok(())
}

/// Key-value keys: what JetStream KV accepts.
pub fn validate_kv_key(key: &str) -> Result<(), LogError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=' | '.');
    if key.is_empty() || key.starts_with('.') || key.ends_with('.') || !key.chars().all(allowed) {
        return Err(LogError::invalid(
            "key",
            key,
            "use letters, digits and - / _ = . only, not starting or ending with a dot",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("ds.evt.>", "ds.evt.3.42"));
        assert!(subject_matches("ds.evt.3.*", "ds.evt.3.42"));
        assert!(!subject_matches("ds.evt.3.*", "ds.evt.31.42"));
        assert!(!subject_matches("ds.evt.*", "ds.evt.3.42"));
        assert!(!subject_matches("ds.evt.>", "ds.evt"));
        assert!(subject_matches("ds.evt.mapping", "ds.evt.mapping"));
        assert!(!subject_matches("ds.evt.mapping", "ds.evt.mapping.x"));
        assert!(subject_matches("*.*", "a.b"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }

    #[test]
    fn subjects_and_filters_are_checked() {
        assert!(validate_subject("ds.evt.3.42").is_ok());
        assert!(validate_subject("ds.evt.*").is_err());
        assert!(validate_subject("ds..evt").is_err());
        assert!(validate_subject("ds.e vt").is_err());
        assert!(validate_filter("ds.evt.*.>").is_ok());
        assert!(validate_filter("ds.>.x").is_err());
        assert!(validate_filter("ds.a*").is_err());
    }

    #[test]
    fn names_and_keys_are_checked() {
        assert!(validate_name("stream name", "DOORSYNC_EVT").is_ok());
        assert!(validate_name("stream name", "a.b").is_err());
        assert!(validate_kv_key("snapshot.7.42").is_ok());
        assert!(validate_kv_key("lease/writer").is_ok());
        assert!(validate_kv_key(".x").is_err());
        assert!(validate_kv_key("a b").is_err());
    }
}
