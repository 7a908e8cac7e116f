//! Each role's credentials on a nats-server that admits only doorsync's roles, each with the
//! permissions of `doorsync_log_jetstream::permissions`: a role may append what it produces and
//! nothing else, and cannot touch another role's consumer, leases or inbox.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test: a failed step should stop it loudly")]

use std::collections::BTreeMap;
use std::time::Duration;

use doorsync_layout::Layout;
use doorsync_log::{ConsumerSpec, EventLog, LogError, NewMessage, ReplayRequest, Sequence};
use doorsync_log_jetstream::permissions::Role;
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions, NatsAuth, SecretText, TlsOptions};
use doorsync_proto::{MemberId, Subjects};
use doorsync_test_support::{
    NatsServer, NkeyUser, Security, ServerUser, TestCertificates, UserCredential, UserPermissions,
};
use futures::StreamExt;

/// The writer's durable consumer of commands (`doorsync_writer::WriterOptions::consumer_name`).
const WRITER_CONSUMER: &str = "writer";

/// How long a refused publish waits for the acknowledgement that never comes.
const REFUSED_WITHIN: Duration = Duration::from_secs(2);

struct Deployment {
    server: NatsServer,
    certificates: TestCertificates,
    seeds: BTreeMap<Role, String>,
    layout: Layout,
    _directory: tempfile::TempDir,
}

impl Deployment {
    async fn start() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let certificates = TestCertificates::generate(directory.path()).unwrap();
        let layout = Layout::new(Subjects::new("doorsync", 4).unwrap());
        let mut seeds = BTreeMap::new();
        let mut users = Vec::new();
        for role in Role::ALL {
            let user = NkeyUser::generate().unwrap();
            let permissions = role.permissions(&layout, WRITER_CONSUMER);
            users.push(ServerUser {
                credential: UserCredential::Nkey { public_key: user.public_key },
                permissions: Some(UserPermissions::new(
                    permissions.publish_allow,
                    permissions.publish_deny,
                    permissions.subscribe_allow,
                    permissions.subscribe_deny,
                )),
            });
            seeds.insert(role, user.seed);
        }
        let security = Security { users, tls: Some(certificates.clone()), verify_client_certificates: false };
        let server = NatsServer::start_secured(&security).await.unwrap();
        Self { server, certificates, seeds, layout, _directory: directory }
    }

    fn options(&self, role: Role) -> JetStreamOptions {
        let mut options = JetStreamOptions::new(self.server.url(), self.layout.streams());
        options.auth = NatsAuth::NkeySeed(SecretText::new(self.seeds[&role].clone()));
        options.tls = Some(TlsOptions { ca_file: self.certificates.ca_file.clone(), client_certificate: None });
        options.inbox_prefix = Some(role.inbox_prefix(&self.layout));
        options.request_timeout = REFUSED_WITHIN;
        options.connection_name = format!("doorsync {role}");
        options
    }

    async fn connect(&self, role: Role) -> JetStreamLog {
        JetStreamLog::connect(self.options(role)).await.unwrap_or_else(|error| panic!("{role} connecting: {error}"))
    }
}

fn message(subject: String, id: &str) -> NewMessage {
    NewMessage::new(subject, id, format!("payload of {id}"))
}

