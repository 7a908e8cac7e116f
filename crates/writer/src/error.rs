use doorsync_kisi::KisiError;
use doorsync_log::LogError;
use doorsync_proto::EncodeError;

/// What the writer's handle can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("writer options: {0}")]
    InvalidOptions(String),
    #[error("writer: {0}")]
    Log(#[from] LogError),
    #[error("writer: this writer is on standby (another writer holds the account's lease); ask the active one")]
    NotActive,
    /// Kisi refused the API key (`refusal`), or the key's own Kisi user is not known yet (`None`).
    #[error("writer: paused until Kisi accepts the API key again: {}", why_paused(refusal.as_deref()))]
    Paused {
        #[source]
        refusal: Option<Box<KisiError>>,
    },
    #[error("writer: no repair is held")]
    NothingHeld,
    #[error("writer: stopped")]
    Stopped,
    #[error("writer: cannot encode an outcome: {0}")]
    EncodeOutcome(#[source] EncodeError),
    #[error("writer: cannot encode a held repair: {0}")]
    EncodeHeldRepair(#[source] rmp_serde::encode::Error),
}

impl WriterError {
    /// Paused because Kisi refused the API key with `refusal`.
    pub(crate) fn refused_key(refusal: &KisiError) -> Self {
        Self::Paused { refusal: Some(Box::new(refusal.clone())) }
    }
}

fn why_paused(refusal: Option<&KisiError>) -> String {
    refusal.map_or_else(|| "the API key's Kisi user is not known yet".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn a_pause_says_why_and_keeps_kisis_refusal_as_its_source() {
        let refusal = KisiError::Config { reason: "no key".into() };
        let paused = WriterError::refused_key(&refusal);
        assert_eq!(
            paused.to_string(),
            "writer: paused until Kisi accepts the API key again: kisi: invalid client configuration: no key"
        );
        assert_eq!(paused.source().map(ToString::to_string), Some(refusal.to_string()));

        let unknown = WriterError::Paused { refusal: None };
        assert_eq!(
            unknown.to_string(),
            "writer: paused until Kisi accepts the API key again: the API key's Kisi user is not known yet"
        );
        assert!(unknown.source().is_none());
    }
}
