//! The shared conformance suite against a nats-server as production runs one: TLS verified
//! against a CA made for the test, client certificates required, and a single nkey user limited
//! to the conformance streams and buckets (with its own inbox), built by the same rules as
//! doorsync's roles.

#![allow(clippy::expect_used, reason = "test setup: a failure should stop the test loudly")]

use std::sync::Arc;

use doorsync_log::EventLog;
use doorsync_log::conformance::{Harness, streams};
use doorsync_log_jetstream::permissions::Permissions;
use doorsync_log_jetstream::{ClientCertificate, JetStreamLog, JetStreamOptions, NatsAuth, SecretText, TlsOptions};
use doorsync_test_support::{
    NatsServer, NkeyUser, Security, ServerUser, TestCertificates, UserCredential, UserPermissions,
};
use futures::FutureExt;

const INBOX: &str = "_INBOX.conformance";

fn permissions() -> UserPermissions {
    let mut permissions = Permissions::for_inbox(INBOX);
    for spec in streams() {
        for subject in &spec.subjects {
            permissions.append_to(&spec.name, subject);
        }
        permissions.read_stream(&spec.name);
        permissions.consume(&spec.name, "*");
    }
    // The suite checks that a missing stream is reported as missing.
    permissions.check_stream("NO_SUCH_STREAM");
    for bucket in ["conf-leases", "conf-snapshots"] {
        permissions.use_bucket(bucket);
    }
    UserPermissions::new(
        permissions.publish_allow,
        permissions.publish_deny,
        permissions.subscribe_allow,
        permissions.subscribe_deny,
    )
}

async fn open() -> Harness {
    let directory = tempfile::tempdir().expect("a directory for the certificates");
    let certificates = TestCertificates::generate(directory.path()).expect("making certificates");
    let user = NkeyUser::generate().expect("making an nkey");
    let security = Security {
        users: vec![ServerUser {
            credential: UserCredential::Nkey { public_key: user.public_key.clone() },
            permissions: Some(permissions()),
        }],
        tls: Some(certificates.clone()),
        verify_client_certificates: true,
    };
    let server = NatsServer::start_secured(&security).await.expect("starting a secured nats-server");
    let mut options = JetStreamOptions::new(server.url(), streams());
    options.auth = NatsAuth::NkeySeed(SecretText::new(user.seed));
    options.tls = Some(TlsOptions {
        ca_file: certificates.ca_file.clone(),
        client_certificate: Some(ClientCertificate {
            cert_file: certificates.client_cert_file,
            key_file: certificates.client_key_file,
        }),
    });
    options.inbox_prefix = Some(INBOX.to_owned());
    let log = JetStreamLog::connect(options.clone()).await.expect("connecting with TLS and an nkey");
    Harness::new(Arc::new(log), (server, directory), move |open: Arc<dyn EventLog>| {
        let options = options.clone();
        async move {
            drop(open);
            let log = JetStreamLog::connect(options).await?;
            Ok(Arc::new(log) as Arc<dyn EventLog>)
        }
        .boxed()
    })
}

doorsync_log::conformance_suite!(open);
