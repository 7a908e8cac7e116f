//! Opening, reopening and closing the file.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

use bytes::Bytes;
use doorsync_log::{EventLog, LogError, NewMessage, ReplayRequest, Sequence, StreamSpec};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use futures::StreamExt;

fn message(subject: &str, id: &str) -> NewMessage {
    NewMessage::new(subject, id, Bytes::from_static(b"x"))
}

#[tokio::test]
async fn a_second_open_in_the_same_process_is_refused_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions::new(dir.path().join("log.redb"), vec![StreamSpec::new("EVT", ["evt.>"])]);
    let log = EmbeddedLog::open(options.clone()).unwrap();
    let refused = EmbeddedLog::open(options.clone()).unwrap_err();
    assert!(matches!(refused, LogError::Unavailable { .. }), "{refused:?}");
    let text = refused.to_string();
    assert!(text.contains("log.redb") && text.contains("another doorsync process"), "{text}");

    let clone = log.clone();
    clone.append(message("evt.1", "a")).await.unwrap();
    drop(clone);
    log.close().await;
    let reopened = EmbeddedLog::open(options).unwrap();
    assert_eq!(reopened.last_sequence("EVT").await.unwrap(), Sequence(1));
    reopened.close().await;
}

#[tokio::test]
async fn reopening_with_other_subjects_updates_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let log = EmbeddedLog::open(EmbeddedOptions::new(&path, vec![StreamSpec::new("EVT", ["evt.>"])])).unwrap();
    log.append(message("evt.1", "a")).await.unwrap();
    assert!(matches!(log.append(message("more.1", "b")).await, Err(LogError::NoStream { .. })));
    log.close().await;

    let streams = vec![StreamSpec::new("EVT", ["evt.>", "more.>"]), StreamSpec::new("CMD", ["cmd.>"])];
    let log = EmbeddedLog::open(EmbeddedOptions::new(&path, streams)).unwrap();
    assert_eq!(log.append(message("more.1", "b")).await.unwrap().sequence, Sequence(2));
    assert_eq!(log.append(message("cmd.1", "c")).await.unwrap().sequence, Sequence(1));
    let all: Vec<_> = log.replay(ReplayRequest::whole("EVT")).await.unwrap().map(Result::unwrap).collect().await;
    assert_eq!(all.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(), ["evt.1", "more.1"]);
    log.close().await;
}

#[test]
fn bad_stream_specs_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    for streams in [
        vec![StreamSpec::new("EVT", ["evt.>"]), StreamSpec::new("ALSO", ["evt.*.x"])],
        vec![StreamSpec::new("EVT", ["evt.>"]), StreamSpec::new("EVT", ["cmd.>"])],
        vec![StreamSpec::new("bad.name", ["evt.>"])],
        vec![StreamSpec::new("EVT", Vec::<String>::new())],
    ] {
        let refused = EmbeddedLog::open(EmbeddedOptions::new(&path, streams.clone())).unwrap_err();
        assert!(matches!(refused, LogError::Invalid { .. }), "{streams:?} gave {refused:?}");
    }
    assert!(!path.exists());
}

#[test]
fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent").join("log.redb");
    let refused = EmbeddedLog::open(EmbeddedOptions::new(&path, vec![StreamSpec::new("EVT", ["evt.>"])])).unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("absent/log.redb") && text.contains("directory"), "{text}");
}