/// Whether appending to `subject` as `role` is stored.
async fn appends((role, log): (Role, &JetStreamLog), subject: String) -> bool {
    let id = format!("{role}-{subject}");
    log.append(message(subject, &id)).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_appends_only_what_it_produces() {
    let deployment = Deployment::start().await;
    let (ingest_log, engine_log, writer_log, operator_log) = tokio::join!(
        deployment.connect(Role::Ingest),
        deployment.connect(Role::Engine),
        deployment.connect(Role::Writer),
        deployment.connect(Role::Operator)
    );
    let (ingest, engine) = ((Role::Ingest, &ingest_log), (Role::Engine, &engine_log));
    let (writer, operator) = ((Role::Writer, &writer_log), (Role::Operator, &operator_log));
    let subjects = &deployment.layout.subjects;
    let member = MemberId(42);
    let (event, command) = (|| subjects.event(member), || subjects.command(member));
    let (outcome, dead_letter) = (|| subjects.outcome(member), || subjects.dead_letter(member));
    let stored = futures::future::join_all([
        appends(ingest, event()),
        appends(ingest, subjects.mapping()),
        appends(ingest, command()),
        appends(ingest, outcome()),
        appends(engine, command()),
        appends(engine, event()),
        appends(engine, outcome()),
        appends(engine, dead_letter()),
        appends(writer, outcome()),
        appends(writer, dead_letter()),
        appends(writer, command()),
        appends(writer, event()),
        appends(operator, command()),
        appends(operator, event()),
        appends(operator, outcome()),
    ])
    .await;
    let expected = [
        true, true, false, false, // ingest: events and mapping changes only
        true, false, false, false, // engine: commands only
        true, true, false, false, // writer: outcomes and dead letters only
        true, false, false, // operator: a dead letter retried as a command
    ];
    assert_eq!(stored, expected);

    // What was refused was not stored: each stream holds the allowed appends only.
    let layout = &deployment.layout;
    for (stream, count) in
        [(&layout.events, 2), (&layout.commands, 2), (&layout.outcomes, 1), (&layout.dead_letters, 1)]
    {
        assert_eq!(engine_log.last_sequence(stream).await.unwrap(), Sequence(count), "{stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_role_but_the_writer_takes_commands_or_the_writer_lease() {
    let deployment = Deployment::start().await;
    let layout = &deployment.layout;
    let (engine, writer, ingest) = tokio::join!(
        deployment.connect(Role::Engine),
        deployment.connect(Role::Writer),
        deployment.connect(Role::Ingest)
    );
    let consumer =
        || ConsumerSpec::new(&layout.commands, WRITER_CONSUMER).filtered([layout.subjects.commands_wildcard()]);
    assert!(writer.durable_consumer(consumer()).await.is_ok(), "the writer consumes its commands");
    for (role, log) in [(Role::Engine, &engine), (Role::Ingest, &ingest)] {
        let taken = log.durable_consumer(consumer()).await;
        assert!(taken.is_err(), "{role} opened the writer's consumer");
    }

    // A consumer created with no name in the request's subject takes the name in its body:
    // naming the writer's consumer there must not change it (here, to a filter that would
    // leave most members' commands unread).
    let subject = format!("$JS.API.CONSUMER.CREATE.{}", layout.commands);
    let body = format!(
        r#"{{"stream_name":"{}","config":{{"name":"{WRITER_CONSUMER}","filter_subject":"doorsync.cmd.0.>","ack_policy":"explicit","deliver_policy":"all"}}}}"#,
        layout.commands
    );
    let _ = engine.client().request(subject, body.clone().into()).await;
    // Nor with another name in the subject.
    let named = format!("$JS.API.CONSUMER.CREATE.{}.reader", layout.commands);
    let _ = engine.client().request(named, body.into()).await;
    let info = format!("$JS.API.CONSUMER.INFO.{}.{WRITER_CONSUMER}", layout.commands);
    let info = writer.client().request(info, "".into()).await.unwrap();
    let info = String::from_utf8_lossy(&info.payload);
    // The server writes `>` as \u003e.
    let filters = r#""filter_subjects":["doorsync.cmd.\u003e"]"#;
    assert!(info.contains(filters) && !info.contains("doorsync.cmd.0."), "the writer's consumer changed: {info}");

    // Leases: the writer holds its own; the engine can neither take nor renew it.
    let writer_leases = writer.key_value(&layout.leases_bucket).await.unwrap();
    writer_leases.create("writer.default", "writer-1".into()).await.unwrap();
    let engine_leases = engine.key_value(&layout.leases_bucket).await.unwrap();
    assert!(engine_leases.put("writer.default", "intruder".into()).await.is_err());
    assert!(engine_leases.put("lease.1", "engine-1".into()).await.is_ok(), "the engine holds partition leases");
    let held = writer_leases.get("writer.default").await.unwrap().unwrap();
    assert_eq!(held.value.as_ref(), b"writer-1");
    assert!(writer_leases.put("lease.1", "writer-1".into()).await.is_err(), "the writer cannot take a partition");

    // The ingestor reads no commands, and the engine not the ingestor's bucket.
    let command = message(layout.subjects.command(MemberId(3)), "command-3");
    engine.append(command).await.unwrap();
    let replay = ingest.replay(ReplayRequest::whole(&layout.commands)).await;
    assert!(matches!(replay, Err(LogError::Unavailable { .. } | LogError::TimedOut { .. })), "{:?}", replay.map(drop));
    assert!(engine.key_value(&layout.ingest_bucket).await.is_err(), "the engine opened the ingestor's bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_cannot_listen_to_another_roles_inbox() {
    let deployment = Deployment::start().await;
    let engine = deployment.connect(Role::Engine).await;
    let writer = deployment.connect(Role::Writer).await;
    // Deliveries to the writer and the answers to its appends come to its inbox.
    let writer_inbox = format!("{}.>", Role::Writer.inbox_prefix(&deployment.layout));
    let mut eavesdropper = engine.client().subscribe(writer_inbox).await.unwrap();
    let mut everything = engine.client().subscribe("_INBOX.>").await.unwrap();
    writer.append(message(deployment.layout.subjects.outcome(MemberId(7)), "outcome-7")).await.unwrap();
    let overheard = tokio::time::timeout(Duration::from_secs(1), async {
        tokio::select! {
            message = eavesdropper.next() => message,
            message = everything.next() => message,
        }
    })
    .await;
    assert!(!matches!(overheard, Ok(Some(_))), "the engine read the writer's inbox: {overheard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_and_password_connect_and_a_wrong_password_is_refused_clearly() {
    let directory = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(directory.path()).unwrap();
    let security = Security {
        users: vec![ServerUser {
            credential: UserCredential::Password { user: "engine".into(), password: "correct horse".into() },
            permissions: None,
        }],
        tls: Some(certificates.clone()),
        verify_client_certificates: false,
    };
    let server = NatsServer::start_secured(&security).await.unwrap();
    let options = |password: &str| {
        let mut options = JetStreamOptions::new(server.url(), Vec::new());
        options.auth = NatsAuth::UserPassword { user: "engine".into(), password: SecretText::new(password) };
        options.tls = Some(TlsOptions { ca_file: certificates.ca_file.clone(), client_certificate: None });
        options
    };
    JetStreamLog::connect(options("correct horse")).await.unwrap();
    let error = JetStreamLog::connect(options("battery staple")).await.unwrap_err().to_string();
    assert!(error.contains("refused this process's credentials"), "{error}");
    assert!(!error.contains("battery staple"), "{error}");

    // With another authority's CA, the server's certificate is not trusted.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = TestCertificates::generate(elsewhere.path()).unwrap();
    let mut untrusting = options("correct horse");
    untrusting.tls = Some(TlsOptions { ca_file: other.ca_file, client_certificate: None });
    assert!(JetStreamLog::connect(untrusting).await.is_err());
}
